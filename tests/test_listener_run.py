"""A run's start and end as seen from outside: the state file names the session as soon as it is
open, a cancelled enclosing ``client.deadline()`` scope ends the run, and a metrics recorder
hears the session's statistics first. Time is a FakeClock shared with the fake."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


def test_the_state_file_names_the_session_before_the_first_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """A process killed right after opening its session leaves the id behind, so the next one
    deletes that session instead of standing by behind it."""
    state = tmp_path / "state.json"
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    saved: list[tuple[int, str, str]] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            saved.append((fake.count("get_message"), json.loads(state.read_text())["session_id"],
                          listener.health().session_id))
            return super().handle_desired_runner_count(count)

    listener.run(Scaler(), until_idle=True)
    (polls, in_file, open_id), *_ = saved
    assert polls == 0 and open_id != "" and in_file == open_id
    client.close()


def test_cancelling_an_enclosing_deadline_scope_ends_the_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    scope = client.deadline()
    scaler = RecordingScaler(lambda _s, _k, _r: scope.cancel("the operator said so"))

    def run() -> None:
        with scope:
            listener.run(scaler)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the run outlived the scope it was cancelled by"
    assert scaler.started == [1] and fake.unacked(scale_set.id) == []
    client.close()


def test_a_metrics_recorder_hears_the_sessions_statistics_first(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(4))
    client = make_client(fake, clock)
    heard: list[int] = []

    class Recorder:
        def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
            heard.append(statistics.total_assigned_jobs)

    session = client.message_session(scale_set.id, owner="here")
    try:
        opened = session.session.statistics
        assert opened is not None
        sc.Listener(session, sc.ListenerConfig(scale_set.id, 3), metrics=Recorder()).run(RecordingScaler(),
                                                                                        until_idle=True)
    finally:
        session.close()
    assert heard[0] == opened.total_assigned_jobs
    client.close()


def _skipped(client: sc.Client, scale_set: sc.RunnerScaleSet, duration: float) -> sc.RunSkippedError:
    with pytest.raises(sc.RunSkippedError) as info:
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), duration=duration)
    return info.value


def test_a_bounded_run_skips_while_the_broker_is_held_open_until_its_end(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """Held open for exactly the run's duration: the run could not poll before its end, so it
    sends nothing at all and says when to come back."""
    client = make_client(fake, clock)
    session = client.message_session(scale_set.id, owner="warm-up")
    session.get_message(0, 1)  # the broker's breakers exist once it was used
    session.close()
    client.circuit_breakers.force_open(duration=60.0, operation_class="long_poll")
    before = fake.count()
    error = _skipped(client, scale_set, 60.0)
    origin = fake.servers["broker"].url
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(clock.wall() + 60.0))
    assert str(error) == f"skipped: {origin} [long_poll] is known down (held open); next attempt at {when} (in 60s)"
    assert error.retry_after == 60.0 and fake.count() == before
    client.close()


def test_a_bounded_run_skips_while_sessions_are_held_open_by_an_operator(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    client.message_session(scale_set.id, owner="warm-up").close()  # the session breaker exists
    client.circuit_breakers.force_open(operation_class="session")
    error = _skipped(client, scale_set, 60.0)
    assert str(error).endswith("[session] is known down (held open); next attempt at operator reset")
    assert error.retry_at is None and error.retry_after is None
    client.close()


def test_a_bounded_run_that_outlasts_the_break_goes_ahead(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    session = client.message_session(scale_set.id, owner="warm-up")
    session.get_message(0, 1)
    session.close()
    client.circuit_breakers.force_open(duration=59.0, operation_class="long_poll")
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), duration=60.0)
    assert fake.count("create_session") == 2  # the warm-up's and the run's


def test_a_renewed_session_is_in_the_state_file_before_the_next_message_is_handled(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    seen: list[tuple[str, str]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        seen.append((json.loads(state.read_text())["session_id"], listener.health().session_id))
        if request_id == 5:
            fake.evict_session(scale_set.id)  # the next poll is turned away; the listener renews

    listener.run(RecordingScaler(hook), until_idle=True)
    (first_file, first_open), (second_file, second_open) = seen
    assert first_file == first_open and second_open != first_open
    assert second_file == second_open  # saved before the poll that brought message 6
    client.close()
