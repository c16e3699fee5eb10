"""``scaleset-listen``: a listener for cron jobs and services, configured by flags or environment.

The options live in ``_cli_options.py`` (one table for the parser, ``--help`` and the docs) and
the ``--config FILE`` reader in ``_cli_config.py``; this module starts the client, the health
server and one listener thread per scale set, and turns what ends them into an exit code.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._auth import GitHubAppAuth, TokenUnavailableError
from ._cli_options import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_SKIPPED,
    EXIT_USAGE,
    OPTIONS,
    Args,
    Option,
    UsageError,
    build_parser,
    check_exec,
    env,
    options_markdown,
    parse_args,
)
from ._client import Client
from ._deadline import Deadline
from ._errors import (
    APIError,
    AuthenticationError,
    CallCancelledError,
    ConfigError,
    DeadlineExceededError,
    ResponseError,
    ScalesetError,
    ScaleSetNotFoundError,
    StateFileError,
    StateFileLockedError,
    TransientError,
)
from ._exec_scaler import ExecScaler, LogScaler
from ._listener import Listener, ListenerConfig, RunSkippedError
from ._models import Label, RunnerScaleSet, SystemInfo
from ._version import __version__

if TYPE_CHECKING:
    from ._cli_config import FILE_KEYS, load_config
    from ._health_server import Metrics, serve_health
    from ._tls import ClientCertificate

log = logging.getLogger(__name__)

__all__ = ["FILE_KEYS", "OPTIONS", "ExecScaler", "LogScaler", "Metrics", "Option", "TokenFile", "build_parser",
           "load_config", "main", "options_markdown", "parse_args", "serve_health"]


def __getattr__(name: str) -> Any:
    """``FILE_KEYS`` and ``load_config`` from ``_cli_config``, ``Metrics`` and ``serve_health`` from
    ``_health_server``, loaded when first asked for: only a ``--config`` run reads a file, and
    only a run with ``--health-port`` or ``--config`` keeps metrics, so the others (a cron run)
    skip those modules (PEP 562)."""
    if name in ("FILE_KEYS", "load_config"):
        from . import _cli_config

        return getattr(_cli_config, name)
    if name in ("Metrics", "serve_health"):
        from . import _health_server

        return getattr(_health_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_thread_scale_set = threading.local()  # .key: the scale set a --config worker thread serves


class _ScaleSetTag(logging.Filter):
    """Tags each record with the scale set of the thread that logs it (with --config)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(_thread_scale_set, "key", "")
        record.scale_set = key
        record.scale_set_tag = f"[{key}] " if key else ""
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        scale_set = getattr(record, "scale_set", "")
        if scale_set:
            entry["scale_set"] = scale_set
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TokenFile:
    """A ``token_provider`` reading the token from a file, again whenever the file changes.

    A Kubernetes secret mounted as a volume is replaced by swapping a symlink, so a changed
    inode, size or modification time means a new token; otherwise the token read last is
    returned without touching the file's content. A file that cannot be read at the moment
    (replaced under us) raises ``TokenUnavailableError``: a listener waits it out. ``reads``
    counts the reads of the content."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reads = 0
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    def __call__(self) -> str:
        with self._lock:
            try:
                stat = os.stat(self.path)
                seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if seen != self._seen:
                    with open(self.path, encoding="utf-8") as handle:
                        self._token = handle.read().strip()
                    self._seen = seen
                    self.reads += 1
            except OSError as exc:
                raise TokenUnavailableError(f"--token-file {self.path} cannot be read now: "
                                            f"{exc.strerror or type(exc).__name__}") from None
            return self._token

    def check(self) -> None:
        """Refuse, at start, a token file that cannot be read (``ConfigError``)."""
        try:
            self()
        except TokenUnavailableError as exc:
            raise ConfigError(str(exc).replace("cannot be read now", "cannot be read")) from None


def _client_cert(args: Args) -> ClientCertificate | None:
    if args.client_key and not args.client_cert:
        raise ConfigError("--client-key needs --client-cert (the certificate it belongs to)")
    if not args.client_cert:
        return None
    from ._tls import ClientCertificate  # only with --client-cert

    return ClientCertificate.from_files(args.client_cert, args.client_key or None,
                                        env("SCALESET_CLIENT_KEY_PASSWORD"))


def _client(args: Args) -> Client:
    token = args.token
    info = SystemInfo(system="scaleset-listen", version=__version__, subsystem="listener")
    tls: dict[str, Any] = {"client_cert": _client_cert(args)}
    if args.app_client_id:
        key = env("GITHUB_APP_PRIVATE_KEY")
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
        return Client(args.url, app=app, system_info=info, **tls)
    if args.token_file:
        token_file = TokenFile(args.token_file)
        token_file.check()
        return Client(args.url, token_provider=token_file, system_info=info, **tls)
    if not token:
        raise ConfigError("no credentials: set GITHUB_TOKEN (a PAT), --token-file or the --app-* options")
    return Client(args.url, token=token, system_info=info, **tls)


def _scale_set_id(client: Client, args: Args) -> int:
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
        return False  # wrong credentials or scale set, or the run's own stop or time: nothing to wait out
    if isinstance(exc, (TransientError, ResponseError)):
        return True  # a garbage body at start-up is a broken proxy or service more often than not
    return isinstance(exc, APIError) and (exc.status >= 500 or exc.status in (0, 408, 429))


class _Stopped(Exception):
    """Start-up was interrupted by a signal or ran out of the run's time."""


