"""A run's start and end as seen from outside: the state file names the session before the first
poll; a stop from the scaler, another thread or before the run ends it; a bounded run skips what
it cannot do before its end; closing the client or an enclosing deadline ends it; clean-up is
bounded.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, RecordingScaler, Running, job, make_client, stats, wait_until


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


def test_stop_ends_the_run_promptly_and_the_owned_session_is_deleted(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    running.finish()
    assert fake.session_of(scale_set.id) is None


def test_closing_the_client_ends_the_run(fake: FakeActionsService, clock: FakeClock,
                                        scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    client.close()
    running.thread.join(timeout=15)
    assert not running.thread.is_alive() and running.error is None


def test_stop_from_inside_the_scaler_ends_the_run(fake: FakeActionsService, clock: FakeClock,
                                                  scale_set: sc.RunnerScaleSet) -> None:
    """run()'s own thread (a scaler, or a signal handler) may call stop(): the run ends, and the
    message the scaler finished is acknowledged."""
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    running = Running(listener, RecordingScaler(lambda _s, _k, _r: listener.stop()))
    running.thread.join(timeout=15)
    assert not running.thread.is_alive(), "stop() from the run's own thread did not end the run"
    assert running.error is None and fake.unacked(scale_set.id) == []
    client.close()


def test_stop_from_another_thread_sets_the_stop_event_the_run_was_given(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """One stop signal: whatever else waits on the caller's event ends with the run."""
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    runs: list[Running] = []
    set_when_stop_returned: list[bool] = []

    def from_elsewhere(_s: RecordingScaler, _k: str, _r: int) -> None:
        other = threading.Thread(target=listener.stop)
        other.start()
        other.join()
        set_when_stop_returned.append(runs[0].stop.is_set())  # done by the time stop() returns

    runs.append(Running(listener, RecordingScaler(from_elsewhere)))  # run(scaler, its own stop event)
    runs[0].thread.join(timeout=15)
    assert not runs[0].thread.is_alive() and set_when_stop_returned == [True]
    client.close()


def test_a_stop_before_run_ends_that_run_at_once_and_only_that_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    listener.stop()
    first = RecordingScaler()
    listener.run(first, until_idle=True)
    assert fake.count("get_message") == 0 and first.started == []
    second = RecordingScaler()
    listener.run(second, until_idle=True)
    assert second.started == [1]
    client.close()


def test_a_stop_before_a_run_given_its_own_event_sets_that_event(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    listener.stop()
    stop = threading.Event()
    listener.run(RecordingScaler(), stop, until_idle=True)
    assert stop.is_set() and fake.count("get_message") == 0
    client.close()


def test_a_stop_between_runs_makes_the_next_run_return_before_sending_anything(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    listener.run(RecordingScaler(), until_idle=True)
    sent = fake.count()
    listener.stop()
    scaler = RecordingScaler()
    listener.run(scaler)  # not until_idle: only the stop can end it
    assert fake.count() == sent and scaler.desired == []
    client.close()


def _scale_set(client: sc.Client) -> sc.RunnerScaleSet:
    return client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))


@pytest.mark.timeout(30)
def test_clean_up_is_bounded_when_deleting_the_session_hangs(fake: FakeActionsService) -> None:
    """The run is over; saving and deleting the session get 1.5 s, whatever the service does."""
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, 10.0))
    scale_set = _scale_set(client)
    fake.inject("delete_session", Fault.hang(3600.0))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    try:  # 1.5 s of clean-up; the call's own timeouts (2 + 10 s) would outlast the join's limit
        outcome = Outcome(lambda: listener.run(RecordingScaler(), until_idle=True)).join(limit=8.0)
    finally:
        fake.release_hangs()
        client.close()
    assert outcome.error is None
    assert fake.count("delete_session") == 1


def test_a_bounded_run_whose_broker_is_known_down_past_its_end_sends_nothing_and_says_when_to_retry(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=1),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0,
                                                max_open_duration=300.0, jitter=0.0)))
    session = client.message_session(scale_set.id)
    fake.stop("broker")
    with pytest.raises(sc.TransientError):
        session.get_message(0, 1)  # refused: the broker's circuit opens for 300 s
    session.close()
    fake.clear_log()
    with pytest.raises(sc.RunSkippedError, match="known down") as info:
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), duration=60.0)
    skipped = info.value
    assert fake.count() == 0  # not even a session was asked for
    assert skipped.retry_after is not None and 60.0 < skipped.retry_after <= 300.0
    assert skipped.retry_at == pytest.approx(clock.wall() + skipped.retry_after, abs=1.0)
    client.close()
