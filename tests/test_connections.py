"""Connections and pools. First the cuttable connection over real loopback sockets, no mocks: a call
binds the socket it sends on and an interrupt shuts it (the peer reads EOF), terminal and soft
interrupts, connect errors of the types urllib3 callers expect, the keepalive options, a request
that still works when no call is bound. Then a client's pool as the service and the kernel see it:
one connection reused, keepalive armed on it, a burst of calls never queued behind a small pool."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

import scaleset_client as sc
from scaleset_client._clock import SystemClock
from scaleset_client._connections import (
    CallInFlight,
    connect_socket,
    keepalive_options,
    sending,
    shutdown,
    tracked_pool,
)
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client, port_of, wait_until


def _peer_sees_eof(peer: socket.socket) -> bool:
    peer.settimeout(10)
    return peer.recv(1) == b""


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _call() -> CallInFlight:
    return CallInFlight(SystemClock(), SystemClock().monotonic() + 60, caller_bound=False)


def test_interrupt_before_bind_shuts_the_socket_once_it_is_bound(pair: tuple[socket.socket, socket.socket]) -> None:
    call = _call()
    call.interrupt("cancel")
    assert call.event.is_set()
    call.bind(pair[0])
    assert _peer_sees_eof(pair[1])


def test_a_terminal_interrupt_is_not_replaced(pair: tuple[socket.socket, socket.socket]) -> None:
    call = _call()
    call.interrupt("deadline")
    call.interrupt("close")
    call.interrupt("recover")
    assert call.interrupted == "deadline"
    call.rearm()  # a terminal interrupt stays pending through a rearm
    assert call.event.is_set() and call.interrupted == "deadline"


def test_a_soft_interrupt_yields_to_a_terminal_one_but_not_to_another_soft_one() -> None:
    call = _call()
    call.interrupt("slow")
    call.interrupt("recover")
    assert call.interrupted == "slow"
    call.interrupt("cancel")
    assert call.interrupted == "cancel"


def test_rearm_after_a_soft_interrupt_gives_a_fresh_unset_event(pair: tuple[socket.socket, socket.socket]) -> None:
    call = _call()
    call.interrupt("recover")
    call.rearm()
    assert not call.event.is_set() and call.interrupted == ""
    call.bind(pair[0])  # nothing pending: binding does not cut
    pair[0].sendall(b"x")
    pair[1].settimeout(10)
    assert pair[1].recv(1) == b"x"
    call.unbind()
    call.interrupt("cancel")  # unbound: the socket is left alone
    pair[0].sendall(b"y")
    assert pair[1].recv(1) == b"y"


def test_wake_sets_the_event_without_interrupting() -> None:
    call = _call()
    call.wake()
    assert call.event.is_set() and call.interrupted == ""


def test_shutdown_of_an_unconnected_socket_or_a_socketless_connection_is_quiet() -> None:
    with socket.socket() as sock:
        with pytest.raises(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # what shutdown() meets on a socket not yet connected
        shutdown(sock)  # ... and swallows
        assert sock.fileno() != -1  # shut, not closed: whoever owns it closes it
    conn = HTTPConnection("127.0.0.1", 1)
    shutdown(conn)  # no socket yet: nothing to shut
    assert conn.sock is None


def test_connect_socket_hands_the_socket_over_before_connecting_and_binds_the_source() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        seen: list[socket.socket] = []
        sock = connect_socket(("127.0.0.1", server.getsockname()[1]), None, ("127.0.0.1", 0),
                              [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], seen.append)
        with sock:
            assert seen == [sock]
            assert sock.gettimeout() is None  # a non-numeric timeout leaves the socket blocking
            peer, addr = server.accept()
            with peer:
                assert addr == sock.getsockname()


def test_connect_socket_raises_the_last_error_when_every_address_fails() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectionRefusedError):
            connect_socket(("127.0.0.1", port), 5.0, None, None, lambda s: None)


def _pool(host: str, port: int, timeout: float = 5.0) -> HTTPConnectionPool:
    cls = tracked_pool(HTTPConnectionPool, HTTPConnection)
    return cls(host, port, timeout=timeout, retries=False)


def test_a_tracked_pool_without_a_bound_call_works() -> None:
    with FakeActionsService() as fake:
        host, port = fake.config_url.split("//")[1].split("/")[0].split(":")
        pool = _pool(host, int(port))
        response = pool.urlopen("GET", "/", preload_content=True)
        assert response.status == 404
        assert fake.count(server="github") == 1
        pool.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("reused", [False, True], ids=["new-connection", "reused-connection"])
def test_an_interrupt_ends_a_read_on_the_connection_the_call_sends_on(reused: bool) -> None:
    """The pool binds the connection, new or reused, to the sending call: an interrupt from another
    thread ends a read the server never answers, long before the 60 s read timeout (the test's
    bound is 20 s; without the binding the read would outlast it)."""
    with FakeActionsService(long_poll_hold=0.05) as fake:
        host, port = fake.config_url.split("//")[1].split("/")[0].split(":")
        pool = _pool(host, int(port), timeout=60.0)
        if reused:
            assert pool.urlopen("GET", "/", preload_content=True).status == 404  # a connection in the pool
        fake.inject_always("github", Fault.hang())
        call = _call()
        sending.call = call
        interrupter = threading.Thread(target=lambda: (wait_until(lambda: fake.count(server="github") == 1 + reused),
                                                       call.interrupt("cancel")))
        interrupter.start()
        try:
            with pytest.raises((ProtocolError, ReadTimeoutError)):
                pool.urlopen("GET", "/", preload_content=True)
        finally:
            sending.call = None
            interrupter.join()
            fake.release_hangs()
            pool.close()
        assert fake.count(server="github") == 1 + reused  # the held request, no other


def test_a_name_that_does_not_resolve_raises_name_resolution_error() -> None:
    pool = _pool("nonexistent.invalid", 80)
    sending.call = _call()
    try:
        with pytest.raises(NameResolutionError):
            pool.urlopen("GET", "/")
    finally:
        sending.call = None


def test_a_refused_connect_raises_new_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        pool = _pool("127.0.0.1", probe.getsockname()[1])
        sending.call = _call()
        try:
            with pytest.raises(NewConnectionError) as info:
                pool.urlopen("GET", "/")
            assert "): Failed to establish a new connection: [Errno 111] Connection refused" in str(info.value)
        finally:
            sending.call = None


def test_a_connect_to_a_full_backlog_times_out_as_connect_timeout_error() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers: list[socket.socket] = []
    try:
        # Fill the accept queue (never accepted): further SYNs are dropped, so a connect hangs.
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            fillers.append(s)
        pool = _pool("127.0.0.1", server.getsockname()[1], timeout=0.3)
        sending.call = _call()
        try:
            with pytest.raises(ConnectTimeoutError) as info:
                pool.urlopen("GET", "/")
            assert info.value.args[1] == "Connection to 127.0.0.1 timed out. (connect timeout=0.3)"
        finally:
            sending.call = None
    finally:
        for s in fillers:
            s.close()
        server.close()


def test_keepalive_options_are_urllib3s_plus_keepalive_probing_after_45_s_idle() -> None:
    """A NAT that silently drops an idle flow is noticed within 45 + 3 × 10 s (Linux names)."""
    assert keepalive_options() == [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
                                   (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 45),
                                   (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10),
                                   (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)]


def test_connect_socket_applies_the_options_and_the_source_address() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sock = connect_socket(server.getsockname(), 5.0, ("127.0.0.2", 0), keepalive_options(), lambda s: None)
        with sock, server.accept()[0] as accepted:
            assert accepted.getpeername()[0] == "127.0.0.2"  # the peer sees the source address we asked for
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 45


def test_a_failed_connect_closes_its_socket() -> None:
    """No file descriptor is left behind by a refused connect (a cron job retries many)."""
    handed: list[socket.socket] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, not listening: refused
        with pytest.raises(ConnectionRefusedError):
            connect_socket(probe.getsockname(), 5.0, None, None, handed.append)
    assert len(handed) == 1 and handed[0].fileno() == -1  # closed


def test_an_interrupt_shuts_the_socket_already_bound(pair: tuple[socket.socket, socket.socket]) -> None:
    call = _call()
    call.bind(pair[0])
    call.interrupt("deadline")
    assert _peer_sees_eof(pair[1])


linux_only = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's socket table")


def _timers_to(port: int) -> list[int]:
    """The timer kind of every established socket to 127.0.0.1:``port`` (2: keepalive armed)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, timer = fields[2], fields[3], fields[5]
        if int(remote.split(":")[1], 16) == port and state == "01":
            found.append(int(timer.split(":")[0], 16))
    return found


