"""What a supervisor and an operator see of a listener, read the way they read it: ``health()``
at the liveness boundary and with each readiness reason, ``stop()`` before, during and after a
run, ``set_max_runners`` (the capacity header the fake receives), ``current_event`` and
``handled_messages`` from inside the scaler, and a metrics recorder's calls. Time is a FakeClock
shared with the fake; the health window is 5 s long poll + 120 s retry deadline + 30 s = 155 s."""

from __future__ import annotations

import threading

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import WatchedClock, make_client
from .test_listener import RecordingScaler, Running, job, stats

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


def test_max_runners_is_checked_and_sent_on_the_next_poll(fake: FakeActionsService, clock: FakeClock,
                                                          scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    for bad in (-1, 1.5, True):
        with pytest.raises(sc.ConfigError) as info:
            listener.set_max_runners(bad)  # type: ignore[arg-type]
        assert str(info.value) == f"max_runners must be an integer of at least 0 and at most 2147483647, got {bad}"
    listener.set_max_runners(0)  # none for now is a capacity too
    assert listener.max_runners == 0
    listener.run(RecordingScaler(), until_idle=True)
    listener.set_max_runners(7)
    listener.run(RecordingScaler(), until_idle=True)
    sent = [{k.lower(): v for k, v in r.headers.items()}.get("x-scalesetmaxcapacity")
            for r in fake.requests("get_message")]
    assert sent == ["0", "7"]
    client.close()


def test_the_scaler_can_read_which_event_it_is_handed_and_how_many_messages_were_handled(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    second = fake.push_message(scale_set.id, [job("JobStarted", 2), job("JobCompleted", 3, result="succeeded")],
                               statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    seen: list[tuple[sc.EventRef | None, int]] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            seen.append((listener.current_event, listener.handled_messages))
            return super().handle_desired_runner_count(count)

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        seen.append((listener.current_event, listener.handled_messages))

    listener.run(Scaler(hook), until_idle=True)
    assert seen == [(None, 0),  # the session's count, before any message
                    (sc.EventRef(first, "job_started", 0), 0), (sc.EventRef(first, "desired_runner_count", 0), 0),
                    (sc.EventRef(second, "job_started", 0), 1), (sc.EventRef(second, "job_completed", 0), 1),
                    (sc.EventRef(second, "desired_runner_count", 0), 1)]
    assert listener.current_event is None and listener.handled_messages == 2
    client.close()


def test_a_metrics_recorder_hears_of_every_circuit_transition(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    heard: list[tuple[str, str]] = []

    class Recorder:
        def record_circuit_state(self, origin: str, state: str) -> None:
            heard.append((origin, state))

    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics=Recorder())
    listener.run(RecordingScaler(), until_idle=True)
    client.circuit_breakers.force_open(operation_class="long_poll")
    client.circuit_breakers.reset()
    assert [state for _, state in heard] == ["forced_open", "closed"]
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


def test_a_stop_before_a_run_given_its_own_event_sets_that_event(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    listener.stop()
    stop = threading.Event()
    listener.run(RecordingScaler(), stop, until_idle=True)
    assert stop.is_set() and fake.count("get_message") == 0
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
