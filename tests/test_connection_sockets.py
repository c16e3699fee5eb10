"""Which socket an interrupt shuts, and the keepalive options pooled sockets get: the two small
pure functions of the connection layer, at the edges no real connection reaches."""

from __future__ import annotations

import socket

import pytest

from scaleset_client._connections import keepalive_options, wire_of


class _Wrapper:
    """A TLS layer as urllib3 builds them: the socket beneath is its ``socket`` attribute."""

    def __init__(self, inner: object) -> None:
        self.socket = inner


def test_the_socket_beneath_two_tls_layers_is_found() -> None:
    with socket.socket() as raw:
        assert wire_of(_Wrapper(_Wrapper(raw))) is raw
        assert wire_of(raw) is raw


def test_layers_deeper_than_any_tls_stack_or_without_a_socket_give_none() -> None:
    with socket.socket() as raw:
        deep: object = raw
        for _ in range(5):
            deep = _Wrapper(deep)
        assert wire_of(deep) is None
    assert wire_of(_Wrapper(object())) is None


def test_keepalive_is_on_and_the_probe_timings_are_set_where_the_platform_has_them() -> None:
    options = keepalive_options()
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 45) in options


def test_a_platform_without_the_probe_timings_still_gets_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
        monkeypatch.delattr(socket, name, raising=False)
    options = keepalive_options()
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
    assert all(level != socket.IPPROTO_TCP or opt == socket.TCP_NODELAY for level, opt, _ in options)
