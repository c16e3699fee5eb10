"""Opening the listener's session: another host holds it (stand by, take over when it leaves, give
up at ``standby_timeout`` naming the holder), our own stale session from the state file, and
a session that cannot be opened yet (tried again after a growing pause).
"""

from __future__ import annotations

import itertools
import json
import logging
from itertools import pairwise
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, Running, fake_with_draw, job, make_client, run_bounded, stats, wait_until


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


_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"


CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


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


def test_a_session_that_cannot_be_opened_before_a_bounded_run_ends_returns_quietly(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject_always("create_session", Fault.error(400, "SomethingElseException", "try later"))
    scaler = RecordingScaler()
    try:
        run_bounded(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)), scaler, 20.0)
    finally:
        client.close()
    tries = [r.time for r in fake.requests("create_session")]
    assert len(tries) >= 2 and tries[-1] - tries[0] <= 20.0
    assert scaler.desired == [] and fake.count("get_message") == 0


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


def gaps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def test_opening_a_session_that_stays_taken_past_standby_timeout_raises(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0,
                                                     standby_timeout=100.0))
    scaler = RecordingScaler()
    with pytest.raises(sc.SessionConflictError, match="stayed owned by another listener for 100s"):
        listener.run(scaler)
    attempts = times(fake, "create_session")[1:]  # [0] is the owner's
    assert 4 <= len(attempts) <= 6 and min(gaps(attempts)) >= 0.8 * 30.0
    assert scaler.desired == [] and fake.count("get_message") == 0
    assert fake.session_of(scale_set.id) is not None  # the owner's session was left alone
    held.close()
    owner.close()
    client.close()


def test_a_session_that_cannot_be_opened_yet_is_tried_again_after_a_growing_pause(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("create_session", Fault.error(400, "SomethingElseException", "try later"), times=2)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    attempts = times(fake, "create_session")
    assert len(attempts) == 3
    first, second = gaps(attempts)
    assert first >= 2.0 and second >= 4.0  # backoff(1) is 2-4 s, backoff(2) 4-8 s with error_backoff 4
    client.close()


def test_opening_a_session_for_a_missing_scale_set_ends_the_run_at_once(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.delete_scale_set(scale_set.id)
    fake.clear_log()
    with pytest.raises(sc.ScaleSetNotFoundError):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler())
    assert fake.count("create_session") == 1
    client.close()


def test_a_bounded_run_standing_by_for_a_session_ends_by_its_duration_without_error(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    owner = make_client(fake, clock)
    held = owner.message_session(scale_set.id, owner="other-host")
    client = make_client(fake, clock)
    started = clock.monotonic()
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0)).run(scaler, duration=100.0)
    attempts = times(fake, "create_session")[1:]
    assert 3 <= len(attempts) <= 5 and attempts[-1] - started <= 100.0
    assert clock.monotonic() - started <= 100.0 + 2.0
    assert fake.count("get_message") == 0 and scaler.desired == []
    held.close()
    owner.close()
    client.close()


def _config(scale_set: sc.RunnerScaleSet, **kwargs: object) -> sc.ListenerConfig:
    return sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0, **kwargs)  # type: ignore[arg-type]


def test_a_session_that_cannot_be_opened_is_tried_again_backing_off(
        low: tuple[FakeActionsService, FakeClock]) -> None:
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        fake.inject("create_session", *[Fault.error(400, "SomethingElseException", "try later")] * 2)
        sc.Listener(client, _config(scale_set)).run(RecordingScaler(), until_idle=True)
        times = [r.time for r in fake.requests("create_session")]
    assert [round(b - a, 3) for a, b in pairwise(times)] == [50.0, 100.0]


