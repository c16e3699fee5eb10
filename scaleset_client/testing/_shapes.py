"""``ShapeFront``: the fake service answered in a chosen response shape, with faults on one call.

Why this exists: the fake's servers (``http.server``) answer one way only, HTTP/1.1 kept alive
with a Content-Length, and the client's time bounds held for that shape while escaping for
others that servers, load balancers and corporate proxies send every day (issue 22): a response
that says it will close (``Connection: close``, HTTP/1.0, a body ended by the close) made
http.client drop the connection's socket while the body went on arriving through the response's
own file object, so nothing was left to cut at the deadline. A bound holds only for the shapes it
was tested against, so the tests run every shape.

A front stands before each server of a ``FakeActionsService`` (github, actions, broker), on its
own loopback port. It is written on raw sockets, so it controls every byte and every close. Each
request is forwarded to the fake (decoded: ``Accept-Encoding`` is dropped), the fake's own
addresses in the answer are rewritten to the front's (the registration answer names the actions
server, a session names the broker), and the answer is written in the front's ``Shape``. A
request that matches an armed fault (``arm``) never reaches the fake: it gets a padded JSON body
(a 404 for a DELETE, the answer an acknowledgement may carry a body with; a 200 otherwise) with the
fault applied: the status line and headers dripped, the body dripped, a hang after the headers,
the body cut short (FIN) or the connection reset (RST) half-way through it.

Shapes (``SHAPES``): kept alive with Content-Length; ``Connection: close`` with Content-Length;
HTTP/1.0 with the body ended by the close; HTTP/1.1 ``Connection: close`` with no length;
chunked; gzip with Content-Length and ``Connection: close``; TLS (certificates from ``trustme``,
imported only for it) with ``Connection: close``; and the same TLS front reached through a
CONNECT tunnel of ``ForwardProxy``. The close-bearing framing is the default for TLS and the
proxy because that is what escaped: their keep-alive twin is the first shape over another socket.
"""

from __future__ import annotations

import atexit
import gzip
import http.client
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from ._proxy import ForwardProxy

__all__ = ["FAULTS", "SHAPES", "Shape", "ShapeFront"]

FAULTS = ("head-drip", "body-drip", "hang", "cut", "reset")
_NO_BODY = frozenset({204, 304})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                         "proxy-connection", "te", "trailer", "upgrade"})


@dataclass(frozen=True)
class Shape:
    """How every answer of a front is framed.

    ``version`` the status line's protocol; ``framing`` "length" (Content-Length), "chunked", or
    "close" (no length: the body ends when the connection closes); ``close`` whether the front
    says ``Connection: close`` and closes after each answer (always so for "close" framing);
    ``gzip`` whether bodies are sent gzip-encoded; ``tls`` whether the front speaks TLS;
    ``proxy`` whether the client reaches it through a CONNECT tunnel."""

    name: str
    version: str = "HTTP/1.1"
    framing: str = "length"
    close: bool = False
    gzip: bool = False
    tls: bool = False
    proxy: bool = False

    @property
    def closes(self) -> bool:
        """Whether the connection ends after each answer."""
        return self.close or self.framing == "close" or self.version == "HTTP/1.0"


SHAPES: dict[str, Shape] = {shape.name: shape for shape in (
    Shape("keep-alive"),
    Shape("close", close=True),
    Shape("http1.0", version="HTTP/1.0", framing="close"),
    Shape("close-no-length", framing="close", close=True),
    Shape("chunked", framing="chunked"),
    Shape("gzip", close=True, gzip=True),
    Shape("tls", close=True, tls=True),
    Shape("proxy", close=True, tls=True, proxy=True),
)}


@dataclass
class _Armed:
    method: str
    path: re.Pattern[str]
    fault: str
    times: int


class _TLS:
    """A test CA (``trustme``) and a server context for 127.0.0.1; ``ca_path`` is what a client
    verifies with. One per process (``shared``): making keys costs more than a whole test cell."""

    _shared: _TLS | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import trustme  # a test dependency: only TLS shapes need it

        ca = trustme.CA()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.context)
        handle, self.ca_path = tempfile.mkstemp(prefix="shape-ca-", suffix=".pem")
        with os.fdopen(handle, "wb") as out:
            out.write(ca.cert_pem.bytes())
        atexit.register(self._remove)

    @classmethod
    def shared(cls) -> _TLS:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _remove(self) -> None:
        try:
            os.unlink(self.ca_path)
        except OSError:
            pass


