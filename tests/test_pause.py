"""``Client.pause``: a wait of the caller's own that ``recover()`` and ``close()`` end at once, so
an operator's recovery reaches a loop that waits out a ``CircuitOpenError`` by itself."""

from __future__ import annotations

import threading

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import make_client


def _pausing(client: sc.Client, seconds: float) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(client.pause(seconds)), daemon=True)
    thread.start()
    return thread, result


def test_recover_ends_a_pause_at_once(fake: FakeActionsService) -> None:
    client = make_client(fake)  # the real clock: a 60 s pause would really last a minute
    thread, result = _pausing(client, 60.0)
    for _ in range(100):  # a recover() that came before the pause began wakes nothing: ask again
        client.recover()
        thread.join(timeout=0.05)
        if not thread.is_alive():
            break
    assert not thread.is_alive() and result == [True]
    client.close()


def test_close_ends_a_pause_and_a_pause_after_close_returns_at_once(fake: FakeActionsService) -> None:
    client = make_client(fake)
    thread, result = _pausing(client, 60.0)
    thread.join(timeout=0.2)  # close() is final: once it ran, every pause, later ones too, ends at once
    client.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and result == [True]
    assert client.pause(60.0) is True


def test_a_pause_nobody_ends_lasts_its_time_on_the_clients_clock(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    before = clock.monotonic()
    assert client.pause(90.0) is False
    assert clock.monotonic() - before == 90.0
    client.close()


def test_a_pause_ends_with_the_callers_deadline_scope(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    before = clock.monotonic()
    with client.deadline(2.0):
        assert client.pause(60.0) is False  # the scope's time, not the pause's, ran out
    assert clock.monotonic() - before == 2.0
    client.close()


def test_cancelling_the_callers_scope_ends_a_pause_at_once(fake: FakeActionsService) -> None:
    client = make_client(fake)  # the real clock
    scope = client.deadline()
    result: list[bool] = []

    def pause() -> None:
        with scope:
            result.append(client.pause(60.0))

    thread = threading.Thread(target=pause, daemon=True)
    thread.start()
    scope.cancel("operator")  # before or during the pause: either way it must not wait a minute
    thread.join(timeout=5)
    assert not thread.is_alive() and result == [True]
    client.close()
