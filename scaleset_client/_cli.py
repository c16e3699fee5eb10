"""``scaleset-listen``: a listener for cron jobs and services, configured by flags or environment.

Every option, its environment variable and its default are defined once in ``OPTIONS``: the
parser, ``--help`` and the README's table (``options_markdown()``, checked by a test) come from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from ._auth import GitHubAppAuth, TokenUnavailableError
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
from ._health_server import Metrics, serve_health
from ._listener import Listener, ListenerConfig, RunSkippedError
from ._models import Label, RunnerScaleSet, SystemInfo
from ._tls import ClientCertificate
from ._version import __version__

__all__ = ["OPTIONS", "ExecScaler", "LogScaler", "Metrics", "Option", "TokenFile", "build_parser", "main",
           "options_markdown", "parse_args", "serve_health"]

_DESCRIPTION = """\
A listener for one runner scale set: cron jobs and services.

  scaleset-listen --url https://github.com/my-org --scale-set-name linux --max-runners 10 \\
      --state-file /var/lib/scaleset/linux.json --exec ./scale.sh --health-port 8080

Exit codes: 0 done (stopped by SIGTERM or SIGINT, --once drained the queue, or --duration
passed); 2 usage or configuration error (one line on stderr); 3 permanent service error
(credentials rejected, scale set gone); 4 skipped: the service is known down past this run's
end (see the state file), or another run still holds the state file.

Time bounds: SIGTERM or SIGINT ends the process within 5 s in any state, after deleting the
server session (at most 1.5 s). An --exec command in flight first gets --exec-grace seconds
(10) to finish; then it is terminated and its message stays unacknowledged, so a supervisor's
grace period should exceed 5 s plus --exec-grace. --duration D (and --once, bounded by 55 s)
returns within D + 2 s whatever the service does. Start-up calls wait out transient errors
like polling does; only permanent conditions end a run early."""

log = logging.getLogger("scaleset_client._cli")

EXIT_OK, EXIT_USAGE, EXIT_PERMANENT, EXIT_SKIPPED = 0, 2, 3, 4


def _env(*names: str) -> str | None:
    """The first of ``names`` set (non-empty) in the environment."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class UsageError(Exception):
    """A flag or environment variable has a value the CLI cannot use: one line, exit 2."""


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _nonneg_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number of seconds, 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number, 0 to 65535")
    return value


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return value


def _format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


@dataclass(frozen=True)
class Option:
    """One CLI option: the single source of ``--help``, the environment fallback and the README table."""

    flag: str
    help: str
    env: tuple[str, ...] = ()
    default: Any = None
    convert: Callable[[str], Any] | None = None
    metavar: str | None = None
    switch: bool = False  # a flag without a value

    @property
    def dest(self) -> str:
        """The attribute name argparse stores the value under."""
        return "exec_cmd" if self.flag == "--exec" else self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--url", "configuration URL: https://github.com/ORG, https://github.com/OWNER/REPO or "
           "https://github.com/enterprises/NAME (or the same on a GHES host)",
           ("SCALESET_CONFIG_URL", "GITHUB_CONFIG_URL"), metavar="URL"),
    Option("--token", "personal access token; prefer the environment, which stays out of ps",
           ("GITHUB_TOKEN", "GH_TOKEN"), metavar="TOKEN"),
    Option("--token-file", "file holding the token (PAT or installation token), read again whenever it changes "
           "(a mounted Kubernetes secret, a vault agent's sink); wins over --token",
           ("SCALESET_TOKEN_FILE", "GITHUB_TOKEN_FILE"), metavar="PATH"),
    Option("--app-client-id", "GitHub App client id (or app id) instead of a token",
           ("GITHUB_APP_CLIENT_ID", "GITHUB_APP_ID"), metavar="ID"),
    Option("--app-installation-id", "GitHub App installation id", ("GITHUB_APP_INSTALLATION_ID",),
           convert=_positive_int, metavar="N"),
    Option("--app-private-key-file", "file holding the GitHub App private key (PEM); or the key itself in "
           "GITHUB_APP_PRIVATE_KEY", ("GITHUB_APP_PRIVATE_KEY_FILE",), metavar="PATH"),
    Option("--client-cert", "TLS client certificate (PEM) presented to GitHub, the Actions service, the broker and "
           "an HTTPS proxy (mutual TLS); may hold the key too", ("SCALESET_CLIENT_CERT",), metavar="PATH"),
    Option("--client-key", "private key (PEM) of --client-cert when it is in its own file; an encrypted key's "
           "password goes in SCALESET_CLIENT_KEY_PASSWORD", ("SCALESET_CLIENT_KEY",), metavar="PATH"),
    Option("--scale-set-name", "the scale set; created when missing", ("SCALESET_NAME",), metavar="NAME"),
    Option("--scale-set-id", "use this scale set id instead of looking up the name", ("SCALESET_ID",),
           convert=_positive_int, metavar="N"),
    Option("--runner-group", "runner group of the scale set", ("SCALESET_RUNNER_GROUP",), "default",
           metavar="NAME"),
    Option("--labels", "comma-separated labels for a scale set created here (default: its name)",
           ("SCALESET_LABELS",), "", metavar="A,B"),
    Option("--max-runners", "capacity advertised to GitHub", ("SCALESET_MAX_RUNNERS",), 10,
           convert=_nonneg_int, metavar="N"),
    Option("--state-file", "cursor, session id and breaker states across runs (one file per listener)",
           ("SCALESET_STATE_FILE",), metavar="PATH"),
    Option("--once", "handle what is queued, then exit (bounded by 55 s): for cron", switch=True, default=False),
    Option("--duration", "exit after this many seconds", ("SCALESET_DURATION",), convert=_nonneg_float,
           metavar="S"),
    Option("--standby-timeout", "while another listener owns the scale set, give up after this many seconds "
           "(default: stand by for ever)", ("SCALESET_STANDBY_TIMEOUT",), convert=_nonneg_float, metavar="S"),
    Option("--start-jitter", "wait a random 0 to S seconds first, so a fleet of cron jobs does not fire together",
           ("SCALESET_START_JITTER",), 0.0, convert=_nonneg_float, metavar="S"),
    Option("--health-port", "serve /livez, /readyz and /metrics on this port", ("SCALESET_HEALTH_PORT",),
           convert=_port, metavar="PORT"),
    Option("--health-address", "address for the health port", ("SCALESET_HEALTH_ADDRESS",), "0.0.0.0",
           metavar="ADDR"),
    Option("--exec", "scaler command: gets each event as JSON on stdin; for desired_runner_count it prints "
           "the runner count it now has; refused at start when missing or not executable",
           ("SCALESET_EXEC",), metavar="CMD"),
    Option("--exec-grace", "on SIGTERM, seconds an --exec command in flight may take to finish before it is "
           "terminated and its message left unacknowledged", ("SCALESET_EXEC_GRACE",), 10.0,
           convert=_nonneg_float, metavar="S"),
    Option("--log-format", "text or json, to stderr", ("SCALESET_LOG_FORMAT",), "text", convert=_format,
           metavar="FORMAT"),
    Option("--log-level", "DEBUG, INFO, WARNING or ERROR", ("SCALESET_LOG_LEVEL",), "INFO", convert=_level,
           metavar="LEVEL"),
)