def _start_up(client: Client, args: Args, stop: threading.Event, scope: Deadline) -> int:
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
            if isinstance(exc, TransientError) and exc.retry_at is not None:
                wait = max(wait, exc.retry_at - time.time())
            log.warning("start-up call failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, wait)
            if stop.wait(max(0.0, min(wait, scope.remaining()))) or scope.cancelled or scope.expired:
                raise _Stopped() from exc




# -- running --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scaleset-listen``; returns the exit code (see ``--help``)."""
    entries: list[Args] | None = None
    try:
        args = parse_args(argv)
        if not args.url:
            raise UsageError("--url (or SCALESET_CONFIG_URL) is required")
        if args.exec_cmd:
            check_exec(args.exec_cmd)
        if args.config:
            from ._cli_config import load_config  # only --config runs read a file

            entries = load_config(args.config, args)
        elif args.min_runners > args.max_runners:
            raise UsageError(f"{args.sources.get('min_runners', '--min-runners')}={args.min_runners} is above "
                             f"--max-runners ({args.max_runners})")
    except UsageError as exc:
        print(f"scaleset-listen: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScaleSetTag())
    handler.setFormatter(_JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(scale_set_tag)s%(message)s"))
    handler.setLevel(args.log_level)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(args.log_level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    metrics: Metrics | None = None
    if args.health_port is not None:  # metrics only where /metrics and /readyz read them
        from ._health_server import Metrics

        metrics = Metrics(namespace=env("SCALESET_NAMESPACE", "POD_NAMESPACE") or "")
    try:
        return _run(args, entries, metrics)
    finally:
        root.removeHandler(handler)


@contextmanager
def _signals(stop: threading.Event, run_scope: Deadline) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` and cancel ``run_scope``, from a thread.

    A signal handler runs between two bytecodes of the main thread, maybe while it holds the
    stop event's lock, a scope's lock or stderr's buffer: taking any of them there can
    deadlock. The handler only writes the signal number to a pipe; a thread does the stopping."""
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
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
        os.close(wake_write)  # the stopping thread reads end-of-file and ends
        os.close(wake_read)


def _run(args: Args, entries: list[Args] | None, metrics: Metrics | None) -> int:
    stop = threading.Event()
    duration = args.duration if args.duration is not None else (55.0 if args.once else None)
    run_scope = Deadline(duration, cancel_on=stop, reason="scaleset-listen")
    with _signals(stop, run_scope):
        health_server = None
        try:
            if args.health_port is not None:
                from ._health_server import serve_health

                assert metrics is not None  # made by main() for a health port
                try:  # bound before anything else, so a port in use is refused at once
                    health_server = serve_health(args.health_address, args.health_port, None, None, metrics)
                except OSError as exc:
                    print(f"scaleset-listen: --health-port {args.health_port} on {args.health_address}: "
                          f"{exc.strerror or exc} (see --help)", file=sys.stderr)
                    return EXIT_USAGE
            if args.start_jitter > 0 and stop.wait(random.uniform(0.0, min(args.start_jitter,
                                                                            run_scope.remaining()))):
                return EXIT_OK
            client = _client(args)
            with client:
                if health_server is not None:
                    health_server.probe.client = client  # type: ignore[attr-defined]
                if entries is not None:
                    return _serve_many(client, entries, stop, run_scope, metrics)
                with run_scope:
                    def attach(listener: Listener) -> None:
                        if health_server is not None:
                            health_server.probe.listener = listener  # type: ignore[attr-defined]

                    _serve(client, args, stop, run_scope, metrics, attach)
            return EXIT_OK
        except Exception as exc:
            code = _ended(exc, stop, run_scope)
            if code is None:
                raise
            return code[0]
        finally:
            if health_server is not None:
                health_server.shutdown()
                health_server.server_close()


def _serve(client: Client, entry: Args, stop: threading.Event, run_scope: Deadline,
           recorder: Metrics | None, attach: Callable[[Listener], None]) -> None:
    """One scale set: resolve it, then run its listener until the run ends."""
    scale_set_id = _start_up(client, entry, stop, run_scope)
    config = ListenerConfig(scale_set_id, entry.max_runners, state_file=entry.state_file,
                            standby_timeout=entry.standby_timeout, scale_set_name=entry.scale_set_name,
                            min_runners=entry.min_runners, recreate_deleted=entry.recreate_deleted,
                            recreate_interval=entry.recreate_interval)
    listener = Listener(client, config, metrics=recorder)
    attach(listener)
    scaler: ExecScaler | LogScaler
    if entry.exec_cmd:
        scaler = ExecScaler(entry.exec_cmd, stop=stop, grace=entry.exec_grace)
        scaler.listener = listener
    else:
        scaler = LogScaler()
    listener.run(scaler, stop, until_idle=entry.once)
    log.info("done: last message id %d", listener.cursor)


def _ended(exc: Exception, stop: threading.Event, run_scope: Deadline) -> tuple[int, str] | None:
    """The exit code for an exception that ends a run, and why in a few words (logged here);
    None for an exception that is not one of ours (a bug: the caller lets it go)."""
    if isinstance(exc, _Stopped):
        log.info("stopped during start-up")
        return EXIT_OK, "stopped"
    if isinstance(exc, RunSkippedError):
        log.warning("%s", exc)
        return EXIT_SKIPPED, f"skipped: {exc}"
    if isinstance(exc, StateFileLockedError):
        log.warning("skipped: %s", exc)
        return EXIT_SKIPPED, f"skipped: {exc}"
    if isinstance(exc, StateFileError):
        log.error("state file error: %s", exc)
        return EXIT_USAGE, f"state file error: {exc}"
    if isinstance(exc, ConfigError):
        log.error("configuration error: %s", exc)
        return EXIT_USAGE, f"configuration error: {exc}"
    if isinstance(exc, (CallCancelledError, DeadlineExceededError)):
        if stop.is_set() or run_scope.cancelled or run_scope.expired:
            log.info("stopped: %s", exc)
            return EXIT_OK, "stopped"
        log.error("stopping on an error: %s: %s", type(exc).__name__, exc)
        return EXIT_PERMANENT, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ScalesetError):
        log.error("stopping on a permanent error: %s: %s", type(exc).__name__, exc)
        return EXIT_PERMANENT, f"{type(exc).__name__}: {exc}"
    return None


_SEVERITY = (EXIT_OK, EXIT_SKIPPED, EXIT_PERMANENT, EXIT_USAGE)  # the process exits with the worst


def _serve_many(client: Client, entries: list[Args], stop: threading.Event, run_scope: Deadline,
                metrics: Metrics | None) -> int:
    """--config: a thread per scale set on the one client. A scale set whose run ends (a permanent
    error, a skip) is reported and the others go on; SIGTERM stops them all, each deleting its
    session; the exit code is the most severe of theirs."""
    codes: dict[str, int] = {}

    def worker(entry: Args, recorder: Metrics | None) -> None:
        _thread_scale_set.key = entry.key
        try:
            with run_scope:
                _serve(client, entry, stop, run_scope, recorder,
                       lambda listener: None if recorder is None else setattr(recorder, "listener", listener))
            code, why = EXIT_OK, "done"
        except Exception as exc:
            ended = _ended(exc, stop, run_scope)
            if ended is None:
                log.exception("scale set %s: unexpected error", entry.key)
                ended = (EXIT_PERMANENT, f"unexpected error: {type(exc).__name__}: {exc}")
            code, why = ended
        codes[entry.key] = code
        if not stop.is_set():
            if recorder is not None:
                recorder.ended = why  # /readyz says so; the reason was logged above
            if code != EXIT_OK:
                log.error("scale set %s ended (exit code %d); the others go on", entry.key, code)

    threads = []
    for entry in entries:
        recorder = None if metrics is None else metrics.add_scale_set(entry.key)
        threads.append(threading.Thread(target=worker, args=(entry, recorder), daemon=True,
                                        name=f"scaleset-{entry.key}"))
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and not stop.wait(0.2):
        pass
    if stop.is_set():  # each listener ends within its bound; wait for that, not longer
        limit = time.monotonic() + max(e.exec_grace for e in entries) + 5.0
        for thread in threads:
            thread.join(max(0.0, limit - time.monotonic()))
        late = [t.name for t in threads if t.is_alive()]
        if late:
            log.error("not stopped in time: %s; closing the client deletes their sessions", ", ".join(late))
    return max((codes.get(e.key, EXIT_OK) for e in entries), key=_SEVERITY.index)
