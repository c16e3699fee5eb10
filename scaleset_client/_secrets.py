"""Keeping credentials out of reprs, logs and error messages.

``Secret`` wraps a token so that printing it, logging it or putting it in an f-string shows
``Secret('***')``; the value is read only where it goes on the wire (``reveal()``). Every Secret
also registers its value with a small process-wide redactor, so a server that echoes a token
back in an error body cannot make us print it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Secret", "redact", "redact_url"]

_MIN_SECRET_LEN = 6
_MAX_REMEMBERED = 256
_lock = threading.Lock()
_known: OrderedDict[str, None] = OrderedDict()
_longest_first: tuple[str, ...] = ()
_generation = 0  # bumped whenever the remembered secrets change

# Query keys whose values we send ourselves and that never carry a credential.
_SAFE_QUERY_KEYS = frozenset(
    {"api-version", "lastmessageid", "name", "runnergroupid", "groupname", "agentname"}
)


def _remember(value: str) -> None:
    global _longest_first, _generation
    if len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _known:
            _known.move_to_end(value)
            return
        _known[value] = None
        while len(_known) > _MAX_REMEMBERED:
            _known.popitem(last=False)
        _longest_first = tuple(sorted(_known, key=len, reverse=True))
        _generation += 1


def redact(text: str) -> str:
    """Return ``text`` with every remembered secret value replaced by ``***``.

    Plain substring replacement, longest first: a regex over the secrets would be recompiled,
    and cached by ``re``, every time a token is renewed (measured: tens of MiB in a soak run).
    """
    if not text:
        return text
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, "***")
    return text


_URL_CACHE_SIZE = 256
_redacted_urls: dict[tuple[str, int], str] = {}


def redact_url(url: str) -> str:
    """Return ``url`` without userinfo and with unknown query values replaced by ``***``.

    Every attempt names its URL (in errors, logs and the classification), and a client asks for
    the same few URLs over and over: the answer is kept per URL and set of known secrets (a new
    secret makes every earlier answer stale, so it is part of the key), at most 256 of them."""
    key = (url, _generation)
    found = _redacted_urls.get(key)
    if found is None:
        found = _redact_url(url)
        if len(_redacted_urls) >= _URL_CACHE_SIZE:
            _redacted_urls.clear()  # a bound, not an LRU: URLs repeat, a clear is rare and cheap
        _redacted_urls[key] = found
    return found


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v if k.lower() in _SAFE_QUERY_KEYS else "***") for k, v in pairs])
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class Secret:
    """A credential whose value never shows in ``repr``, ``str`` or formatting."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret takes a str, not {type(value).__name__}")
        self._value = value
        _remember(value)

    def reveal(self) -> str:
        """The value itself, for the one place it goes on the wire."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled: pass the credential explicitly")
