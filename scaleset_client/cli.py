"""``scaleset-listen``: a listener for cron jobs and services, configured by flags or environment.

    scaleset-listen --url https://github.com/my-org --scale-set-name linux --max-runners 10 \\
        --state-file /var/lib/scaleset/linux.json --exec ./scale.sh --health-port 8080

Exit codes: 0 done (stopped by SIGTERM/SIGINT, ``--once`` drained the queue, or ``--duration``
passed), 2 usage or configuration error, 3 permanent service error (credentials rejected, scale set
gone), 4 skipped: the service is known down past this run's end (see the state file), or another
run still holds the state file.

Time bounds: SIGTERM or SIGINT ends the process within 5 s in any state (a long poll, a rate-limit
wait, an open breaker, a hung or dripping server), after deleting the server session (at most
1.5 s). An ``--exec`` command in flight first gets ``--exec-grace`` seconds (10) to finish; then it
is terminated and its message stays unacknowledged. ``--duration D`` (and ``--once``, bounded by
55 s) returns within D + 2 s whatever the service does. Start-up calls (token, scale set lookup,
session) wait out transient errors like polling does; only permanent conditions end a run early.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._version import __version__
from .auth import GitHubAppAuth
from .client import Client
from .deadline import Deadline
from .errors import (
    APIError,
    AuthenticationError,
    CallCancelledError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    RateLimitedError,
    ResponseError,
    RetryExhaustedError,
    ScalesetError,
    ScaleSetNotFoundError,
    StateFileError,
    StateFileLockedError,
    TransportError,
)
from .listener import Listener, ListenerConfig, RunSkippedError
from .models import JobCompleted, JobStarted, Label, RunnerScaleSet, RunnerScaleSetStatistic, SystemInfo

__all__ = ["main"]

log = logging.getLogger("scaleset_client.cli")

EXIT_OK, EXIT_USAGE, EXIT_PERMANENT, EXIT_SKIPPED = 0, 2, 3, 4


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaleset-listen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=_env("SCALESET_CONFIG_URL", "GITHUB_CONFIG_URL"),
                   help="configuration URL: org, repo or enterprise (env SCALESET_CONFIG_URL)")
    p.add_argument("--token", default=None, help="PAT; prefer env GITHUB_TOKEN, which stays out of `ps`")
    p.add_argument("--app-client-id", default=_env("GITHUB_APP_CLIENT_ID", "GITHUB_APP_ID"))
    p.add_argument("--app-installation-id", type=int,
                   default=int(_env("GITHUB_APP_INSTALLATION_ID") or 0) or None)
    p.add_argument("--app-private-key-file", default=_env("GITHUB_APP_PRIVATE_KEY_FILE"))
    p.add_argument("--scale-set-name", default=_env("SCALESET_NAME"), help="created when missing")
    p.add_argument("--scale-set-id", type=int, default=None, help="use this id instead of looking up the name")
    p.add_argument("--runner-group", default=_env("SCALESET_RUNNER_GROUP") or "default")
    p.add_argument("--labels", default=_env("SCALESET_LABELS") or "",
                   help="comma-separated labels for a scale set created here (default: its name)")
    p.add_argument("--max-runners", type=int, default=int(_env("SCALESET_MAX_RUNNERS") or 10))
    p.add_argument("--state-file", default=_env("SCALESET_STATE_FILE"))
    p.add_argument("--once", action="store_true", help="handle what is queued, then exit (cron)")
    p.add_argument("--duration", type=float, default=None, help="exit after this many seconds (cron)")
    p.add_argument("--standby-timeout", type=float, default=None)
    p.add_argument("--start-jitter", type=float, default=0.0,
                   help="wait a random 0..S seconds first, so a fleet of cron jobs does not fire together")
    p.add_argument("--health-port", type=int, default=None, help="serve /livez, /readyz and /metrics")
    p.add_argument("--health-address", default="0.0.0.0")
    p.add_argument("--exec", dest="exec_cmd", default=None,
                   help="scaler command: gets each event as JSON on stdin; for desired_runner_count it "
                        "prints the runner count it now has")
    p.add_argument("--exec-grace", type=float, default=10.0,
                   help="on SIGTERM, seconds an --exec command in flight may take to finish before it is "
                        "terminated and its message left unacknowledged (default 10)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default=_env("SCALESET_LOG_LEVEL") or "INFO")
    p.add_argument("--version", action="version", version=f"scaleset-listen {__version__}")
    return p


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class ScalerInterruptedError(RuntimeError):
    """An ``--exec`` command was terminated because the listener is stopping."""


class ExecScaler:
    """Runs a command per event with the event as JSON on stdin; a failure raises (the message
    is then retried, and set aside after repeated failures).

    When ``stop`` is set while a command runs, it gets ``grace`` seconds to finish; then its
    process group is terminated (SIGTERM, SIGKILL 2 s later) and ``ScalerInterruptedError`` is
    raised, so the listener leaves the message unacknowledged."""

    def __init__(self, command: str, timeout: float = 300.0, *, stop: threading.Event | None = None,
                 grace: float = 10.0) -> None:
        self.command = command
        self.timeout = timeout
        self.stop = stop
        self.grace = grace

    def _run(self, event: dict[str, Any]) -> str:
        proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        data: bytes | None = json.dumps(event).encode()
        started = time.monotonic()
        stop_seen: float | None = None
        while True:
            try:
                out, err = proc.communicate(data, timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                data = None  # sent with the first call; a retry must not send it again
            now = time.monotonic()
            if self.stop is not None and self.stop.is_set():
                stop_seen = stop_seen if stop_seen is not None else now
                if now - stop_seen >= self.grace:
                    _terminate(proc)
                    raise ScalerInterruptedError(
                        f"--exec command did not finish within the {self.grace:g}s shutdown grace; it was "
                        "terminated and its message stays unacknowledged")
            if now - started >= self.timeout:
                _terminate(proc)
                raise RuntimeError(f"--exec command did not finish within {self.timeout:g}s; terminated")
        if proc.returncode != 0:
            raise RuntimeError(f"--exec command exited {proc.returncode}: "
                               f"{err.decode('utf-8', 'replace')[-300:].strip()}")
        return out.decode("utf-8", "replace")

    def handle_job_started(self, job: JobStarted) -> None:
        self._run({"event": "job_started", "job": _jsonable(job)})

    def handle_job_completed(self, job: JobCompleted) -> None:
        self._run({"event": "job_completed", "job": _jsonable(job)})

    def handle_desired_runner_count(self, count: int) -> int:
        out = self._run({"event": "desired_runner_count", "count": count}).strip().splitlines()
        try:
            return int(out[-1]) if out else count
        except ValueError:
            return count


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL if it is still there 2 s later."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LogScaler:
    """The default scaler: logs what a real one would do."""

    def handle_job_started(self, job: JobStarted) -> None:
        log.info("job started: request %d on runner %s", job.runner_request_id, job.runner_name)

    def handle_job_completed(self, job: JobCompleted) -> None:
        log.info("job completed: request %d (%s) on runner %s", job.runner_request_id, job.result, job.runner_name)

    def handle_desired_runner_count(self, count: int) -> int:
        log.info("desired runners: %d", count)
        return count


class Metrics:
    """Counters and gauges for /metrics, fed through the listener's MetricsRecorder hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = {"jobs_started": 0, "jobs_completed": 0, "statistics_updates": 0}
        self.gauges: dict[str, float] = {"desired_runners": 0, "assigned_jobs": 0, "running_jobs": 0}
        self.circuits: dict[str, str] = {}

    def record_statistics(self, statistics: RunnerScaleSetStatistic) -> None:
        with self._lock:
            self.counters["statistics_updates"] += 1
            self.gauges["assigned_jobs"] = statistics.total_assigned_jobs
            self.gauges["running_jobs"] = statistics.total_running_jobs

    def record_job_started(self, job: JobStarted) -> None:
        with self._lock:
            self.counters["jobs_started"] += 1

    def record_job_completed(self, job: JobCompleted) -> None:
        with self._lock:
            self.counters["jobs_completed"] += 1

    def record_desired_runners(self, count: int) -> None:
        with self._lock:
            self.gauges["desired_runners"] = count

    def record_circuit_state(self, origin: str, state: str) -> None:
        with self._lock:
            self.circuits[origin] = state

    def render(self, listener: Listener, client: Client) -> str:
        health = listener.health()
        lines = []
        with self._lock:
            for name, value in self.counters.items():
                lines += [f"# TYPE scaleset_{name}_total counter", f"scaleset_{name}_total {value}"]
            for name, gauge in self.gauges.items():
                lines += [f"# TYPE scaleset_{name} gauge", f"scaleset_{name} {gauge:g}"]
        lines += ["# TYPE scaleset_listener_live gauge", f"scaleset_listener_live {int(health.live)}",
                  "# TYPE scaleset_listener_ready gauge", f"scaleset_listener_ready {int(health.ready)}",
                  "# TYPE scaleset_last_message_id gauge", f"scaleset_last_message_id {health.last_message_id}",
                  "# HELP scaleset_circuit_open 1 when the circuit is open (refusing calls)",
                  "# TYPE scaleset_circuit_open gauge"]
        for breaker in client.circuit_breakers.all():
            state = breaker.state.value
            labels = f'origin="{breaker.origin}",operation_class="{breaker.operation_class}",state="{state}"'
            lines.append(f"scaleset_circuit_open{{{labels}}} {int(state in ('open', 'forced_open'))}")
        return "\n".join(lines) + "\n"


