"""Listener promises a full mutation run showed no test pinned, each seen from outside: the pause
after a failed desired count (at the fake), the "scaler failing" health reason (health() read
from inside the scaler), the delivery record after a handled message (the ``.cursor`` file) and
the spread of returns after a break (at the fake). Time is a FakeClock shared with the fake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import CursorRecord
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import fake_with_draw, make_client, newest_cursor_record
from .test_listener import RecordingScaler, job, stats


def test_a_failed_desired_count_pauses_one_backoff_step_before_the_next_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """The first failure waits between half and all of ``error_backoff``, not the second step's."""
    client = make_client(fake, clock)
    stop = threading.Event()
    failed_at: list[float] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not failed_at:
                failed_at.append(clock.monotonic())
                raise RuntimeError("not yet")
            stop.set()
            return super().handle_desired_runner_count(count)

    config = sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0)
    sc.Listener(client, config).run(Scaler(), stop)
    gap = fake.requests("get_message")[0].time - failed_at[0]
    assert 50.0 <= gap < 100.0
    client.close()


def test_health_says_the_scaler_is_failing_after_poison_after_failures_in_a_row_not_before(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, poison_after=3))
    seen: list[tuple[int, bool, str]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        health = listener.health()
        seen.append((request_id, health.ready, health.reason))
        if request_id == 1:
            raise RuntimeError("cannot start runners")

    listener.run(RecordingScaler(hook), until_idle=True)
    assert [(rid, ready) for rid, ready, _ in seen] == [(1, True), (1, True), (1, True), (2, False)]
    assert "scaler failing: 3 errors in a row" in seen[3][2]
    assert listener.health().scaler_failures == 0  # message 2 was handled: the run of failures ended
    client.close()


def test_the_delivery_record_names_no_message_in_flight_once_a_message_is_handled(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    state = tmp_path / "state.json"
    client = make_client(fake, clock)
    records: list[CursorRecord] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 2:  # message 1 is handled and acknowledged; nothing of message 2 yet
            records.append(newest_cursor_record(state))

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(hook),
                                                                                  until_idle=True)
    assert len(records) == 1
    assert (records[0].cursor, records[0].message_id, records[0].started, records[0].completed) == (first, 0, 0, 0)
    client.close()


@pytest.fixture
def high_draw() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    fake, clock = fake_with_draw(0.99)
    with fake:
        yield fake, clock


def test_after_a_break_with_a_known_end_the_next_poll_comes_within_half_a_second_of_it(
        high_draw: tuple[FakeActionsService, FakeClock]) -> None:
    """A fleet refused by the same break spreads its return over 0.5 s, no more."""
    fake, clock = high_draw
    client = make_client(fake, clock)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    opened: list[float] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        client.circuit_breakers.force_open(duration=100.0, operation_class="long_poll")
        opened.append(clock.monotonic())

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(hook), until_idle=True)
    after = [r.time - opened[0] for r in fake.requests("get_message") if r.time > opened[0]]
    assert after and 100.0 <= after[0] <= 100.5
    client.close()
