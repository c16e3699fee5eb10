"""``scaleset-listen``: a listener for cron jobs and services, configured by flags or environment.

Every option, its environment variable and its default are defined once in ``OPTIONS``: the
parser, ``--help`` and the README's table (``options_markdown()``, checked by a test) come from it.
``--config FILE`` runs several scale sets in one process (``load_config``, ``FILE_KEYS``): a
thread each, on one client, one health server and one ``Metrics``.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
from ._validate import INT32_MAX
from ._version import __version__

__all__ = ["FILE_KEYS", "OPTIONS", "ExecScaler", "LogScaler", "Metrics", "Option", "TokenFile", "build_parser",
           "load_config", "main", "options_markdown", "parse_args", "serve_health"]

_DESCRIPTION = """\
A listener for one runner scale set, or several in one process: cron jobs and services.

  scaleset-listen --url https://github.com/my-org --scale-set-name linux --max-runners 10 \\
      --state-file /var/lib/scaleset/linux.json --exec ./scale.sh --health-port 8080
  scaleset-listen --url https://github.com/my-org --config /etc/scaleset/listeners.toml

--config FILE (TOML, or JSON; TOML needs Python 3.11 or the tomli package) lists the scale sets,
one entry each under "scale_sets", with the keys name or id, runner_group, labels, min_runners,
max_runners, state_file, exec, recreate_deleted and recreate_interval. A key an entry leaves out
takes its flag's value (so --max-runners 10 is every scale set's default); name, id and
state_file are never shared. All share one client (connections, token), one health port and
one /metrics (labelled scale_set="NAME"); one that fails for good is reported (log, /readyz)
and the others go on. The exit code is then the most severe of theirs (2, 3, 4, then 0).

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


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(text: str) -> bool:
    """A switch's environment variable: 1/true/yes/on or 0/false/no/off."""
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError("must be 1, true, yes or on (or 0, false, no, off)")
    return value in _TRUE


@dataclass(frozen=True)
class Option:
    """One CLI option: the single source of ``--help``, the environment fallback and the README table."""

    flag: str
    help: str
    env: tuple[str, ...] = ()
    default: Any = None
    convert: Callable[[str], Any] | None = None
    metavar: str | None = None
    switch: bool = False  # a flag without a value (its environment variable: 1/true/yes/on)

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
    Option("--config", "many scale sets in one process: a TOML or JSON file with one entry per scale set "
           "(name or id, runner_group, labels, min_runners, max_runners, state_file, exec, recreate_deleted, "
           "recreate_interval; a key left out takes its flag's value); see docs/cli.md",
           ("SCALESET_CONFIG_FILE",), metavar="FILE"),
    Option("--scale-set-name", "the scale set; created when missing", ("SCALESET_NAME",), metavar="NAME"),
    Option("--scale-set-id", "use this scale set id instead of looking up the name", ("SCALESET_ID",),
           convert=_positive_int, metavar="N"),
    Option("--runner-group", "runner group of the scale set", ("SCALESET_RUNNER_GROUP",), "default",
           metavar="NAME"),
    Option("--labels", "comma-separated labels for a scale set created here (default: its name)",
           ("SCALESET_LABELS",), "", metavar="A,B"),
    Option("--max-runners", "capacity advertised to GitHub", ("SCALESET_MAX_RUNNERS",), 10,
           convert=_nonneg_int, metavar="N"),
    Option("--min-runners", "the fewest runners the scaler should keep: passed to --exec (min_runners) and to "
           "gha_min_runners, not added to the desired count; at most --max-runners", ("SCALESET_MIN_RUNNERS",), 0,
           convert=_nonneg_int, metavar="N"),
    Option("--state-file", "cursor, session id and breaker states across runs (one file per listener)",
           ("SCALESET_STATE_FILE",), metavar="PATH"),
    Option("--once", "handle what is queued, then exit (bounded by 55 s): for cron", switch=True, default=False),
    Option("--duration", "exit after this many seconds", ("SCALESET_DURATION",), convert=_nonneg_float,
           metavar="S"),
    Option("--standby-timeout", "while another listener owns the scale set, give up after this many seconds "
           "(default: stand by for ever)", ("SCALESET_STANDBY_TIMEOUT",), convert=_nonneg_float, metavar="S"),
    Option("--recreate-deleted", "when the scale set is confirmed deleted on the service, create it again as its "
           "last session described it and go on (default: exit 3)", ("SCALESET_RECREATE_DELETED",),
           switch=True, default=False),
    Option("--recreate-interval", "with --recreate-deleted, create it again at most once per this many seconds "
           "(across restarts, through the state file)", ("SCALESET_RECREATE_INTERVAL",), 600.0,
           convert=_nonneg_float, metavar="S"),
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
    ("SCALESET_NAMESPACE", "the namespace label of the gha_* metrics (ARC's Kubernetes namespace; default empty)"),
    ("POD_NAMESPACE", "read for that label when SCALESET_NAMESPACE is unset (Kubernetes' downward API)"),
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
    sources: dict[str, str] = {}  # dest: the flag or variable a value came from (absent: the default)
    for opt in OPTIONS:
        if opt.switch:
            if getattr(args, opt.dest):
                sources[opt.dest] = opt.flag
                continue
            for name in opt.env:
                if env.get(name):
                    try:
                        setattr(args, opt.dest, _switch(env[name]))
                    except ValueError as exc:
                        raise UsageError(f"{name}={env[name]!r}: {exc}") from None
                    sources[opt.dest] = name
                    break
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
        sources[opt.dest] = source
        if opt.convert is not None:
            try:
                value = opt.convert(value)
            except ValueError as exc:
                why = str(exc) if "must" in str(exc) else f"must be {_KIND.get(opt.convert, 'valid')}"
                raise UsageError(f"{source}={value!r}: {why}") from None
        setattr(args, opt.dest, value)
    args.token_source = "--token" if "--token" in (argv or sys.argv[1:]) else "environment"
    args.sources = sources
    args.key = args.scale_set_name or (str(args.scale_set_id) if args.scale_set_id else "")
    return args


