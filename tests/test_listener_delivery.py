"""Each job event reaches the scaler: a scaler that raises sees the event again after a pause, a
message that keeps failing or cannot be read is set aside after ``poison_after`` tries (and
``on_poison`` may raise), and the scaler can read which event it is handed.
"""

from __future__ import annotations

from itertools import pairwise

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, Running, job, make_client, stats, wait_until


def test_a_scaler_that_raises_once_sees_the_event_exactly_once_afterwards(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1), job("JobStarted", 2)], statistics=stats(2))
    failed: list[int] = []

    def flaky(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 2 and not failed:
            failed.append(request_id)
            raise RuntimeError("runner backend hiccup")

    scaler = RecordingScaler(flaky)
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 5)), scaler)
    wait_until(lambda: scaler.started == [1, 2] and not fake.unacked(scale_set.id))
    running.finish()
    assert scaler.started == [1, 2] and failed == [2] and fake.count("delete_message") == 1


def test_a_message_that_always_fails_is_set_aside_after_three_tries(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    bad = fake.push_message(scale_set.id, [job("JobCompleted", 1)], statistics=stats(0))
    good = fake.push_message(scale_set.id, [job("JobCompleted", 2)], statistics=stats(0))
    poisoned: list[int] = []

    def broken(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 1:
            raise ValueError("cannot handle this one")

    scaler = RecordingScaler(broken)
    config = sc.ListenerConfig(scale_set.id, 5, on_poison=lambda mid, exc: poisoned.append(mid))
    running = Running(sc.Listener(client, config), scaler)
    wait_until(lambda: scaler.completed == [2])
    running.finish()
    assert poisoned == [bad] and fake.unacked(scale_set.id) == [] and good > bad


def test_unreadable_messages_never_crash_loop(client: sc.Client, fake: FakeActionsService,
                                              scale_set: sc.RunnerScaleSet) -> None:
    weird = fake.push_message(scale_set.id, [], message_type="SomethingNew")
    fake.push_message(scale_set.id, [job("JobStarted", 9)], statistics=None)
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    running = Running(listener, scaler)
    wait_until(lambda: scaler.started == [9] and not fake.unacked(scale_set.id))
    running.finish()
    assert running.error is None and listener.poisoned == [weird]


def _gaps(fake: FakeActionsService) -> list[float]:
    times = [r.time for r in fake.requests("get_message")]
    return [round(b - a, 3) for a, b in pairwise(times)]


def _config(scale_set: sc.RunnerScaleSet, **kwargs: object) -> sc.ListenerConfig:
    return sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0, **kwargs)  # type: ignore[arg-type]


def test_a_message_that_cannot_be_read_is_set_aside_after_poison_after_polls_backing_off(
        low: tuple[FakeActionsService, FakeClock]) -> None:
    fake, clock = low
    config = sc.ResilienceConfig(max_message_bytes=64 * 1024)
    with make_client(fake, clock, resilience=config) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        big = fake.push_message(scale_set.id, [job("JobStarted", i, jobDisplayName="x" * 500) for i in range(1, 400)])
        poisoned: list[int] = []
        listener_config = _config(scale_set, on_poison=lambda mid, exc: poisoned.append(mid))
        sc.Listener(client, listener_config).run(RecordingScaler(), until_idle=True)
    # three polls bring it (50 s, then 100 s apart); set aside, the fourth poll comes back empty
    assert poisoned == [big] and fake.unacked(scale_set.id) == []
    assert _gaps(fake)[:2] == [50.0, 100.0] and fake.count("get_message") == 4


def test_an_on_poison_that_raises_still_sets_the_message_aside(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    bad = fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    poisoned: list[int] = []

    def on_poison(message_id: int, error: BaseException) -> None:
        poisoned.append(message_id)
        raise RuntimeError("alerting is down too")

    def always_fail(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        raise RuntimeError("scaler broken")

    scaler = RecordingScaler(always_fail)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, poison_after=1, on_poison=on_poison))
    listener.run(scaler, until_idle=True)
    assert poisoned == [bad] and fake.unacked(scale_set.id) == [] and listener.cursor == bad
    client.close()


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


def test_a_message_the_scaler_failed_on_comes_again_only_after_a_pause(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    failed: list[int] = []

    def fail_once(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if not failed:
            failed.append(request_id)
            raise RuntimeError("runner backend hiccup")

    scaler = RecordingScaler(fail_once)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)).run(scaler, until_idle=True)
    assert failed == [5] and scaler.started == [5] and fake.unacked(scale_set.id) == []
    first, second = times(fake, "get_message")[:2]  # both delivered the message
    assert second - first >= 2.0  # backoff(1) with error_backoff 4 is 2-4 s: not polled again at once


def test_a_message_is_handed_over_poison_after_times_before_it_is_set_aside(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    bad = fake.push_message(scale_set.id, [job("JobCompleted", 1)], statistics=stats(0))
    calls: list[int] = []
    poisoned: list[int] = []

    def broken(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        calls.append(request_id)
        raise ValueError("cannot handle this one")

    scaler = RecordingScaler(broken)
    config = sc.ListenerConfig(scale_set.id, 5, poison_after=3, on_poison=lambda mid, exc: poisoned.append(mid))
    running = Running(sc.Listener(client, config), scaler)
    wait_until(lambda: poisoned == [bad])
    running.finish()
    assert calls == [1, 1, 1]  # three tries, then set aside and acknowledged
    assert fake.unacked(scale_set.id) == []


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