@linux_only
def test_pooled_connections_have_tcp_keepalive_armed(fake: FakeActionsService, clock: FakeClock) -> None:
    """A NAT that drops an idle pooled flow is noticed by keepalive probes, not by a hung call."""
    with make_client(fake, clock) as client:
        assert client.get_runner_by_name("x") is None
        timers = _timers_to(port_of(fake.servers["actions"].url))
        assert timers and all(t == 2 for t in timers), timers


def test_sequential_calls_reuse_one_pooled_connection(fake: FakeActionsService, clock: FakeClock) -> None:
    """A body read to the end hands its connection back to the pool: five calls, one connection."""
    with make_client(fake, clock) as client:
        client.get_runner_by_name("warm")
        before = fake.connections("actions")
        for _ in range(5):
            assert client.get_runner_by_name("x") is None
        assert fake.connections("actions") == before


@pytest.mark.timeout(30)
def test_more_concurrent_calls_than_pooled_connections_are_all_sent_at_once(fake: FakeActionsService) -> None:
    """``pool_maxsize`` bounds the idle connections kept, not the calls in flight: a burst of
    threads is never queued behind a small pool (each gets a connection of its own)."""
    client = sc.Client(fake.config_url, token=fake.token, pool_maxsize=2)
    try:
        group = client.get_runner_group_by_name("default")  # the admin token, before the burst
        fake.inject("get_runner_group_by_name", Fault.hang(), times=6)
        threads = [threading.Thread(target=client.get_runner_group_by_name, args=("default",)) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: fake.count("get_runner_group_by_name") == 7, timeout=15)  # all six held at once
        fake.release_hangs()
        for thread in threads:
            thread.join(15)
        assert group.id == 1 and not any(thread.is_alive() for thread in threads)
    finally:
        client.close()
