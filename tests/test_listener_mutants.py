"""Listener promises the mutation run showed no test pinned, seen at the fake and the scaler: the
order of polls and desired-count calls after a failed poll, and the conflict/standby paths of
opening and renewing a session. Time is a FakeClock shared with the fake."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats

_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"
CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


def test_after_a_failed_poll_the_next_poll_comes_before_a_desired_count_that_is_due(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """A desired count the scaler could not apply is tried again before the next poll (the scaler
    hears the current figure before the listener waits on the queue), failed polls included: it
    fails before the first poll, the poll fails, and it is tried again before the second."""
    client = make_client(fake, clock)
    stop = threading.Event()
    polls_at_desired: list[int] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            polls_at_desired.append(fake.count("get_message"))
            if len(polls_at_desired) == 1:
                raise RuntimeError("not yet")  # leaves the count due again
            stop.set()
            return super().handle_desired_runner_count(count)

    fake.inject("get_message", Fault.error(400, message="bad poll"))
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(Scaler(), stop)
    assert polls_at_desired == [0, 1] and fake.count("get_message") == 1
    client.close()


def test_a_session_kept_taken_past_standby_timeout_says_by_whom_and_how_long(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0, standby_timeout=60.0))
    with pytest.raises(sc.SessionConflictError) as info:
        listener.run(RecordingScaler())
    assert info.value.message == (f"scale set {scale_set.id} stayed owned by another listener for 60s: The actions "
                                  f"runner scaleset {scale_set.name} already has an active session.")
    assert info.value.status == 409 and "RunnerScaleSetSessionConflictException" in info.value.type_name
    assert listener.health().standby
    held.close()
    owner.close()
    client.close()


def test_a_listener_that_stood_by_takes_over_once_the_owner_leaves(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 9)], statistics=stats(1))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    scaler = RecordingScaler()
    fake.inject("create_session", Fault.error(409, CONFLICT, "owned elsewhere"))  # the first try meets the owner
    held.close()  # the owner leaves; the injected conflict stands for the moment it still held it
    listener.run(scaler, until_idle=True)
    assert scaler.started == [9] and fake.count("create_session") == 3  # owner's, the conflict, ours
    creates = [r.time for r in fake.requests("create_session")]
    assert creates[2] - creates[1] >= 0.8 * 30.0  # one standby pause between the tries
    assert not listener.health().standby
    owner.close()
    client.close()


def test_the_standby_timeout_error_names_the_request_it_gave_up_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0, standby_timeout=60.0))
    try:
        with pytest.raises(sc.SessionConflictError) as info:
            listener.run(RecordingScaler())
        assert info.value.method == "POST" and "/sessions" in info.value.url
    finally:
        held.close()
        owner.close()
        client.close()


def _run_bounded(listener: sc.Listener, scaler: RecordingScaler, duration: float) -> None:
    """Run with a duration (fake time) in a thread; the join's real-time bound only stops a broken
    run from holding the test for its whole timeout."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            listener.run(scaler, duration=duration)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the bounded run did not end"
    assert errors == []


def test_a_session_that_cannot_be_opened_before_a_bounded_run_ends_returns_quietly(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject_always("create_session", Fault.error(400, "SomethingElseException", "try later"))
    scaler = RecordingScaler()
    try:
        _run_bounded(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)), scaler, 20.0)
    finally:
        client.close()
    tries = [r.time for r in fake.requests("create_session")]
    assert len(tries) >= 2 and tries[-1] - tries[0] <= 20.0
    assert scaler.desired == [] and fake.count("get_message") == 0


def test_a_scaler_that_cannot_apply_the_count_keeps_the_run_bounded_and_polling(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    calls: list[int] = []

    class Failing(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            calls.append(count)
            raise RuntimeError("cannot scale now")

    fake.push_message(scale_set.id, [job("JobStarted", 3)], statistics=stats(1))
    scaler = Failing()
    try:
        _run_bounded(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)), scaler, 60.0)
    finally:
        client.close()
    assert scaler.started == [3] and len(calls) >= 2  # retried after a pause, not given up
    assert fake.count("get_message") >= 1 and fake.session_of(scale_set.id) is None  # deleted on the way out


def test_an_ack_that_still_fails_on_the_way_out_stays_pending_in_the_state_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 4)], statistics=stats(1))
    fake.inject_always("delete_message", Fault.error(400, message="not now"))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=str(path))).run(scaler, until_idle=True)
    unacked = fake.unacked(scale_set.id)
    assert scaler.started == [4] and len(unacked) == 1
    assert fake.count("delete_message") >= 2  # tried while running and once more on the way out
    saved = json.loads(path.read_text())
    assert saved["pending_acks"] == unacked and saved["cursor"] == unacked[0]
    client.close()
