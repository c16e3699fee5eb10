"""Shared fixtures: a fake service on loopback and a client wired to it with a fake clock.

The fake clock makes every backoff and break instant; the fake service shares it so token
lifetimes move with it. Tests that need real time (hangs, deadlines) build their own client.
Helpers that are not fixtures (``make_client``, ``wait_until``, ``RecordingScaler``, ...) live in
``tests/helpers.py``; the names below are re-exported for modules that still import them from here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import (
    RUNNING,
    WatchedClock,
    fake_with_draw,
    make_client,
    newest_cursor_record,
    run_together,
    wait_until,
)

__all__ = ["WatchedClock", "fake_with_draw", "make_client", "newest_cursor_record", "run_together", "wait_until"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeActionsService]:
    with FakeActionsService(clock=clock, long_poll_hold=0.05, strict=True) as service:
        yield service


@pytest.fixture
def low() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    """A started fake whose clock draws 0.0: a backoff is exactly half its step."""
    fake, clock = fake_with_draw(0.0)
    with fake:
        yield fake, clock


@pytest.fixture
def wide() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    """A started fake whose clock draws 0.99: every jitter is its widest, so a pause is known."""
    fake, clock = fake_with_draw(0.99)
    with fake:
        yield fake, clock


@pytest.fixture
def client(fake: FakeActionsService, clock: FakeClock) -> Iterator[sc.Client]:
    c = make_client(fake, clock)
    yield c
    c.close()


@pytest.fixture
def scale_set(client: sc.Client) -> sc.RunnerScaleSet:
    return client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))


@pytest.fixture(autouse=True)
def _peeks_outlast_a_starved_runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener catching up cuts a poll after 0.4 s and takes the queue as drained, and takes a
    message answered 0.25 s into a poll for a new one (the service answers at once when a message
    waits). On a two-core runner loaded by four workers and coverage, a thread can go unscheduled
    that long, and a queued message then looks like none, or like a new one: seen in CI as a
    scaler moved back. The tests pin behaviour, not those timings (``python -m bench.latency``
    measures them with the real values), so they get timings a starved runner cannot fake: 5 s
    where the fake answers an empty poll in 0.05 s (the cut is never needed) and as the hold (a
    queued message answered late was taken for a new one: seen as a scaler told [0, 4]
    instead of [0, 0, 4] under a mutation run's load), and in
    tests/test_scale_on_time.py, whose fake holds polls 30 s, a 1 s peek and a 0.5 s hold."""
    import scaleset_client._listener as listener_module

    if request.node.path.name == "test_scale_on_time.py":
        monkeypatch.setattr(listener_module, "CATCH_UP_PEEK", 1.0)
        monkeypatch.setattr(listener_module, "HELD_BY_SERVICE", 0.5)
    else:
        monkeypatch.setattr(listener_module, "CATCH_UP_PEEK", 5.0)
        monkeypatch.setattr(listener_module, "HELD_BY_SERVICE", 5.0)


@pytest.fixture(autouse=True)
def _stop_listeners_after_each_test() -> Iterator[None]:
    """A failed test must not leave a listener (a ``helpers.Running``) polling a closed fake."""
    yield
    while RUNNING:
        running = RUNNING.pop()
        running.stop.set()
        running.thread.join(timeout=15)


# The modules that take longest, started first. pytest-xdist runs a module on one worker
# (``--dist loadscope`` in pyproject.toml: the response-shapes matrix runs all its cells at once,
# so a worker running any cell ran them all, and four workers ran it four times); started last,
# a long module would leave the other workers idle at the end of the run.
_LONGEST_FIRST = ("test_scale_on_time.py", "test_parse_equivalence.py", "test_response_shapes.py",
                  "test_operating.py", "test_cli_shutdown.py", "test_cli.py", "test_attempts.py",
                  "test_packaging.py", "test_transport.py", "test_listener_cursor.py", "test_conformance.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
