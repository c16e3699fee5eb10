"""Classifying what an attempt produced: pure reads of exceptions and bodies.

Which failures never reached the server (so even a POST may be repeated), which are a stale
pooled connection, which timeouts the call inflicted on itself, a short human cause for a
log line, and whether a 200's body can be JSON at all.
"""

from __future__ import annotations

import http.client
import re

import requests
import urllib3
from urllib3.exceptions import ConnectTimeoutError, ProtocolError

from .secrets import redact

MESSAGE_ID = re.compile(rb'"messageid"\s*:\s*(\d{1,18})', re.IGNORECASE)


class SlowResponse(requests.exceptions.ReadTimeout):
    """One attempt outlived its connect + read timeouts while bytes kept arriving."""


def self_inflicted(exc: BaseException, capped: tuple[bool, bool]) -> bool:
    """A timeout that only happened because the socket timeout was cut to the time left."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return capped[0]
    return isinstance(exc, requests.Timeout) and capped[1]


def walk(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 16:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.append(cur)
        for nxt in (*[a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)],
                    getattr(cur, "reason", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return seen


def describe(exc: BaseException) -> str:
    """A short human cause ("connection refused") instead of urllib3's nested reprs."""
    if isinstance(exc, SlowResponse):
        return str(exc)
    chain = walk(exc)
    for kinds, text in (
        ((ConnectionRefusedError,), "connection refused"),
        ((urllib3.exceptions.NameResolutionError,), "the host name does not resolve"),
        ((requests.exceptions.ConnectTimeout, ConnectTimeoutError), "connecting timed out"),
        ((requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError), "no answer within the read timeout"),
        ((http.client.RemoteDisconnected,), "the server closed the connection without answering"),
        ((ConnectionResetError,), "the connection was reset"),
        ((requests.exceptions.ChunkedEncodingError, urllib3.exceptions.IncompleteRead),
         "the body was cut short"),
        ((requests.exceptions.ProxyError,), "the proxy failed"),
    ):
        if any(isinstance(x, kinds) for x in chain):
            return text
    return redact(f"{type(exc).__name__}: {exc}")[:200]


def never_delivered(exc: BaseException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(x, (ConnectTimeoutError, ConnectionRefusedError)) for x in walk(exc))


def stale_connection(exc: BaseException) -> bool:
    """The server closed a kept-alive connection before answering (no response bytes)."""
    return any(isinstance(x, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for x in walk(exc)) and not isinstance(exc, requests.Timeout) and any(
        isinstance(x, ProtocolError) for x in walk(exc))


def looks_like_json(body: bytes | None) -> bool:
    text = (body or b"").lstrip(b"\xef\xbb\xbf \t\r\n")
    return bool(text) and text[:1] in b'{["-0123456789tfn'