def serve_health(address: str, port: int, listener: Listener, client: Client, metrics: Metrics
                 ) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            health = listener.health()
            if self.path == "/livez":
                status, body = (200 if health.live else 503), ("ok" if health.live else health.reason)
            elif self.path == "/readyz":
                status, body = (200 if health.ready else 503), ("ok" if health.ready else health.reason)
            elif self.path == "/metrics":
                status, body = 200, metrics.render(listener, client)
            else:
                status, body = 404, "not found"
            data = (body + ("\n" if not body.endswith("\n") else "")).encode()
            self.send_response(status)
            ctype = "text/plain; version=0.0.4" if self.path == "/metrics" else "text/plain"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="scaleset-health", daemon=True).start()
    return server


def _client(args: argparse.Namespace) -> Client:
    token = args.token or _env("GITHUB_TOKEN", "GH_TOKEN")
    info = SystemInfo(system="scaleset-listen", version=__version__, subsystem="listener")
    if args.app_client_id:
        key = _env("GITHUB_APP_PRIVATE_KEY")
        if args.app_private_key_file:
            try:
                with open(args.app_private_key_file, encoding="utf-8") as handle:
                    key = handle.read()
            except OSError as exc:
                raise ConfigError(f"cannot read --app-private-key-file: {exc.strerror}") from exc
        if not key or not args.app_installation_id:
            raise ConfigError("a GitHub App needs --app-installation-id and --app-private-key-file "
                              "(or GITHUB_APP_PRIVATE_KEY)")
        app = GitHubAppAuth(args.app_client_id, args.app_installation_id, key)
        return Client(args.url, app=app, system_info=info)
    if not token:
        raise ConfigError("no credentials: set GITHUB_TOKEN (a PAT) or the --app-* options")
    return Client(args.url, token=token, system_info=info)