_KIND: dict[Any, str] = {_nonneg_int: "a whole number, 0 or more", _positive_int: "a whole number above 0",
                         _nonneg_float: "a number of seconds", _port: "a port number"}


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


def check_exec(command: str, what: str = "--exec") -> None:
    """Refuse, at start, an --exec whose program is missing or not executable (otherwise every
    message would fail, be set aside and its events lost). ``what`` names it in the error."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{what} {command!r}: {exc}") from None
    if not words:
        raise UsageError(f"{what} is empty")
    program = words[0]
    if "/" in program:
        if not os.path.isfile(program):
            raise UsageError(f"{what}: {program} does not exist")
        if not os.access(program, os.X_OK):
            raise UsageError(f"{what}: {program} is not executable (chmod +x it)")
    elif shutil.which(program) is None:
        raise UsageError(f"{what}: {program} is not found on PATH")


# -- --config: many scale sets -------------------------------------------------------------------
FILE_KEYS: dict[str, str] = {
    "name": "--scale-set-name", "id": "--scale-set-id", "runner_group": "--runner-group", "labels": "--labels",
    "min_runners": "--min-runners", "max_runners": "--max-runners", "state_file": "--state-file",
    "exec": "--exec", "recreate_deleted": "--recreate-deleted", "recreate_interval": "--recreate-interval",
}
"""A scale set's keys in a --config file, and the flag each stands for (whose value is the default)."""

_OWN_KEYS = ("name", "id", "state_file")  # one scale set's alone: never taken from a flag
_DEST = {key: next(o.dest for o in OPTIONS if o.flag == flag) for key, flag in FILE_KEYS.items()}


