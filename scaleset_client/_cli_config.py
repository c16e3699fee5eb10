"""``scaleset-listen --config FILE``: many scale sets in one process, read from a TOML or JSON
file and checked at start (one ``UsageError`` line naming the key). Each entry becomes the
arguments of one scale set: its keys (``FILE_KEYS``) stand for flags, a key left out takes its
flag's value."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ._cli_options import OPTIONS, Args, UsageError, check_exec
from ._validate import INT32_MAX

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


def load_config(path: str, args: Args) -> list[Args]:
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
    entries: list[Args] = []
    seen: dict[tuple[str, Any], str] = {}
    for index, item in enumerate(raw):
        here = f"--config {path}: scale_sets[{index}]"
        if not isinstance(item, dict):
            raise UsageError(f"{here}: must be a table (JSON object), not {item!r}")
        if isinstance(item.get("name"), str) and item["name"].strip():
            here += f" ({item['name'].strip()})"
        entry = Args(**vars(args))
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

