"""What a supervisor and an operator see of a listener's health, read the way they read it:
``health()`` at the liveness boundary and with each readiness reason, before a run, after standing
by, through a hung broker and a long backoff, and the time of the last answered poll. Time is a
FakeClock shared with the fake; the health window is 5 s long poll + 120 s retry deadline + 30 s =
155 s.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, Running, WatchedClock, job, make_client, stats, wait_until

WINDOW = 155.0


def test_liveness_holds_for_the_whole_window_and_ends_just_past_it(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """A scaler stuck for the window is still live; a second more and it is not, with the reason."""
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    seen: list[sc.ListenerHealth] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        clock.advance(WINDOW)  # the poll that brought this message was the last beat
        seen.append(listener.health())
        clock.advance(1.0)
        seen.append(listener.health())

    listener.run(RecordingScaler(hook), until_idle=True)
    at_edge, past = seen
    assert (at_edge.live, at_edge.ready, at_edge.reason) == (True, True, "")
    assert (past.live, past.ready, past.reason) == (False, True, "no progress for 156s")
    client.close()


def test_a_listener_that_is_not_running_is_live_however_long_it_has_been_idle(
        client: sc.Client, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    listener.run(RecordingScaler(), until_idle=True)
    clock.advance(10 * WINDOW)
    health = listener.health()
    assert health.live is True and health.ready is False and health.reason == "no active session"


def test_a_run_started_long_after_the_listener_was_built_is_live_from_its_start(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    clock.advance(10 * WINDOW)
    live_at_first_count: list[bool] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            live_at_first_count.append(listener.health().live)  # before any poll
            return super().handle_desired_runner_count(count)

    listener.run(Scaler(), until_idle=True)
    assert fake.count("get_message") == 1 and live_at_first_count[0] is True
    client.close()


def test_an_open_broker_circuit_and_a_failing_scaler_are_both_reasons_not_to_be_ready(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, poison_after=1))
    seen: list[sc.ListenerHealth] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 1:
            raise RuntimeError("cannot start runners")  # set aside at once (poison_after=1)
        client.circuit_breakers.force_open(operation_class="long_poll")
        seen.append(listener.health())
        client.circuit_breakers.reset()

    listener.run(RecordingScaler(hook), until_idle=True)
    (health,) = seen
    assert health.ready is False and health.live is True and health.scaler_failures == 1
    # An operator's force_open records no failure: the state alone is the reason.
    assert health.reason == ("broker circuit forced_open; "
                             "scaler failing: 1 errors in a row, messages are being set aside")
    client.close()


def test_an_open_broker_circuit_alone_makes_a_listener_not_ready(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    seen: list[sc.ListenerHealth] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        client.circuit_breakers.force_open(operation_class="long_poll")
        seen.append(listener.health())
        client.circuit_breakers.reset()

    listener.run(RecordingScaler(hook), until_idle=True)
    (health,) = seen
    assert health.ready is False and health.live is True and health.reason.startswith("broker circuit forced_open")
    client.close()


def test_a_listener_backing_off_longer_than_the_health_window_stays_live() -> None:
    """A 250 s backoff (error_backoff 500 s at the narrowest draw) is longer than the 155 s window:
    the wait beats as it goes, so a supervisor never sees a waiting listener as hung."""
    clock = WatchedClock(draw=0.0)
    with FakeActionsService(clock=clock, long_poll_hold=0.01, strict=True) as fake, \
            make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        fake.inject("get_message", Fault.error(400, message="bad poll"))
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=500.0,
                                                         error_backoff_max=1000.0))
        seen: list[bool] = []
        clock.watch = lambda seconds: seen.append(listener.health().live)
        listener.run(RecordingScaler(), until_idle=True)
    assert clock.total_slept >= 250.0 and seen and all(seen)


def test_hung_broker_keeps_liveness_drops_readiness_and_recovers() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token, timeout=(0.5, 0.5), long_poll_timeout=0.5,
                           resilience=sc.ResilienceConfig(
                               retry=sc.RetryConfig(max_attempts=1, deadline=2.0),
                               circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=2, open_duration=0.3,
                                                                       max_open_duration=0.6)))
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=0.05,
                                                         error_backoff_max=0.2))
        scaler = RecordingScaler()
        running = Running(listener, scaler)
        wait_until(lambda: listener.health().ready)
        fake.inject_always("get_message", Fault.hang(30))
        wait_until(lambda: not listener.health().ready)
        health = listener.health()
        assert health.live and "broker circuit" in health.reason
        fake.clear_faults()
        fake.release_hangs()
        fake.push_message(scale_set.id, [job("JobStarted", 3)], statistics=stats(1))
        wait_until(lambda: scaler.started == [3])
        assert listener.health().ready and listener.health().live
        running.finish()
        client.close()


def test_health_before_a_run_names_the_missing_session(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    health = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).health()
    assert health.live and not health.ready and "no active session" in health.reason


def test_health_after_standing_by_says_so(fake: FakeActionsService, clock: FakeClock,
                                          scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_timeout=40.0))
    with pytest.raises(sc.SessionConflictError):
        listener.run(RecordingScaler())
    health = listener.health()
    assert health.standby and not health.ready
    assert health.reason == "standby: another listener owns the session"
    held.close()
    owner.close()
    client.close()


def test_the_last_poll_time_is_the_wall_time_of_the_last_answered_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    before = clock.wall()
    listener.run(RecordingScaler(), until_idle=True)
    polled = listener.health().last_poll_time
    assert polled is not None and before <= polled <= clock.wall()
    client.close()


def test_a_listener_not_yet_run_is_live_not_ready_and_has_seen_nothing(client: sc.Client,
                                                                       scale_set: sc.RunnerScaleSet) -> None:
    health = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).health()
    assert health == sc.ListenerHealth(live=True, ready=False, reason="no active session", last_message_id=0,
                                       last_poll_time=None, session_id="", standby=False, scaler_failures=0)
    assert health.ready is False and health.standby is False


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
