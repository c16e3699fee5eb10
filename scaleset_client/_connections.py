"""Connections the adapter can cut from another thread, and the call whose time they serve.

A ``CallInFlight`` is one ``ResilienceAdapter.send``: its absolute expiry, an interrupt flag and the
connection in flight. Pools built by ``tracked_pool`` bind every connection (even one still
connecting: ``connect_socket`` hands the socket over before it connects; ``request`` binds the
connection, new or reused, before it sends) to the call sending on it, so the watchdog, a
cancelled scope, ``close()`` or ``recover()`` can shut that socket and end a blocked read or
connect at once. Idle pooled connections need no cutting: closing the pools closes them.

What is shut is the connection's ``wire``: the socket object that owns the TCP connection's
descriptor, kept on the connection when it connects. The connection's ``sock`` is not enough:
when a response says it will close (``Connection: close``, HTTP/1.0, a body ended by the close),
http.client's ``getresponse()`` drops ``sock`` from the connection while the response goes on
reading the same descriptor through its own file object, so shutting ``sock`` found nothing and
the call outlived its deadline. The wire is shut with ``socket.socket.shutdown`` itself, under
any TLS layer (a CONNECT tunnel included): the TCP connection ends, so a read blocked inside the
TLS record layer returns too. ``CallInFlight`` also notes whether an interrupt actually cut the
attempt's socket (``end_attempt``): a response read from a cut socket may be a fragment (a header drip cut
mid-way parses as a 200 with no headers) and is never handed back.

One gap remains: while a TLS handshake runs, the plain socket has been handed to the TLS layer
and the TLS socket is not known yet, so an interrupt is seen only when the handshake ends; the
handshake is bounded by the connect timeout, itself cut to the call's time left.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from ._clock import Clock
from ._words import Word


class Interrupt(Word):
    """Why another thread cut a call (a ``str`` so it compares and logs as its word).

    ``DEADLINE``, ``CANCEL`` and ``CLOSE`` end the call; ``RECOVER`` (``client.recover()``) and
    ``SLOW`` (one attempt outlived its connect + read timeouts while the call had time) make it
    retry on a fresh connection."""

    NONE = ""
    SLOW = "slow"
    RECOVER = "recover"
    DEADLINE = "deadline"
    CANCEL = "cancel"
    CLOSE = "close"


TERMINAL = (Interrupt.DEADLINE, Interrupt.CANCEL, Interrupt.CLOSE)


sending = threading.local()  # the CallInFlight of the attempt this thread is sending, for connection binding


class CallInFlight:
    """One ``send``: the absolute expiry, the interrupt flag and the connection in flight.

    ``interrupt`` may come from any thread (the watchdog at the deadline, a cancelled scope, a
    closing client, ``recover()``): it wakes the call's waits and shuts its socket, so a blocked
    read returns at once. "recover" and "slow" (one attempt outlived connect + read timeout
    while the call still has time) are not terminal: the call retries on a fresh connection."""

    __slots__ = ("_conn", "_cut", "_lock", "caller_bound", "clock", "event", "expiry", "interrupted")

    def __init__(self, clock: Clock, expiry: float, caller_bound: bool) -> None:
        self.clock = clock
        self.expiry = expiry
        self.caller_bound = caller_bound  # the caller's scope, not the call's own deadline, ends it
        self.event = threading.Event()
        self.interrupted = Interrupt.NONE
        self._lock = threading.Lock()
        self._conn: HTTPConnection | socket.socket | None = None
        self._cut = False  # an interrupt shut the socket of the attempt in flight

    def left(self) -> float:
        return self.expiry - self.clock.monotonic()

    def interrupt(self, why: Interrupt) -> None:
        with self._lock:
            if self.interrupted in TERMINAL or (why not in TERMINAL and self.interrupted):
                return
            self.interrupted = why
            if self._conn is not None:
                shutdown(self._conn)  # under the lock: once unbind() returns, no interrupt reaches it
                self._cut = True
            event = self.event
        event.set()

    def wake(self) -> None:
        """End a wait without aborting anything (the caller re-checks gate and breaker)."""
        with self._lock:
            event = self.event
        event.set()

    def rearm(self) -> None:
        """A fresh event after a wake, unless a terminal interrupt is pending."""
        with self._lock:
            if self.event.is_set() and self.interrupted not in TERMINAL:
                self.event = threading.Event()
                self.interrupted = Interrupt.NONE

    def bind(self, conn: HTTPConnection | socket.socket) -> None:
        """Track what to shut on interrupt: a connection, or a socket still connecting."""
        with self._lock:
            self._conn = conn
            pending = bool(self.interrupted)
            if pending:
                self._cut = True
        if pending:
            shutdown(conn)

    def unbind(self) -> None:
        """Let go of the connection (urllib3 hands it back to the pool with the body's last byte)."""
        with self._lock:
            self._conn = None

    def end_attempt(self) -> bool:
        """Let go of the connection at the end of an attempt; True when an interrupt cut the
        attempt's socket, so whatever was read from it may be a fragment (resets for the next)."""
        with self._lock:
            self._conn = None
            cut, self._cut = self._cut, False
        return cut


def wire_of(sock: object) -> socket.socket | None:
    """The socket object that owns the TCP descriptor under ``sock``: ``sock`` itself for a plain
    or TLS socket (``ssl.SSLSocket`` is a ``socket.socket``), the inner socket of urllib3's
    ``SSLTransport`` (TLS inside a TLS proxy's tunnel)."""
    for _ in range(4):
        if sock is None or isinstance(sock, socket.socket):
            return sock
        sock = getattr(sock, "socket", None)
    return None


def shutdown(conn: HTTPConnection | socket.socket) -> None:
    """Shut the TCP connection under ``conn`` for reading and writing, so a read or connect blocked
    on it in another thread returns at once. Both the wire kept at connect time and the
    connection's current ``sock`` are shut (they differ only when http.client has let go of
    ``sock`` while a response still reads the wire); closing stays with their owners."""
    if isinstance(conn, socket.socket):
        targets: list[socket.socket | None] = [conn]
    else:
        targets = [getattr(conn, "wire", None), wire_of(getattr(conn, "sock", None))]
    done: list[socket.socket] = []
    for sock in targets:
        if sock is None or any(sock is seen for seen in done):
            continue
        done.append(sock)
        try:
            # The socket's own shutdown, not SSLSocket.shutdown: that one also drops the TLS state
            # under a thread that may be reading through it; the TCP shutdown alone ends the read.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class Slots(queue.LifoQueue):  # type: ignore[type-arg]
    """A pool's LIFO queue that counts its empty slots instead of storing them.

    urllib3 fills a new pool's queue with one ``None`` per slot (256 per origin by default) and
    takes them all out again when the pool closes: about 0.3 ms of CPU per origin, a tenth of
    what a cron run does once imported. Here the ``None`` s under every connection are a count,
    ``empty_slots``: a ``None`` put while no connection is queued joins the count (all ``None`` s are
    alike, so the stack is the same), and a get takes the top connection, else a ``None`` from
    the count. Sizes, order, ``Full`` and ``Empty`` are those of the stored queue. Until the pool
    calls ``prefilled()`` (its ``__init__`` is done), a ``None`` put takes a short path without
    the conditions: nobody can wait on a queue that no other thread has seen yet; a non-blocking
    get of an empty slot (urllib3's drain, when the pool is closed or collected) takes another,
    with the lock but without ``Queue.get``'s layers of calls, and wakes a waiting put only when
    there may be one (urllib3 never puts with ``block=True``)."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.empty_slots = 0
        self._filling = True
        self._may_wait = 0  # puts that may block (urllib3's never do: it puts with block=False)

    def _qsize(self) -> int:
        return len(self.queue) + self.empty_slots

    def _put(self, item: Any) -> None:
        if item is None and not self.queue:
            self.empty_slots += 1
        else:
            self.queue.append(item)

    def _get(self) -> Any:
        if self.queue:
            return self.queue.pop()
        self.empty_slots -= 1
        return None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self._filling and item is None:
            with self.mutex:
                if not self.queue and self.empty_slots < self.maxsize:
                    self.empty_slots += 1
                    self.unfinished_tasks += 1
                    return
        if not block:
            super().put(item, block, timeout)
            return
        with self.mutex:
            self._may_wait += 1  # a put that may wait for room: the short get below wakes it
        try:
            super().put(item, block, timeout)
        finally:
            with self.mutex:
                self._may_wait -= 1

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        # The drain when the pool closes or is collected, one call per empty slot. A connection
        # queued (the hot path: every request fetches one) goes straight to Queue.get, one lock.
        if not block and not self.queue:
            with self.mutex:
                if not self.queue and self.empty_slots:
                    self.empty_slots -= 1
                    if self._may_wait:
                        self.not_full.notify()
                    return None
        return super().get(block, timeout)

    def prefilled(self) -> None:
        """The pool is built: from now on every put notifies as ``queue.Queue.put`` does."""
        self._filling = False


def tracked_pool(base: type[HTTPConnectionPool], conn_base: type[HTTPConnection],
                 tls_context: Callable[[], Any] | None = None) -> type[HTTPConnectionPool]:
    """Pool and connection classes that bind connections to the call sending on them (see the
    module's docstring). ``tls_context``: for HTTPS, the TLS context of a connection given none
    (called when it connects, so a client that never opens one never builds one)."""

    class TrackedConnection(conn_base):  # type: ignore[valid-type,misc]
        wire: socket.socket | None = None  # what an interrupt shuts: see the module's docstring

        def _new_conn(self) -> socket.socket:
            call = getattr(sending, "call", None)
            if call is None:
                sock: socket.socket = super()._new_conn()
                self.wire = sock
                return sock

            def hand_over(sock: socket.socket) -> None:
                self.wire = sock
                call.bind(self)

            # As urllib3 does, but the socket is known before it connects, so a cancel or the
            # deadline can abort a connect to a black-holed address (shutdown ends it on Linux).
            try:
                return connect_socket((self._dns_host, self.port), self.timeout, self.source_address,
                                      self.socket_options, hand_over)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc

        def connect(self) -> None:
            if tls_context is not None and getattr(self, "ssl_context", None) is None:
                self.ssl_context = tls_context()
            super().connect()
            # Connected (through a CONNECT tunnel and TLS, if any): the socket that now owns the
            # descriptor. It outlives ``self.sock``, which http.client drops from a closing response.
            self.wire = wire_of(self.sock) or self.wire

        def request(self, *args: Any, **kwargs: Any) -> None:
            call = getattr(sending, "call", None)
            if call is not None:
                call.bind(self)  # new or reused: the connection (TLS included) is what to cut now
            super().request(*args, **kwargs)

    class TrackedPool(base):  # type: ignore[valid-type,misc]
        ConnectionCls = TrackedConnection
        QueueCls = Slots

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pool.prefilled()

        def _put_conn(self, conn: HTTPConnection | None) -> None:
            # urllib3 hands a connection back by itself, inside the read of the body's last byte.
            # The call lets go of it first: a later interrupt (the watchdog at the deadline) must
            # not shut a connection that another call may already be using.
            call = getattr(sending, "call", None)
            if call is not None:
                call.unbind()
            super()._put_conn(conn)

    return TrackedPool


def connect_socket(address: tuple[str, int], timeout: Any, source_address: Any,
                   socket_options: Any, on_socket: Callable[[socket.socket], None]) -> socket.socket:
    """Open a TCP connection like urllib3's ``create_connection``, handing each socket to
    ``on_socket`` before it connects (so another thread can abort the connect)."""
    host, port = address
    host = host.strip("[]")
    error: OSError | None = None
    for family, kind, proto, _, where in socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            on_socket(sock)
            sock.connect(where)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error if error is not None else OSError("getaddrinfo returned no address")


def keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keepalive on pooled sockets: a NAT that silently drops idle flows is noticed."""
    opts: list[tuple[int, int, int]] = list(HTTPConnection.default_socket_options)
    opts.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (("TCP_KEEPIDLE", 45), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return opts
