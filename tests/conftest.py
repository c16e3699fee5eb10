"""Shared fixtures: a fake service on loopback and a client wired to it with a fake clock.

The fake clock makes every backoff and break instant; the fake service shares it so token
lifetimes move with it. Tests that need real time (hangs, deadlines) build their own client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client._state import SLOT, CursorRecord
from scaleset_client.testing import FakeActionsService, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeActionsService]:
    with FakeActionsService(clock=clock, long_poll_hold=0.05, strict=True) as service:
        yield service


def fake_with_draw(draw: float) -> tuple[FakeActionsService, FakeClock]:
    """A fake (not started: use it in ``with``) sharing a FakeClock whose every jitter draw is
    ``draw``, so a pause is exact: 0.0 shows each spread at its narrowest, 0.99 at its widest."""
    clock = FakeClock(draw=draw)
    return FakeActionsService(clock=clock, long_poll_hold=0.01, strict=True), clock


@pytest.fixture
def low() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    """A started fake whose clock draws 0.0: a backoff is exactly half its step."""
    fake, clock = fake_with_draw(0.0)
    with fake:
        yield fake, clock


class WatchedClock(FakeClock):
    """A FakeClock that calls ``watch(seconds)`` after every sleep: a test's eyes (and hands)
    inside a wait that would otherwise pass in one step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch: Callable[[float], object] | None = None

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        woken = super().sleep(seconds, interrupt)
        if self.watch is not None:
            self.watch(seconds)
        return woken


def newest_cursor_record(state: Path) -> CursorRecord:
    """The delivery record a restarted process would load from ``state``'s ``.cursor`` file."""
    raw = state.with_name(state.name + ".cursor").read_bytes()
    slots = [CursorRecord.decode(raw[i * SLOT:(i + 1) * SLOT]) for i in range(len(raw) // SLOT)]
    return max((s for s in slots if s is not None), key=lambda s: s[0])[1]


def make_client(fake: FakeActionsService, clock: object = None, **kwargs: object) -> sc.Client:
    kwargs.setdefault("timeout", (2.0, 5.0))
    kwargs.setdefault("long_poll_timeout", 5.0)
    return sc.Client(fake.config_url, token=fake.token, clock=clock, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client(fake: FakeActionsService, clock: FakeClock) -> Iterator[sc.Client]:
    c = make_client(fake, clock)
    yield c
    c.close()


@pytest.fixture
def scale_set(client: sc.Client) -> sc.RunnerScaleSet:
    return client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))


def run_together(count: int, work: Callable[[], object]) -> list[object]:
    """Start ``count`` threads at once on ``work``; return each result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[object] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            outcome: object = work()
        except BaseException as exc:  # returned to the test, which asserts on it
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == count, "a thread did not finish"
    return results


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition another thread makes true; the timeout only bounds a broken test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
