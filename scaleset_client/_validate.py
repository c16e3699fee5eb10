"""Checks at the edges: ids, names, numbers, types, TLS and timeout settings.

One style for every argument the package validates: ``check_*(name, value)`` returns the value
(narrowed) or raises a ConfigError that names the argument and shows the offending value, so a
caller's constructor reads as a list of checks rather than a thicket of conditions."""

from __future__ import annotations

import logging
import math
import os
from typing import TypeVar

from ._errors import ConfigError

__all__ = ["INT32_MAX", "check_id", "check_instance", "check_int", "check_name", "check_optional",
           "check_positive_int", "check_positive_number", "check_text", "resolve_verify", "timeout_pair"]

log = logging.getLogger("scaleset_client._client")

INT32_MAX = 2**31 - 1
_T = TypeVar("_T")


def check_id(name: str, value: object) -> int:
    """A positive int64 id, or ``ConfigError`` naming the argument."""
    return check_positive_int(name, value, below=2**63)


def check_positive_int(name: str, value: object, *, below: int | None = None) -> int:
    """An int >= 1 (and under ``below`` when given): counts and sizes."""
    # bool is an int to Python, never to us (True would be a count of one)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (below is not None and value >= below):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_int(name: str, value: object, *, low: int = 0, high: int | None = None) -> int:
    """An int from ``low`` to ``high`` inclusive (no upper bound when None): cursors and capacities."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def check_positive_number(name: str, value: object) -> float:
    """An int or float > 0 (never a bool), as a float: durations and timeouts."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_instance(name: str, value: object, cls: type[_T]) -> _T:
    """``value`` when it is a ``cls``: settings objects passed where a dict or a string could slip in."""
    if not isinstance(value, cls):
        raise ConfigError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
    return value


def check_optional(name: str, value: object, cls: type[_T]) -> _T | None:
    """None, or ``value`` when it is a ``cls`` (an optional setting left to its default)."""
    return None if value is None else check_instance(name, value, cls)


def check_text(name: str, value: object) -> str:
    """A string with something in it besides whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_name(name: str, value: object) -> str:
    """A non-empty string without control characters: names that go into URLs and JSON bodies."""
    value = check_text(name, value)
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{name} must not contain control characters, got {value!r}")
    return value


def resolve_verify(verify: bool | str) -> bool | str:
    """An explicit CA path always wins; the default ``True`` honours REQUESTS_CA_BUNDLE like curl."""
    if isinstance(verify, bool):
        if verify:
            return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        log.warning("TLS certificate verification is OFF (verify=False): tokens can be intercepted")
        return False
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigError(f"verify={path!r}: no such CA bundle file or directory")
        return path
    raise ConfigError(f"verify must be True, False or a CA bundle path, got {verify!r}")


def timeout_pair(value: float | tuple[float, float]) -> tuple[float, float]:
    """``(connect, read)`` seconds from one number or a pair, each positive."""
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in pair):
        raise ConfigError(f"timeout must be a positive number or a (connect, read) pair, got {value!r}")
    return float(pair[0]), float(pair[1])


def check_range(name: str, value: float, low: float, high: float = math.inf, *, integer: bool = False) -> None:
    """``value`` must be a number (an integer with ``integer``) from ``low`` to ``high``."""
    bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if integer and not bad_type and not float(value).is_integer():
        bad_type = True
    if bad_type or not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        kind = "an integer" if integer else "a number"
        upper = "" if high == math.inf else f" and at most {high}"
        raise ConfigError(f"{name} must be {kind} of at least {low}{upper}, got {value!r}")