def _toml_reader() -> Any:
    """``tomllib`` (Python 3.11+), else ``tomli`` if it is installed, else None (JSON only)."""
    import importlib

    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _read_config(path: str) -> Any:
    """The file's data: JSON for a .json name or a file starting with "{", TOML otherwise."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or type(exc).__name__}") from None
    if path.endswith(".json") or (not path.endswith(".toml") and data.lstrip()[:1] == b"{"):
        try:
            return json.loads(data)
        except ValueError as exc:
            raise UsageError(f"--config {path}: not valid JSON: {exc}") from None
    toml = _toml_reader()
    if toml is None:
        raise UsageError(f"--config {path}: reading TOML needs Python 3.11 or the tomli package; on Python "
                         f"{sys.version_info[0]}.{sys.version_info[1]} without it, write the file as JSON (.json)")
    try:
        return toml.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise UsageError(f"--config {path}: not valid TOML: {exc}") from None


def _whole(where: str, value: Any, least: int, most: int = INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        kind = "a whole number above 0" if least == 1 else "a whole number, 0 or more"
        raise UsageError(f"{where}: must be {kind}, not {value!r}")
    return value


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: must be a non-empty string, not {value!r}")
    return value.strip()


def _file_value(where: str, key: str, value: Any, base: str) -> Any:
    """One key's value from the file, checked; in the form its flag's value has."""
    if key == "id":
        return _whole(where, value, 1)
    if key in ("min_runners", "max_runners"):
        return _whole(where, value, 0)
    if key == "recreate_deleted":
        if not isinstance(value, bool):
            raise UsageError(f"{where}: must be true or false, not {value!r}")
        return value
    if key == "recreate_interval":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise UsageError(f"{where}: must be a number of seconds, 0 or more, not {value!r}")
        return float(value)
    if key == "labels":
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() and "," not in n
                                                  for n in names):
            raise UsageError(f"{where}: must be a list of label names (or one comma-separated string), "
                             f"not {value!r}")
        return ",".join(n.strip() for n in names)
    text = _text(where, value)
    if key == "state_file":  # relative to the file, wherever the process runs
        return os.path.join(base, os.path.expanduser(text))
    if key == "exec":
        check_exec(text, where)
    return text


def load_config(path: str, args: argparse.Namespace) -> list[argparse.Namespace]:
    """The scale sets of a --config file, each as the flags' namespace with its own values: a key
    left out takes its flag's value. Raises ``UsageError`` (one line naming the key) on any problem."""
    for key in _OWN_KEYS:
        source = args.sources.get(_DEST[key])
        if source is not None:
            raise UsageError(f"{source} names one scale set: with --config, put {key!r} in each scale set of "
                             f"{path} instead")
    data = _read_config(path)
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: must hold a table (JSON object) with a 'scale_sets' list")
    for key in data:
        if key != "scale_sets":
            raise UsageError(f"--config {path}: {key}: unknown key (the file holds 'scale_sets' only; the shared "
                             "settings are flags)")
    raw = data.get("scale_sets")
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"--config {path}: scale_sets: must be a non-empty list of scale sets "
                         "([[scale_sets]] tables in TOML)")
    base = os.path.dirname(os.path.abspath(path))
    entries: list[argparse.Namespace] = []
    seen: dict[tuple[str, Any], str] = {}
    for index, item in enumerate(raw):
        here = f"--config {path}: scale_sets[{index}]"
        if not isinstance(item, dict):
            raise UsageError(f"{here}: must be a table (JSON object), not {item!r}")
        if isinstance(item.get("name"), str) and item["name"].strip():
            here += f" ({item['name'].strip()})"
        entry = argparse.Namespace(**vars(args))
        entry.scale_set_name = entry.scale_set_id = entry.state_file = None
        for key, value in item.items():
            if key not in FILE_KEYS:
                raise UsageError(f"{here}.{key}: unknown key (known: {', '.join(FILE_KEYS)})")
            setattr(entry, _DEST[key], _file_value(f"{here}.{key}", key, value, base))
        if entry.scale_set_name is None and entry.scale_set_id is None:
            raise UsageError(f"{here}: needs 'name' or 'id'")
        if entry.min_runners > entry.max_runners:
            raise UsageError(f"{here}.min_runners: {entry.min_runners} is above max_runners ({entry.max_runners})")
        entry.key = entry.scale_set_name or str(entry.scale_set_id)
        for key, value in (("name", (entry.scale_set_name or "").casefold()), ("id", entry.scale_set_id),
                           ("state_file", entry.state_file and os.path.abspath(entry.state_file)),
                           ("name", entry.key.casefold())):
            if value and (key, value) in seen and seen[(key, value)] != here:
                raise UsageError(f"{here}.{key}: {value!r} is also {seen[(key, value)].split(': ', 1)[1]}'s "
                                 "(each scale set needs its own)")
            if value:
                seen[(key, value)] = here
        entries.append(entry)
    return entries


# -- running --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scaleset-listen``; returns the exit code (see ``--help``)."""
    entries: list[argparse.Namespace] | None = None
    try:
        args = parse_args(argv)
        if not args.url:
            raise UsageError("--url (or SCALESET_CONFIG_URL) is required")
        if args.exec_cmd:
            check_exec(args.exec_cmd)
        if args.config:
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
    metrics = Metrics(namespace=_env("SCALESET_NAMESPACE", "POD_NAMESPACE") or "")
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


def _run(args: argparse.Namespace, entries: list[argparse.Namespace] | None, metrics: Metrics) -> int:
    stop = threading.Event()
    duration = args.duration if args.duration is not None else (55.0 if args.once else None)
    run_scope = Deadline(duration, cancel_on=stop, reason="scaleset-listen")
    with _signals(stop, run_scope):
        health_server = None
        try:
            if args.health_port is not None:
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


def _serve(client: Client, entry: argparse.Namespace, stop: threading.Event, run_scope: Deadline,
           recorder: Metrics, attach: Callable[[Listener], None]) -> None:
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


def _serve_many(client: Client, entries: list[argparse.Namespace], stop: threading.Event, run_scope: Deadline,
                metrics: Metrics) -> int:
    """--config: a thread per scale set on the one client. A scale set whose run ends (a permanent
    error, a skip) is reported and the others go on; SIGTERM stops them all, each deleting its
    session; the exit code is the most severe of theirs."""
    codes: dict[str, int] = {}

    def worker(entry: argparse.Namespace, recorder: Metrics) -> None:
        _thread_scale_set.key = entry.key
        try:
            with run_scope:
                _serve(client, entry, stop, run_scope, recorder, lambda listener: setattr(recorder, "listener",
                                                                                         listener))
            code, why = EXIT_OK, "done"
        except Exception as exc:
            ended = _ended(exc, stop, run_scope)
            if ended is None:
                log.exception("scale set %s: unexpected error", entry.key)
                ended = (EXIT_PERMANENT, f"unexpected error: {type(exc).__name__}: {exc}")
            code, why = ended
        codes[entry.key] = code
        if not stop.is_set():
            recorder.ended = why  # /readyz says so; the reason was logged above
            if code != EXIT_OK:
                log.error("scale set %s ended (exit code %d); the others go on", entry.key, code)

    threads = []
    for entry in entries:
        recorder = metrics.add_scale_set(entry.key)
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