class ShapeFront:
    """Fronts for the servers of a fake service, answering in ``shape``.

    ``upstreams`` maps a name to the server's base URL (``{"github": "http://127.0.0.1:5001", ...}``);
    ``interval`` is the seconds between two dripped bytes. Use ``url`` (or ``rewrite``) for the
    addresses to give a client, ``verify`` and ``proxies`` for its TLS and proxy settings, ``arm``
    to fault the next matching requests, ``release`` to end drips and hangs at once.
    """

    def __init__(self, upstreams: dict[str, str], shape: Shape, *, interval: float = 0.05) -> None:
        self.shape = shape
        self.interval = interval
        self._stop = threading.Event()  # the front is closing
        self._release = threading.Event()  # drips and hangs end now
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._conns: set[socket.socket] = set()
        self.faulted: list[tuple[str, str, str]] = []  # (method, path, fault) of each faulted request
        self._served = threading.Event()  # a fault was served (its request arrived)
        self.first_fault_at: float | None = None  # time.monotonic() when the first fault was served
        self._tls = _TLS.shared() if shape.tls else None
        self._proxy = ForwardProxy().start() if shape.proxy else None
        self._upstreams = {name: urlsplit(url) for name, url in upstreams.items()}
        self._listeners: dict[str, socket.socket] = {}
        for name in upstreams:
            listener = socket.create_server(("127.0.0.1", 0))
            self._listeners[name] = listener
            # The name goes with the thread: the next listeners are still being added to the dict.
            threading.Thread(target=self._accept, args=(listener, name), name=f"shape-{shape.name}-{name}",
                             daemon=True).start()

    # -- what a client is given ---------------------------------------------------------------
    def url(self, name: str) -> str:
        """The front's base URL for the upstream ``name``."""
        scheme = "https" if self.shape.tls else "http"
        return f"{scheme}://127.0.0.1:{self._listeners[name].getsockname()[1]}"

    def rewrite(self, text: str) -> str:
        """``text`` with every upstream base URL replaced by its front's (for a configuration URL)."""
        for name, parts in self._upstreams.items():
            text = text.replace(f"{parts.scheme}://{parts.netloc}", self.url(name))
        return text

    @property
    def verify(self) -> bool | str:
        """What to pass as a Client's ``verify``: the test CA's file for TLS shapes."""
        return self._tls.ca_path if self._tls is not None else True

    @property
    def proxies(self) -> dict[str, str] | None:
        """What to pass as a Client's ``proxies``: the CONNECT proxy for the proxy shape."""
        return {"https": self._proxy.url} if self._proxy is not None else None

    # -- faults -------------------------------------------------------------------------------
    def arm(self, method: str, path: str, fault: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose method is ``method`` and whose path matches the
        regular expression ``path`` (searched) with ``fault`` (one of ``FAULTS``) instead of the fake."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._armed.append(_Armed(method.upper(), re.compile(path), fault, times))

    def _take(self, method: str, path: str) -> str:
        with self._lock:
            for armed in self._armed:
                if armed.times > 0 and armed.method == method and armed.path.search(path):
                    armed.times -= 1
                    self.faulted.append((method, path, armed.fault))
                    if self.first_fault_at is None:
                        self.first_fault_at = time.monotonic()
                    self._served.set()
                    return armed.fault
        return ""

    def wait_for_fault(self, timeout: float) -> bool:
        """Wait until an armed fault is served (its request arrived); False if ``timeout`` passed first."""
        return self._served.wait(timeout)

    def release(self) -> None:
        """End every drip and hang now (their connections are closed); the front goes on serving."""
        self._release.set()

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        self._stop.set()
        self._release.set()
        for listener in self._listeners.values():
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept blocked on it (a close would not)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._proxy is not None:
            self._proxy.close()

    def __enter__(self) -> ShapeFront:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------------
    def _accept(self, listener: socket.socket, name: str) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, name), daemon=True).start()

    def _serve(self, raw: socket.socket, name: str) -> None:
        with self._lock:
            self._conns.add(raw)
        conn = raw
        try:
            conn.settimeout(120)
            if self._tls is not None:
                conn = self._tls.context.wrap_socket(raw, server_side=True)  # takes raw's descriptor over
                with self._lock:
                    self._conns.discard(raw)
                    self._conns.add(conn)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, target, headers, body = request
                path = urlsplit(target).path
                fault = self._take(method, path)
                if fault:
                    self._fault(conn, method, fault)
                    return
                status, reason, kept, payload = self._forward(name, method, target, headers, body)
                conn.sendall(self._encode(method, status, reason, kept, payload, headers))
                if self.shape.closes:
                    return
        except (OSError, ValueError, http.client.HTTPException):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            _close(conn)

    def _forward(self, name: str, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The fake's answer to the request, its addresses rewritten to the fronts'."""
        upstream = self._upstreams[name]
        sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP | {"host", "accept-encoding"}}
        sent["Connection"] = "close"
        if body:
            sent["Content-Length"] = str(len(body))
        link = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port or 80, timeout=120)
        try:
            link.request(method, target, body=body or None, headers=sent)
            answer = link.getresponse()
            payload = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            status, reason = answer.status, answer.reason
        finally:
            link.close()
        for other, parts in self._upstreams.items():
            payload = payload.replace(f"{parts.scheme}://{parts.netloc}".encode(), self.url(other).encode())
        return status, reason, kept, payload

    def _encode(self, method: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                request_headers: list[tuple[str, str]], padding: int = 0) -> bytes:
        """The whole answer in this front's shape (the head alone when the status carries no body)."""
        shape = self.shape
        lines = [f"{shape.version} {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
        if padding:
            lines.append("X-Padding: " + "p" * padding)  # a long head, to drip for a while
        bodyless = status in _NO_BODY or method == "HEAD"
        wants_gzip = any(k.lower() == "accept-encoding" and "gzip" in v for k, v in request_headers)
        if shape.gzip and body and wants_gzip and not bodyless:
            body = gzip.compress(body)
            lines.append("Content-Encoding: gzip")
        if shape.close and shape.version != "HTTP/1.0":
            lines.append("Connection: close")
        if bodyless:
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if shape.framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        elif shape.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in _pieces(body, 1)) + b"0\r\n\r\n"
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _fault(self, conn: socket.socket, method: str, fault: str) -> None:
        """Answer with ``fault`` instead of the fake (see the module's docstring)."""
        status, reason = (404, "Not Found") if method == "DELETE" else (200, "OK")
        body = b'{"message": "' + os.urandom(600).hex().encode() + b'"}'  # incompressible: a long gzip drip too
        headers = [("Content-Type", "application/json")]
        whole = self._encode(method, status, reason, headers, body, [("Accept-Encoding", "gzip")],
                             padding=400 if fault == "head-drip" else 0)
        head, _, rest = whole.partition(b"\r\n\r\n")
        head += b"\r\n\r\n"
        if fault == "head-drip":
            self._drip(conn, whole)
        elif fault == "body-drip":
            conn.sendall(head)
            self._drip(conn, rest)
        elif fault == "hang":
            conn.sendall(head)
            self._release.wait(60)
        elif fault == "cut":
            conn.sendall(head + rest[: len(rest) // 2])
            _close(conn)
        else:  # reset: RST instead of FIN, half-way through the body
            conn.sendall(head + rest[: len(rest) // 2])
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for piece in _pieces(data, 1):
            if self._release.wait(self.interval):
                return
            conn.sendall(piece)


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _read_request(reader: IO[bytes]) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    """One request from a buffered reader, or None when the client closed the connection."""
    readline = reader.readline
    line = readline(65537).decode("latin-1").strip()
    while line == "":  # tolerate a stray CRLF between requests
        raw = readline(65537)
        if not raw:
            return None
        line = raw.decode("latin-1").strip()
    method, target, _ = [*line.split(" ", 2), "", ""][:3]
    headers: list[tuple[str, str]] = []
    while True:
        text = readline(65537).decode("latin-1")
        if text in ("\r\n", "\n", ""):
            break
        key, _, value = text.partition(":")
        headers.append((key.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length" and v.strip().isdigit()), 0)
    body = reader.read(length) if length else b""
    return method.upper(), target, headers, body


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
