"""How the fake reads requests and shapes answers like an HTTP server, not like our client.

Header names are case-insensitive (RFC 9110 §5.1): the Go reference sends
``X-Scalesetmaxcapacity``. Request bodies arrive with ``Content-Length`` or chunked framing.
Answers are gzip-compressed when the request asks for it.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["MAX_REQUEST_BODY", "BodyError", "Headers", "accepts_gzip", "compress", "read_body"]

MAX_REQUEST_BODY = 16 * 1024 * 1024
GZIP_MIN_BYTES = 0  # ASSUMPTION: the service compresses any non-empty body when asked


class Headers(dict[str, str]):
    """A dict of request headers (original casing kept for display) with case-insensitive lookup."""

    def _key(self, name: object) -> str | None:
        if isinstance(name, str):
            if dict.__contains__(self, name):
                return name
            lowered = name.lower()
            for key in self.keys():
                if key.lower() == lowered:
                    return key
        return None

    def __getitem__(self, name: str) -> str:
        key = self._key(name)
        if key is None:
            raise KeyError(name)
        return dict.__getitem__(self, key)

    def __contains__(self, name: object) -> bool:
        return self._key(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        key = self._key(name)
        return default if key is None else dict.__getitem__(self, key)

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]]) -> Headers:
        return cls(items)


class BodyError(ValueError):
    """A request body the server cannot frame (bad chunk size, too large, cut short)."""


def read_body(handler: BaseHTTPRequestHandler, headers: Headers) -> bytes:
    """The request body, framed by ``Transfer-Encoding: chunked`` or ``Content-Length``."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        parts: list[bytes] = []
        total = 0
        while True:
            line = handler.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise BodyError("bad chunk size line") from None
            if size == 0:
                while handler.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_REQUEST_BODY:
                raise BodyError("request body too large")
            parts.append(handler.rfile.read(size))
            handler.rfile.readline(8)  # the CRLF after the chunk
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        raise BodyError("bad Content-Length") from None
    if length < 0 or length > MAX_REQUEST_BODY:
        raise BodyError("bad Content-Length")
    body = handler.rfile.read(length) if length else b""
    if len(body) < length:
        # The client went away mid-body (a stop, a cut): nothing to answer, and no form to judge.
        raise BodyError(f"request body cut short ({len(body)} of {length} bytes)")
    return body


def accepts_gzip(headers: Headers) -> bool:
    for item in headers.get("Accept-Encoding", "").lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def compress(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=5, mtime=0)
