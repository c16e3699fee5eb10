"""``ForwardProxy``: a small HTTP proxy on loopback (CONNECT tunnels and absolute-form requests).

It forwards only to loopback addresses, counts what it carried (``requests``), and can demand
``Proxy-Authorization`` (``credentials``), so tests prove that traffic, the long poll included,
really went through a proxy.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit

__all__ = ["ForwardProxy"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _Handler(socketserver.StreamRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1").strip()
        if not line:
            return
        method, target, _ = [*line.split(" ", 2), "", ""][:3]
        headers: list[tuple[str, str]] = []
        while True:
            raw = self.rfile.readline(65537).decode("latin-1")
            if raw in ("\r\n", "\n", ""):
                break
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.strip()))
        proxy = self.server.owner
        if proxy.credentials is not None:
            expected = "Basic " + base64.b64encode(proxy.credentials.encode()).decode()
            if dict((k.lower(), v) for k, v in headers).get("proxy-authorization") != expected:
                self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            proxy.record(method, target)
            self._tunnel(host.strip("[]"), int(port or 443))
        else:
            parts = urlsplit(target)
            proxy.record(method, target)
            self._forward(method, parts.hostname or "", parts.port or 80,
                          (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers)

    def _connect(self, host: str, port: int) -> socket.socket | None:
        if host not in _LOOPBACK:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return None
        try:
            return socket.create_connection((host, port), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return None

    def _tunnel(self, host: str, port: int) -> None:
        upstream = self._connect(host, port)
        if upstream is None:
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._relay(upstream)

    def _forward(self, method: str, host: str, port: int, path: str, headers: list[tuple[str, str]]) -> None:
        upstream = self._connect(host, port)
        if upstream is None:
            return
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        kept = [(k, v) for k, v in headers if k.lower() not in ("proxy-authorization", "proxy-connection",
                                                                 "connection")]
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
        upstream.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n" + body)
        # Tell the client this connection ends with the response (we forward one request each).
        response = b""
        while b"\r\n\r\n" not in response:
            data = upstream.recv(65536)
            if not data:
                break
            response += data
        head_bytes, sep, rest = response.partition(b"\r\n\r\n")
        lines = [ln for ln in head_bytes.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        self.connection.sendall(b"\r\n".join([*lines, b"Connection: close"]) + sep + rest)
        self._relay(upstream)

    def _relay(self, upstream: socket.socket) -> None:
        client = self.connection
        try:
            while not self.server.owner.closing.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: ForwardProxy) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class ForwardProxy:
    """A forward proxy on 127.0.0.1 for tests; ``url`` is what to pass as ``proxies``."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def start(self) -> ForwardProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
