"""Listener promises an outside observer can check, pinned because mutation testing showed no test
would notice them breaking: the public config defaults and checks, health reasons, a stop between
runs, the state file and cursor record as another reader sees them mid-run, and the first poll
after a restart asking from the start of the queue."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import StateFile
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


def test_config_defaults_are_the_documented_ones_and_callbacks_do_not_affect_equality() -> None:
    config = sc.ListenerConfig(7, 3)
    assert (config.standby_interval, config.standby_timeout, config.error_backoff, config.error_backoff_max,
            config.poison_after) == (30.0, None, 1.0, 60.0, 3)
    assert sc.ListenerConfig(7, 3, on_poison=lambda m, e: None) == sc.ListenerConfig(7, 3, on_poison=print)


@pytest.mark.parametrize("field", ["standby_interval", "error_backoff"])
def test_a_zero_interval_is_refused_so_the_loop_cannot_spin(field: str) -> None:
    with pytest.raises(sc.ConfigError, match=field):
        sc.ListenerConfig(7, 3, **{field: 0.0})  # type: ignore[arg-type]


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


def test_the_last_poll_time_is_the_wall_time_of_the_last_answered_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    before = clock.wall()
    listener.run(RecordingScaler(), until_idle=True)
    polled = listener.health().last_poll_time
    assert polled is not None and before <= polled <= clock.wall()
    client.close()


def test_mid_run_the_state_file_and_cursor_record_show_session_and_progress(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1), job("JobStarted", 2)], statistics=stats(2))
    seen: list[tuple[object, ...]] = []

    def look(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 2:  # the first event of the message was handed over
            doc = json.loads(state.read_text())
            reader = StateFile(state)
            record = reader.load_cursor()
            assert record is not None
            session = fake.session_of(scale_set.id)
            assert session is not None
            seen.append((doc["scale_set_id"], doc["session_id"] == session.session_id, record.message_id,
                         record.started, record.completed))

    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(look),
                                                                                  until_idle=True)
    assert seen == [(scale_set.id, True, mid, 1, 0)]
    client.close()


def test_the_first_poll_after_a_restart_asks_from_the_start_then_from_the_cursor(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                  until_idle=True)
    fake.clear_log()
    second = fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(2))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    asked = [r.query.get("lastMessageId") for r in fake.requests("get_message")]
    assert asked == [None, str(second)] and scaler.started == [2] and first < second
    client.close()


def test_a_cursor_record_newer_than_the_state_file_is_what_a_restart_goes_by(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    handled = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.inject_always("delete_message", Fault.error(400, "SomethingElseException", "not now"))
    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                  until_idle=True)
    fake.clear_faults("delete_message")
    assert fake.unacked(scale_set.id) == [handled]
    # The process "died" after the cursor record was written but before the JSON document was.
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "cursor": 0, "pending_acks": []}))
    fresh = fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(5))
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    listener.run(scaler, until_idle=True)
    assert scaler.started == [2] and fake.unacked(scale_set.id) == [] and listener.cursor == fresh
    client.close()


def test_a_foreign_cursor_record_is_named_in_a_warning(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from scaleset_client._state import CursorRecord

    state = tmp_path / "state.json"
    other = StateFile(state)
    other.acquire()
    other.write_cursor(CursorRecord(50, 0, 0, 0, "0123456789abcdef", 50), durable=True)
    other.release()
    client = make_client(fake, clock)
    with caplog.at_level(logging.WARNING, logger="scaleset_client._listener"):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                      until_idle=True)
    assert any("belongs to another configuration" in r.getMessage() and str(other.cursor_path) in r.getMessage()
               for r in caplog.records)
    client.close()