@pytest.mark.parametrize(("draw", "pause"), [(0.0, 24.0), (0.99, 35.88)])
def test_standing_by_ends_when_standby_timeout_is_reached_not_a_try_later(draw: float, pause: float) -> None:
    """Tries standby_interval x (0.8 + 0.4 x draw) apart: 24 s at the narrowest draw (tries at 0,
    24 and 48 s: a 48 s timeout is reached at the third, which is the last), 35.88 s at the
    widest (at 0, 35.88 and 71.76 s)."""
    fake, clock = fake_with_draw(draw)
    with fake, make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        held = client.message_session(scale_set.id, owner="other-host")
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0,
                                                         standby_timeout=48.0))
        try:
            with pytest.raises(sc.SessionConflictError):
                listener.run(RecordingScaler())
        finally:
            held.close()
        times = [r.time for r in fake.requests("create_session")][1:]  # the owner's first
    assert [round(b - a, 3) for a, b in pairwise(times)] == [pause, pause]


def test_a_listener_that_took_over_says_it_is_no_longer_standing_by(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("create_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    during: list[bool] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            during.append(listener.health().standby)
            return super().handle_desired_runner_count(count)

    listener.run(Scaler(), until_idle=True)
    assert fake.count("create_session") == 2 and during == [False] and during[0] is False
    client.close()


def test_a_saved_session_id_of_the_wrong_type_is_never_deleted(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """A stale id is deleted only when the create conflicts; one of the wrong type (a hand-edited
    or foreign state file) is not an id of ours: the conflict is a standby, no delete is sent."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0, "session_id": 12345}))
    client = make_client(fake, clock)
    held = client.message_session(scale_set.id, owner="other-host")
    config = sc.ListenerConfig(scale_set.id, 3, state_file=state, standby_timeout=0.0)
    try:
        with pytest.raises(sc.SessionConflictError):
            sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
        assert fake.count("delete_session") == 0
        assert json.loads(state.read_text())["session_id"] == ""  # no session was opened: none to name
    finally:
        held.close()
        client.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings of the listener's loggers: the package's and its parts' (``_listener.sessions``, ...)."""
    return [r.getMessage() for r in caplog.records
            if r.name.split(".")[:2] == ["scaleset_client", "_listener"] and r.levelno >= logging.WARNING]


def test_a_stop_while_a_session_is_being_opened_ends_the_run_quietly(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(fake, clock)
    fake.inject("create_session", Fault.hang())
    scaler = RecordingScaler()
    running = Running(sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)), scaler)
    wait_until(lambda: fake.count("create_session") == 1)
    caplog.clear()
    running.finish()
    fake.release_hangs()
    assert running.error is None
    assert fake.count("create_session") == 1 and fake.count("get_message") == 0 and scaler.desired == []
    assert warnings(caplog) == []  # our own stop is not a failure to report
    client.close()


def test_our_stale_session_that_cannot_be_deleted_makes_a_standby_that_takes_over_later(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    crashed = make_client(fake, clock)
    left_behind = crashed.message_session(scale_set.id)  # a killed process's session, never closed
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0,
                                 "session_id": left_behind.session.session_id}))
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("delete_session", Fault.error(422, "SomethingElseException", "not now"))
    fake.clear_log()
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state, standby_interval=30.0)).run(
        scaler, until_idle=True)
    ops = [r.operation for r in fake.requests() if "session" in r.operation]
    assert ops[:6] == ["create_session", "delete_session", "create_session",  # delete refused: conflict
                       "create_session", "delete_session", "create_session"]  # a standby pause later: taken
    creates = times(fake, "create_session")
    assert creates[2] - creates[1] >= 0.8 * 30.0  # the standby interval, not a hot loop
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    client.close()
    crashed.close()


def test_opening_a_session_logs_each_failure_and_standing_by(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    """An operator reading the log sees a session that could not be opened (a warning with the
    error) and a listener standing by because another owns the session (with the scale set)."""
    client = make_client(fake, clock)
    fake.inject("create_session", Fault.error(400, "SomethingElseException", "try later"))
    fake.inject("create_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    with caplog.at_level(logging.INFO, logger="scaleset_client._listener"):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), until_idle=True)
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name.split(".")[:2] == ["scaleset_client", "_listener"]]
    assert any(level == logging.WARNING and text.startswith("could not open a session: ") and "try later" in text
               for level, text in said), said
    assert (logging.INFO, f"scale set {scale_set.id} has an active session elsewhere; standing by") in said
    client.close()