ENVIRONMENT_ONLY: tuple[tuple[str, str], ...] = (
    ("GITHUB_APP_PRIVATE_KEY", "the GitHub App private key itself (PEM), instead of --app-private-key-file"),
    ("SCALESET_CLIENT_KEY_PASSWORD", "password of an encrypted --client-key"),
    ("GITHUB_ACTIONS_FORCE_GHES", "set (even empty): treat the URL's host as GitHub Enterprise Server"),
    ("SCALESET_ALLOW_HTTP", "1: allow a plain http:// URL for a GitHub Enterprise Server host (never for "
                            "github.com or ghe.com)"),
)


def options_markdown() -> str:
    """The README's table of flags and environment variables, generated from ``OPTIONS``."""
    lines = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for opt in OPTIONS:
        flag = f"`{opt.flag}`" if opt.switch else f"`{opt.flag} {opt.metavar}`"
        env = ", ".join(f"`{e}`" for e in opt.env) or "-"
        default = "-" if opt.default in (None, False, "") else f"`{opt.default}`"
        lines.append(f"| {flag} | {env} | {default} | {opt.help.replace('|', '/')} |")
    for name, meaning in ENVIRONMENT_ONLY:
        lines.append(f"| - | `{name}` | - | {meaning} |")
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit 2, never a usage dump or a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option, its environment variable and its default come from ``OPTIONS``."""
    epilog = "environment only:\n" + "\n".join(f"  {name:27} {meaning}" for name, meaning in ENVIRONMENT_ONLY)
    p = _Parser(prog="scaleset-listen", description=_DESCRIPTION, epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    for opt in OPTIONS:
        extra = []
        if opt.env:
            extra.append("env " + ", ".join(opt.env))
        if opt.default not in (None, False, ""):
            extra.append(f"default {opt.default}")
        text = opt.help + (f" ({'; '.join(extra)})" if extra else "")
        if opt.switch:
            p.add_argument(opt.flag, dest=opt.dest, action="store_true", help=text)
        else:
            p.add_argument(opt.flag, dest=opt.dest, default=None, metavar=opt.metavar, help=text)
    p.add_argument("--version", action="version", version=f"scaleset-listen {__version__}")
    return p


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Flags first, then the environment, then the default; a value that does not convert is a
    ``UsageError`` naming the flag or variable it came from."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    for opt in OPTIONS:
        if opt.switch:
            continue
        value, source = getattr(args, opt.dest), opt.flag
        if value is None:
            for name in opt.env:
                if env.get(name):
                    value, source = env[name], name
                    break
        if value is None:
            setattr(args, opt.dest, opt.default)
            continue
        if opt.convert is not None:
            try:
                value = opt.convert(value)
            except ValueError as exc:
                why = str(exc) if "must" in str(exc) else f"must be {_KIND.get(opt.convert, 'valid')}"
                raise UsageError(f"{source}={value!r}: {why}") from None
        setattr(args, opt.dest, value)
    args.token_source = "--token" if "--token" in (argv or sys.argv[1:]) else "environment"
    return args


_KIND: dict[Any, str] = {_nonneg_int: "a whole number, 0 or more", _positive_int: "a whole number above 0",
                         _nonneg_float: "a number of seconds", _port: "a port number"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
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


def _client_cert(args: argparse.Namespace) -> ClientCertificate | None:
    if args.client_key and not args.client_cert:
        raise ConfigError("--client-key needs --client-cert (the certificate it belongs to)")
    if not args.client_cert:
        return None
    return ClientCertificate.from_files(args.client_cert, args.client_key or None,
                                        _env("SCALESET_CLIENT_KEY_PASSWORD"))


def _client(args: argparse.Namespace) -> Client:
    token = args.token
    info = SystemInfo(system="scaleset-listen", version=__version__, subsystem="listener")
    tls: dict[str, Any] = {"client_cert": _client_cert(args)}
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
        return Client(args.url, app=app, system_info=info, **tls)
    if args.token_file:
        token_file = TokenFile(args.token_file)
        token_file.check()
        return Client(args.url, token_provider=token_file, system_info=info, **tls)
    if not token:
        raise ConfigError("no credentials: set GITHUB_TOKEN (a PAT), --token-file or the --app-* options")
    return Client(args.url, token=token, system_info=info, **tls)


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
        return False  # wrong credentials or scale set, or the run's own stop or time: nothing to wait out
    if isinstance(exc, (TransientError, ResponseError)):
        return True  # a garbage body at start-up is a broken proxy or service more often than not
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
            if isinstance(exc, TransientError) and exc.retry_at is not None:
                wait = max(wait, exc.retry_at - time.time())
            log.warning("start-up call failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, wait)
            if stop.wait(max(0.0, min(wait, scope.remaining()))) or scope.cancelled or scope.expired:
                raise _Stopped() from exc


def check_exec(command: str) -> None:
    """Refuse, at start, an --exec whose program is missing or not executable (otherwise every
    message would fail, be set aside and its events lost)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--exec {command!r}: {exc}") from None
    if not words:
        raise UsageError("--exec is empty")
    program = words[0]
    if "/" in program:
        if not os.path.isfile(program):
            raise UsageError(f"--exec: {program} does not exist")
        if not os.access(program, os.X_OK):
            raise UsageError(f"--exec: {program} is not executable (chmod +x it)")
    elif shutil.which(program) is None:
        raise UsageError(f"--exec: {program} is not found on PATH")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scaleset-listen``; returns the exit code (see ``--help``)."""
    try:
        args = parse_args(argv)
        if not args.url:
            raise UsageError("--url (or SCALESET_CONFIG_URL) is required")
        if args.exec_cmd:
            check_exec(args.exec_cmd)
    except UsageError as exc:
        print(f"scaleset-listen: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(args.log_level)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(args.log_level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    metrics = Metrics()
    try:
        return _run(args, metrics)
    finally:
        root.removeHandler(handler)


def _run(args: argparse.Namespace, metrics: Metrics) -> int:
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
        if args.health_port is not None:
            try:  # bound before anything else, so a port in use is refused at once
                health_server = serve_health(args.health_address, args.health_port, None, None, metrics)
            except OSError as exc:
                print(f"scaleset-listen: --health-port {args.health_port} on {args.health_address}: "
                      f"{exc.strerror or exc} (see --help)", file=sys.stderr)
                return EXIT_USAGE
        if args.start_jitter > 0 and stop.wait(random.uniform(0.0, min(args.start_jitter, run_scope.remaining()))):
            return EXIT_OK
        client = _client(args)
        with client, run_scope:
            if health_server is not None:
                health_server.probe.client = client  # type: ignore[attr-defined]
            scale_set_id = _start_up(client, args, stop, run_scope)
            config = ListenerConfig(scale_set_id, args.max_runners, state_file=args.state_file,
                                    standby_timeout=args.standby_timeout, scale_set_name=args.scale_set_name)
            listener = Listener(client, config, metrics=metrics)
            if health_server is not None:
                health_server.probe.listener = listener  # type: ignore[attr-defined]
            scaler: ExecScaler | LogScaler
            if args.exec_cmd:
                scaler = ExecScaler(args.exec_cmd, stop=stop, grace=args.exec_grace)
                scaler.listener = listener
            else:
                scaler = LogScaler()
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
    except StateFileError as exc:
        log.error("state file error: %s", exc)
        return EXIT_USAGE
    except ConfigError as exc:
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
