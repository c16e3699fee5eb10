"""The listener's promises (design §4) against the fake service."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until


class RecordingScaler:
    def __init__(self, hook: Callable[[RecordingScaler, str, int], None] | None = None) -> None:
        self.started: list[int] = []
        self.completed: list[int] = []
        self.desired: list[int] = []
        self.hook = hook

    def handle_job_started(self, job: sc.JobStarted) -> None:
        if self.hook:
            self.hook(self, "started", job.runner_request_id)
        self.started.append(job.runner_request_id)

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        if self.hook:
            self.hook(self, "completed", job.runner_request_id)
        self.completed.append(job.runner_request_id)

    def handle_desired_runner_count(self, count: int) -> int:
        self.desired.append(count)
        return count


_RUNNING: list[Running] = []


@pytest.fixture(autouse=True)
def _stop_listeners_after_each_test() -> Iterator[None]:
    yield
    while _RUNNING:  # a failed test must not leave a listener polling a closed fake
        running = _RUNNING.pop()
        running.stop.set()
        running.thread.join(timeout=15)


class Running:
    """A listener run in a thread, with its outcome kept for the test."""

    def __init__(self, listener: sc.Listener, scaler: RecordingScaler, **kwargs: object) -> None:
        _RUNNING.append(self)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(listener, scaler, kwargs), daemon=True)
        self.thread.start()

    def _run(self, listener: sc.Listener, scaler: RecordingScaler, kwargs: dict[str, object]) -> None:
        try:
            listener.run(scaler, self.stop, **kwargs)  # type: ignore[arg-type]
        except BaseException as exc:  # kept for the assertion
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def job(kind: str, request_id: int, **extra: object) -> dict[str, object]:
    return {"messageType": kind, "runnerRequestId": request_id, "runnerId": 1, "runnerName": "r", **extra}


def stats(assigned: int) -> dict[str, int]:
    return {"totalAssignedJobs": assigned, "totalRunningJobs": 0}


def test_two_hundred_messages_through_expiry_eviction_and_outage_arrive_exactly_once_in_order(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    expected_started, expected_completed = [], []

    def trouble(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 50 and request_id not in scaler.completed:
            fake.expire_queue_tokens()
        if request_id == 100 and request_id not in scaler.completed:
            fake.evict_session(scale_set.id)
        if request_id == 150 and request_id not in scaler.completed:
            fake.stop("broker")
            threading.Timer(0.5, fake.start_server, args=("broker",)).start()

    scaler = RecordingScaler(trouble)
    transitions: list[sc.Transition] = []
    client.circuit_breakers.add_listener(transitions.append)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, max_runners=10))
    running = Running(listener, scaler)
    wait_until(lambda: fake.count("get_message") >= 2)
    for i in range(1, 201):
        kind = "JobStarted" if i % 2 else "JobCompleted"
        (expected_started if i % 2 else expected_completed).append(i)
        last_id = fake.push_message(scale_set.id, [job(kind, i)], statistics=stats(i))
    wait_until(lambda: len(scaler.started) + len(scaler.completed) == 200 and not fake.unacked(scale_set.id))
    running.finish()
    assert running.error is None
    assert scaler.started == expected_started and scaler.completed == expected_completed
    # The renewals hand over the service's newest figure (200) while older messages still wait in
    # the queue: the scaler goes up to it and never back down to theirs.
    assert all(b >= a for a, b in itertools.pairwise(scaler.desired))
    newest = fake.newest_figure_sent(scale_set.id)
    assert newest is not None and scaler.desired[-1] == newest.assigned_jobs == 200
    assert fake.unacked(scale_set.id) == [] and listener.cursor == last_id
    assert fake.count("refresh_session") >= 1 and fake.count("create_session") >= 2  # expiry and eviction
    assert any(t.operation_class == "long_poll" and t.new is sc.State.OPEN for t in transitions)  # the outage
    client.close()


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


def test_initial_statistics_drive_the_first_desired_count(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    rid = fake.queue_job(scale_set.id)
    fake.clear_log()
    with client.message_session(scale_set.id) as session:
        scaler = RecordingScaler()
        listener = sc.Listener(session, sc.ListenerConfig(scale_set.id, 3))
        listener.run(scaler, until_idle=True)
    assert scaler.desired[0] == 0  # the session's statistics, before any poll
    assert fake.requests("acquire_jobs")[0].json() == [rid]
    assert fake.requests("get_message")[0].headers["X-ScaleSetMaxCapacity"] == "3"


def test_set_max_runners_changes_the_next_poll(client: sc.Client, fake: FakeActionsService,
                                               scale_set: sc.RunnerScaleSet) -> None:
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    listener.set_max_runners(7)
    wait_until(lambda: 7 in fake.capacities)
    running.finish()
    with pytest.raises(sc.ConfigError):
        listener.set_max_runners(-1)
    with pytest.raises(sc.ConfigError):
        listener.set_max_runners(2**31)


def test_session_conflict_stands_by_and_takes_over_when_the_owner_leaves(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    scaler = RecordingScaler()
    running = Running(listener, scaler)
    wait_until(lambda: fake.count("create_session") >= 3)
    assert listener.health().standby and not listener.health().ready
    held.close()  # the owner goes away
    wait_until(lambda: listener.health().ready)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    wait_until(lambda: scaler.started == [5])
    running.finish()
    attempts = [r.time for r in fake.requests("create_session")]
    gaps = [b - a for a, b in itertools.pairwise(attempts[1:])]  # [0] is the owner's session
    assert gaps and min(gaps) >= 0.8 * 30.0  # the standby interval, not a hot loop
    owner.close()
    client.close()


def test_deleted_scale_set_ends_the_run_with_scale_set_not_found(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    fake.clear_log()
    fake.delete_scale_set(scale_set.id)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sc.ScaleSetNotFoundError) and "no longer exists" in str(running.error)
    assert fake.count() < 20


def test_stop_ends_the_run_promptly_and_the_owned_session_is_deleted(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    running.finish()
    assert fake.session_of(scale_set.id) is None


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


def test_cursor_on_disk_means_a_handled_message_is_acked_not_handed_again(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    handled = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fresh = fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(2))
    # A process died after writing the cursor for `handled` but before acknowledging it.
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": handled,
                                 "pending_acks": [handled]}))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [2] and fake.unacked(scale_set.id) == []
    saved = json.loads(state.read_text())
    assert saved["cursor"] == fresh and saved["pending_acks"] == []
    assert (state.stat().st_mode & 0o777) == 0o600 and fake.token not in state.read_text()
    client.close()


def test_a_second_process_cannot_share_the_state_file(fake: FakeActionsService, clock: FakeClock,
                                                      scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    from scaleset_client._state import StateFile

    state = tmp_path / "state.json"
    holder = StateFile(state)
    holder.acquire()
    client = make_client(fake, clock)
    with pytest.raises(sc.StateFileError, match="in use by another process"):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler())
    holder.release()
    client.close()


def test_our_own_stale_session_from_the_state_file_is_deleted_and_replaced(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    crashed = make_client(fake, clock)
    left_behind = crashed.message_session(scale_set.id)  # the process is "killed": never closed
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0,
                                 "session_id": left_behind.session.session_id}))
    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                  until_idle=True)
    assert [r.operation for r in fake.requests() if "session" in r.operation][-4:] == [
        "create_session", "delete_session", "create_session", "delete_session"]
    client.close()


def test_cron_runs_sharing_a_state_file_do_not_probe_a_known_dead_broker(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    resilience = sc.ResilienceConfig(circuit_breaker=sc.CircuitBreakerConfig(
        failure_threshold=2, open_duration=20.0, max_open_duration=20.0, jitter=0.0))
    fake.stop("broker")
    first = make_client(fake, clock, resilience=resilience)
    sc.Listener(first, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(), duration=5.0)
    first.close()
    fake.clear_log()
    second = make_client(fake, clock, resilience=resilience)
    with pytest.raises(sc.RunSkippedError) as info:
        sc.Listener(second, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                      duration=5.0)
    assert info.value.retry_at is not None and fake.count() == 0  # nothing sent at all
    second.close()
    saved = json.loads(state.read_text())
    broker = next(b for b in saved["resilience"]["breakers"] if b["operation_class"] == "long_poll")
    break_ends = clock.monotonic() + broker["open_remaining"]
    third = make_client(fake, clock, resilience=resilience)
    fake.start_server("broker")
    sc.Listener(third, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                 duration=60.0, until_idle=True)
    polls = fake.requests("get_message")
    assert polls and all(p.time >= break_ends for p in polls)
    third.close()


def test_a_scaler_that_cannot_apply_counts_does_not_stop_polling(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    class Broken(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            raise RuntimeError("cloud API down")

    fake.push_message(scale_set.id, [job("JobStarted", 4)], statistics=stats(1))
    scaler = Broken()
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), scaler)
    wait_until(lambda: not fake.unacked(scale_set.id))  # set aside after 3 tries, and acked
    running.finish()
    assert running.error is None and scaler.started == [4]  # the started event was handled once
    assert fake.count("get_message") >= 3


def test_closing_the_client_ends_the_run(fake: FakeActionsService, clock: FakeClock,
                                        scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), RecordingScaler())
    wait_until(lambda: fake.count("get_message") > 0)
    client.close()
    running.thread.join(timeout=15)
    assert not running.thread.is_alive() and running.error is None
