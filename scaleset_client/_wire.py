"""Lenient reading of the service's JSON: BOMs, any key casing, zero timestamps, 7-digit fractions.

Every reader here either returns a value or raises ``ResponseError``; nothing else escapes, so
a hostile or broken body can never surface as a KeyError or TypeError in user code.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ._errors import ResponseError
from ._secrets import redact

__all__ = [
    "ZERO_TIME",
    "as_int",
    "as_str",
    "as_time",
    "excerpt",
    "format_time",
    "get_bool",
    "get_int",
    "get_str",
    "get_time",
    "loads",
    "lower_keys",
    "parse_time",
    "parse_time_fast",
]

BOM = b"\xef\xbb\xbf"
ZERO_TIME = "0001-01-01T00:00:00Z"
_MAX_DEPTH = 64
_INT64 = 2**63
FAST_ISO = sys.version_info >= (3, 11)  # fromisoformat reads "Z" and 7-digit fractions
_fromisoformat = datetime.fromisoformat
# A timestamp as the service writes it (UTC, "Z"), which fromisoformat reads as it is; _messages
# checks a whole column of them against the same shape.
TIME_SHAPE = r"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):\d\d:\d\d(?:\.\d+)?Z"
_FAST_SHAPE = re.compile(TIME_SHAPE, re.ASCII).fullmatch
_TIME_PATTERN = r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"


def excerpt(body: bytes | str, limit: int = 512) -> str:
    """A short, secret-free, printable piece of a body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = redact(text[: limit * 2])
    return text[:limit] + ("…" if len(text) > limit else "")


def _check_depth(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {_MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def loads(body: bytes | str, *, operation: str = "") -> Any:
    """Parse a JSON body, stripping a leading UTF-8 BOM; ``ResponseError`` on anything wrong."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    if not raw or raw.isspace():  # as ``not raw.strip()``, without copying a large body
        raise ResponseError(f"{operation or 'response'}: empty body where JSON was expected",
                            operation=operation)
    try:
        value = json.loads(raw.decode("utf-8"))
        _check_depth(value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ResponseError(
            f"{operation or 'response'}: body is not usable JSON ({str(exc)[:120] or type(exc).__name__}): "
            f"{excerpt(raw, 200)!r}",
            operation=operation,
            body_excerpt=excerpt(raw),
        ) from None
    return value


def lower_keys(data: Any, what: str) -> dict[str, Any]:
    """The object's keys lower-cased (the service's casing varies: ``RunnerSetting``)."""
    if not isinstance(data, dict):
        raise ResponseError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return {str(k).lower(): v for k, v in data.items()}


def get_int(d: dict[str, Any], key: str, what: str, default: int = 0) -> int:
    return as_int(d.get(key.lower()), what, key, default)


def as_int(value: Any, what: str, key: str, default: int = 0) -> int:
    """``value`` (already looked up under ``key``) as an int64; None gives ``default``."""
    if value.__class__ is int and -_INT64 <= value < _INT64:
        return value
    if value is None:
        return default
    if isinstance(value, bool):
        raise ResponseError(f"{what}.{key}: expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise ResponseError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    if not -_INT64 <= value < _INT64:
        raise ResponseError(f"{what}.{key}: integer out of the int64 range")
    return value


def get_str(d: dict[str, Any], key: str, what: str, default: str = "") -> str:
    return as_str(d.get(key.lower()), what, key, default)


def as_str(value: Any, what: str, key: str, default: str = "") -> str:
    """``value`` (already looked up under ``key``) as a string; numbers are stringified."""
    if value.__class__ is str:
        return value
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ResponseError(f"{what}.{key}: expected a string, got {type(value).__name__}")
    return value


def get_bool(d: dict[str, Any], key: str, what: str, default: bool = False) -> bool:
    value = d.get(key.lower())
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ResponseError(f"{what}.{key}: expected a boolean, got {type(value).__name__}")


def parse_time(text: str) -> datetime | None:
    """RFC 3339 with up to 9 fractional digits; the zero time (year 1) becomes None.

    The service's usual shape (``2024-01-02T03:04:05.1234567Z``) is read by ``parse_time_fast``;
    anything else, or anything it refuses, takes the general path, so the results and the error
    messages are those of the general path."""
    if text == ZERO_TIME:
        return None
    fast = parse_time_fast(text)
    return _parse_time_general(text) if fast is False else fast


def parse_time_fast(text: str) -> datetime | Literal[False]:
    """The service's usual shape, ``YYYY-MM-DDTHH:MM:SS[.digits]Z`` after year 1, as an aware UTC
    datetime; False for anything else (the caller then takes the general path).

    The shape is matched exactly (ASCII digits, hours 00-23: 24:00 is the next day for
    ``fromisoformat`` from 3.12) and read by ``datetime.fromisoformat`` (C code; it reads ``Z`` and
    long fractions, truncated to microseconds, from Python 3.11), which gives what the general
    path gives for this shape; what it refuses, and year 1, are left to the general path."""
    if FAST_ISO and _FAST_SHAPE(text) is not None:
        try:
            value = _fromisoformat(text)
        except ValueError:
            return False
        if value.year > 1:
            return value
    return False


def _parse_time_general(text: str) -> datetime | None:
    # Compiled on first use (re caches it): the service's own shape takes the fast path, so a
    # cron run need not pay this compile (~0.15 ms) at import.
    m = re.match(_TIME_PATTERN, text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    zone = m.group(8)
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tz).astimezone(timezone.utc)


def get_time(d: dict[str, Any], key: str, what: str) -> datetime | None:
    return as_time(d.get(key.lower()), what, key)


def as_time(value: Any, what: str, key: str) -> datetime | None:
    """``value`` (already looked up under ``key``) as an aware UTC datetime; zero time is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ResponseError(f"{what}.{key}: expected a timestamp string, got {type(value).__name__}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ResponseError(f"{what}.{key}: {exc}") from None


def format_time(value: datetime | None) -> str:
    """The wire form: zero time for None, UTC with a Z otherwise."""
    if value is None:
        return ZERO_TIME
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")
