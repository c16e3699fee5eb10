"""The options of ``scaleset-listen``: every flag, its environment variable and its default are
defined once in ``OPTIONS``; the parser, ``--help`` and the docs' table (``options_markdown()``)
come from it, and each value is checked as it is read (``UsageError``: one line, exit 2)."""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ._value_class import ValueClass
from ._version import __version__

if TYPE_CHECKING:
    import argparse

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


EXIT_OK, EXIT_USAGE, EXIT_PERMANENT, EXIT_SKIPPED = 0, 2, 3, 4


def env(*names: str) -> str | None:
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


class Option(ValueClass):
    """One CLI option: the single source of ``--help``, the environment fallback and the README table.

    A frozen value class (``_value_class.py``), not a dataclass: every CLI start builds the table,
    and a dataclass cost the ``dataclasses`` import and a compile (issue 28)."""

    __slots__ = ()

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


class Args(types.SimpleNamespace):
    """The parsed command line: an attribute per option (``Option.dest``), then ``sources``
    (where each value came from) and ``key`` (the scale set's name or id, for logs).

    A plain attribute bag of its own rather than ``argparse.Namespace``, so the usual command
    line (``_read_usual``) needs neither argparse nor its parser (issue 28: about 2.5 ms of a
    cron run). Its ``repr`` leaves the token out: a traceback or a debug log may show it."""

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={'***' if name == 'token' and value else repr(value)}"
                          for name, value in vars(self).items())
        return f"Args({shown})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option, its environment variable and its default come from ``OPTIONS``.

    Built for ``--help``, ``--version`` and any command line ``_read_usual`` leaves to it."""
    import argparse  # not on a cron run's usual command line: see _read_usual

    class Parser(argparse.ArgumentParser):
        """Usage errors as one line on stderr and exit 2, never a usage dump or a traceback."""

        def error(self, message: str) -> NoReturn:
            self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")

    epilog = "environment only:\n" + "\n".join(f"  {name:27} {meaning}" for name, meaning in ENVIRONMENT_ONLY)
    p = Parser(prog="scaleset-listen", description=_DESCRIPTION, epilog=epilog,
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


def _read_usual(argv: Sequence[str]) -> Args | None:
    """The command line read as argparse would, when every word is an option spelled out in full:
    ``--flag value``, ``--flag=value`` or a switch. Anything else (``--help``, ``--version``,
    an abbreviation, an unknown word, a switch given a value, a missing value, a value that
    starts with ``-``, ``--``) returns None and argparse reads it, with its own messages.
    ``tests/test_cli.py`` holds the two equal on generated command lines."""
    by_flag = {opt.flag: opt for opt in OPTIONS}
    values: dict[str, Any] = {opt.dest: False if opt.switch else None for opt in OPTIONS}
    at, end = 0, len(argv)
    while at < end:
        flag, has_value, value = argv[at].partition("=")
        opt = by_flag.get(flag)
        if opt is None:
            return None
        if opt.switch:
            if has_value:
                return None
            values[opt.dest] = True
        else:
            if not has_value:
                at += 1
                if at == end:
                    return None
                value = argv[at]
            if value.startswith("-"):
                return None
            values[opt.dest] = value
        at += 1
    return Args(**values)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Args:
    """Flags first, then the environment, then the default; a value that does not convert is a
    ``UsageError`` naming the flag or variable it came from."""
    env = os.environ if environ is None else environ
    words = sys.argv[1:] if argv is None else list(argv)
    args = _read_usual(words) or Args(**vars(build_parser().parse_args(words)))
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
    args.sources = sources
    args.key = args.scale_set_name or (str(args.scale_set_id) if args.scale_set_id else "")
    return args


_KIND: dict[Any, str] = {_nonneg_int: "a whole number, 0 or more", _positive_int: "a whole number above 0",
                         _nonneg_float: "a number of seconds", _port: "a port number"}



def check_exec(command: str, what: str = "--exec") -> None:
    """Refuse, at start, an --exec whose program is missing or not executable (otherwise every
    message would fail, be set aside and its events lost). ``what`` names it in the error."""
    import shlex  # only with --exec: not worth its import on every start

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