def _scale_set_id(client: Client, args: argparse.Namespace) -> int:
    if args.scale_set_id:
        return int(args.scale_set_id)
    if not args.scale_set_name:
        raise ConfigError("name the scale set: --scale-set-name NAME (or --scale-set-id ID)")
    group_id = 1
    if args.runner_group.lower() != "default":
        group_id = client.get_runner_group_by_name(args.runner_group).id
    found = client.get_runner_scale_set(group_id, args.scale_set_name)
    if found is not None:
        return found.id
    labels = [Label(name.strip()) for name in args.labels.split(",") if name.strip()]
    created = client.create_runner_scale_set(RunnerScaleSet(name=args.scale_set_name, runner_group_id=group_id,
                                                            labels=labels))
    log.info("created scale set %s (id %d)", created.name, created.id)
    return created.id


def _transient(exc: ScalesetError) -> bool:
    """Errors that an outage causes and time cures; everything else ends the run."""
    if isinstance(exc, (AuthenticationError, ScaleSetNotFoundError, CallCancelledError, DeadlineExceededError)):
        return False
    if isinstance(exc, (TransportError, CircuitOpenError, RetryExhaustedError, RateLimitedError, ResponseError)):
        return True
    return isinstance(exc, APIError) and (exc.status >= 500 or exc.status in (0, 408, 429))


