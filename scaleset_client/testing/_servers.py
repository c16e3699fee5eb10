"""Loopback HTTP servers with connection counting, stop/start on the same port, and fault writers.

Over TLS each connection's handshake runs first thing in its handler thread, so the server
knows what the client presented before any request: ``LoopbackServer.client_certificates``
lists the subject of every client certificate seen, and ``tls_refused`` counts handshakes that
failed (no certificate where one is required, one from an unknown CA, an untrusted server).
``require_client_certificate`` turns a server context into the mutual-TLS mode.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._faults import Fault

__all__ = ["LoopbackServer", "require_client_certificate", "write_fault", "write_response"]

Dispatch = Callable[[str, BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave together: no 40 ms delayed-ACK stalls
    wbufsize = 65536
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def setup(self) -> None:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError):
                self.server.tls_handshake(None, failed=True)
                _linger(sock)
                raise  # handle_error stays quiet about it; the connection is closed
            self.server.tls_handshake(sock.getpeercert())
        super().setup()

    def _dispatch(self) -> None:
        self.server.dispatch(self.server.name, self)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the service's clock (a FakeClock in tests), as GitHub's follows its own.
        import email.utils

        return email.utils.formatdate(self.server.wall() if timestamp is None else timestamp, usegmt=True)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _dispatch


def _linger(sock: socket.socket) -> None:
    """Close gently after a refused handshake: OpenSSL has written its alert; closing at once with
    the client's request unread would send a reset that can overtake the alert, and the client
    would see a dropped connection (worth retrying) instead of the refusal (not worth it). So
    the write side is shut and what the client still sends is read, until it closes (1 s at most)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        sock.settimeout(1.0)
        while socket.socket.recv(sock, 65536):
            pass
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, name: str, dispatch: Dispatch, counter: Callable[[], None],
                 ssl_context: ssl.SSLContext | None = None, wall: Callable[[], float] = time.time,
                 on_handshake: Callable[[Any, bool], None] | None = None) -> None:
        self.name = name
        self._on_handshake = on_handshake
        self.wall = wall
        self.dispatch = dispatch
        self._count = counter
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)
        if ssl_context is not None:
            # The handshake runs in the handler thread, so a client that never completes it
            # cannot stall accept() for everyone else.
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def tls_handshake(self, peer: Any, failed: bool = False) -> None:
        if self._on_handshake is not None:
            self._on_handshake(peer, failed)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        with self.conns_lock:
            self.conns.add(sock)
        self._count()
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or a server stopped mid-answer) is part of the fault model.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)


class LoopbackServer:
    """One HTTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, name: str, dispatch: Dispatch, ssl_context: ssl.SSLContext | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self._dispatch = dispatch
        self._ssl = ssl_context
        self._wall = wall
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.accepted = 0
        self.tls_refused = 0  # TLS handshakes that failed (see the module docstring)
        self.client_certificates: list[str] = []  # subject of each client certificate presented

    def _counted(self) -> None:
        with self._lock:
            self.accepted += 1

    def _handshake(self, peer: Any, failed: bool) -> None:
        with self._lock:
            if failed:
                self.tls_refused += 1
            elif peer:
                subject = ", ".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
                alt = ", ".join(v for _, v in peer.get("subjectAltName", ()))
                self.client_certificates.append(subject or alt or "(no subject)")

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        server = None
        for _ in range(50):  # the old socket may linger a moment after a stop
            try:
                server = _Server(self.port, self.name, self._dispatch, self._counted, self._ssl, self._wall,
                                 self._handshake)
                break
            except OSError:
                if self.port == 0:
                    raise
                time.sleep(0.05)
        if server is None:
            raise OSError(f"could not bind 127.0.0.1:{self.port} again")
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting (connections are refused) and cut every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.cut_connections(server)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def cut_connections(self, server: _Server | None = None) -> int:
        """Close every open connection (idle keep-alive ones included) from the server side."""
        server = server or self._server
        if server is None:
            return 0
        with server.conns_lock:
            conns = list(server.conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)


def require_client_certificate(context: ssl.SSLContext, ca_pem: str | bytes) -> ssl.SSLContext:
    """The mutual-TLS mode of a server ``context`` (``FakeActionsService(ssl_context=...)``): every
    connection must present a client certificate issued by the CA in ``ca_pem``, or its handshake
    fails (counted in ``tls_refused``) and no request is read. Returns ``context``, changed."""
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem.decode("ascii") if isinstance(ca_pem, bytes) else ca_pem)
    return context


def write_response(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    hdrs = {"Content-Type": "application/json; charset=utf-8"} if body else {}
    hdrs.update(headers or {})
    for key, value in hdrs.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if body and handler.command != "HEAD":
        handler.wfile.write(body)
    handler.wfile.flush()


def _head(handler: BaseHTTPRequestHandler, status: int, framing: str, value: str) -> None:
    """A JSON response head with the given framing header (the body is written by the caller)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header(framing, value)
    handler.end_headers()


def write_fault(handler: BaseHTTPRequestHandler, fault: Fault, release: threading.Event) -> None:
    """Carry out a fault that replaces the normal answer."""
    sock = handler.connection
    if fault.kind == "respond":
        write_response(handler, fault.status, fault.body, fault.headers)
    elif fault.kind == "drop":
        handler.close_connection = True
        sock.shutdown(socket.SHUT_RDWR)
    elif fault.kind == "reset":
        handler.close_connection = True
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    elif fault.kind == "hang":
        release.wait(fault.seconds)
        handler.close_connection = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    elif fault.kind == "huge":
        if fault.chunked:
            _head(handler, fault.status, "Transfer-Encoding", "chunked")
        else:
            _head(handler, fault.status, "Content-Length", str(fault.size))
        handler.wfile.flush()
        chunk = b" " * 65536
        left = fault.size
        try:
            while left > 0 and not release.is_set():
                piece = chunk[: min(left, len(chunk))]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if fault.chunked else piece)
                left -= len(piece)
            if fault.chunked:
                handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            pass
        handler.close_connection = True
    elif fault.kind == "drip":
        if fault.chunked:
            _head(handler, 200, "Transfer-Encoding", "chunked")
        else:
            _head(handler, 200, "Content-Length", str(fault.size))
        handler.wfile.flush()
        try:
            for _ in range(fault.size):
                if release.wait(fault.seconds):
                    break
                handler.wfile.write(b"1\r\n \r\n" if fault.chunked else b" ")
                handler.wfile.flush()
            if fault.chunked:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        handler.close_connection = True
    elif fault.kind == "truncated":
        _head(handler, 200, "Content-Length", "1000")  # a lie: far fewer bytes follow
        handler.wfile.write(b'{"count": 1, "va')
        handler.wfile.flush()
        handler.close_connection = True
        sock.shutdown(socket.SHUT_RDWR)
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")


@dataclass(frozen=True)
class LoggedRequest:
    """What reached a fake server; ``time`` is the service clock's monotonic time of arrival and
    ``fault`` the kind of fault that answered it ("" for a normal answer)."""

    server: str
    operation: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    time: float
    fault: str = ""

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body.decode()) if self.body else None
