"""Checks at the edges: ids, names, TLS and timeout settings; each failure is a ConfigError
that names the argument and shows the offending value."""

from __future__ import annotations

import logging
import os

from .errors import ConfigError

__all__ = ["INT32_MAX", "check_id", "check_name", "resolve_verify", "timeout_pair"]

log = logging.getLogger("scaleset_client.client")

INT32_MAX = 2**31 - 1


def check_id(name: str, value: object) -> int:
    """A positive int64 id, or ``ConfigError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
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
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in pair):
        raise ConfigError(f"timeout must be a positive number or a (connect, read) pair, got {value!r}")
    return float(pair[0]), float(pair[1])