class _Stopped(Exception):
    """Start-up was interrupted by a signal or ran out of the run's time."""


def _start_up(client: Client, args: argparse.Namespace, stop: threading.Event, scope: Deadline) -> int:
    """Resolve the scale set, waiting out transient errors (bounded by stop and the run's time)."""
    failures = 0
    while True:
        try:
            return _scale_set_id(client, args)
        except ScalesetError as exc:
            if (isinstance(exc, (CallCancelledError, DeadlineExceededError)) and
                    (stop.is_set() or scope.cancelled or scope.expired)):
                raise _Stopped() from exc
            if not _transient(exc):
                raise
            failures += 1
            wait = min(60.0, 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)
            if isinstance(exc, CircuitOpenError) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            if isinstance(exc, RateLimitedError) and exc.retry_at is not None:
                wait = max(wait, exc.retry_at - time.time())
            log.warning("start-up call failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, wait)
            if stop.wait(max(0.0, min(wait, scope.remaining()))) or scope.cancelled or scope.expired:
                raise _Stopped() from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(args.log_level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if not args.url:
        parser.print_usage(sys.stderr)
        print("scaleset-listen: --url (or SCALESET_CONFIG_URL) is required", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    duration = args.duration if args.duration is not None else (55.0 if args.once else None)
    run_scope = Deadline(duration, cancel_on=stop, reason="scaleset-listen")

    # A signal handler runs between two bytecodes of the main thread, maybe while it holds the
    # stop event's lock, a scope's lock or stderr's buffer: taking any of them there can
    # deadlock. The handler only writes the signal number to a pipe; a thread does the stopping.
    wake_read, wake_write = os.pipe()

    def stop_on_signal() -> None:
        try:
            data = os.read(wake_read, 1)
        except OSError:
            return
        if not data:
            return
        log.info("signal %d: stopping (a call in flight is interrupted; the session is deleted)", data[0])
        stop.set()
        run_scope.cancel(f"signal {data[0]}")

    def on_signal(signum: int, frame: Any) -> None:
        os.write(wake_write, bytes([signum & 0xFF]))

    threading.Thread(target=stop_on_signal, daemon=True, name="scaleset-signal").start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    health_server = None
    try:
        if args.start_jitter > 0 and stop.wait(random.uniform(0.0, min(args.start_jitter, run_scope.remaining()))):
            return EXIT_OK
        client = _client(args)
        with client, run_scope:
            scale_set_id = _start_up(client, args, stop, run_scope)
            config = ListenerConfig(scale_set_id, args.max_runners, state_file=args.state_file,
                                    standby_timeout=args.standby_timeout)
            metrics = Metrics()
            listener = Listener(client, config, metrics=metrics)
            if args.health_port is not None:
                health_server = serve_health(args.health_address, args.health_port, listener, client, metrics)
            scaler = ExecScaler(args.exec_cmd, stop=stop, grace=args.exec_grace) if args.exec_cmd else LogScaler()
            listener.run(scaler, stop, until_idle=args.once)
            log.info("done: last message id %d", listener.cursor)
        return EXIT_OK
    except _Stopped:
        log.info("stopped during start-up")
        return EXIT_OK
    except RunSkippedError as exc:
        log.warning("%s", exc)
        return EXIT_SKIPPED
    except StateFileLockedError as exc:
        log.warning("skipped: %s", exc)
        return EXIT_SKIPPED
    except (ConfigError, StateFileError) as exc:
        log.error("configuration error: %s", exc)
        return EXIT_USAGE
    except (CallCancelledError, DeadlineExceededError) as exc:
        if stop.is_set() or run_scope.cancelled or run_scope.expired:
            log.info("stopped: %s", exc)
            return EXIT_OK
        log.error("stopping on an error: %s: %s", type(exc).__name__, exc)
        return EXIT_PERMANENT
    except ScalesetError as exc:
        log.error("stopping on a permanent error: %s: %s", type(exc).__name__, exc)
        return EXIT_PERMANENT
    finally:
        if health_server is not None:
            health_server.shutdown()
            health_server.server_close()
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
        os.close(wake_write)  # the stopping thread reads end-of-file and ends
        os.close(wake_read)
