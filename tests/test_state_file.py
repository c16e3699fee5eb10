"""The listener's state file: bound to its configuration (one of another organization, scale set
name or configuration is ignored), never a crash loop (wrong value types, a full disk), one
process per file, and the breaker state cron runs share through it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import CursorRecord, StateFile
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, job, make_client, stats


def test_a_state_file_for_another_organization_is_ignored_with_a_warning(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state.json"
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": first + 1000,
                                 "binding": {"config_url": "https://github.com/another-org",
                                             "scale_set_id": scale_set.id, "scale_set_name": ""}}))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    with caplog.at_level(logging.WARNING, "scaleset_client._listener"):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [1] and fake.unacked(scale_set.id) == []
    assert any("another-org" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    saved = json.loads(state.read_text())
    assert saved["binding"]["config_url"] == fake.config_url and saved["cursor"] == first
    client.close()


def test_a_state_file_for_another_scale_set_name_is_ignored(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 7)], statistics=stats(1))
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 10_000,
                                 "binding": {"config_url": fake.config_url, "scale_set_id": scale_set.id,
                                             "scale_set_name": "windows"}}))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    config = sc.ListenerConfig(scale_set.id, 3, state_file=state, scale_set_name=scale_set.name)
    sc.Listener(client, config).run(scaler, until_idle=True)
    assert scaler.started == [7]
    client.close()


def test_wrong_value_types_in_saved_breaker_states_are_a_warning_not_a_crash(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 3)], statistics=stats(1))
    breaker = {"origin": fake.queue_url.rsplit("/", 1)[0], "operation_class": "long_poll", "state": "open",
               "reopen_count": "many", "consecutive_failures": [1], "window": 5, "open_remaining": "soon",
               "saved_wall": clock.wall()}
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0, "resilience": {
        "version": 1, "saved_wall": clock.wall(), "breakers": [breaker], "gates": {"x": "y"}, "budget": [1]}}))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [3]
    client.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_the_lock_is_a_state_file_error_and_leaks_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    (tmp_path / "state.json.lock").symlink_to("/dev/full")  # every write there fails with ENOSPC
    before = _open_fds()
    with pytest.raises(sc.StateFileError, match="cannot lock the state file") as caught:
        StateFile(state).acquire()
    assert not isinstance(caught.value, sc.StateFileLockedError)
    assert _open_fds() == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_for_the_cursor_record_is_a_state_file_error(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    (tmp_path / "state.json.cursor").symlink_to("/dev/full")
    with StateFile(state) as held, pytest.raises(sc.StateFileError, match="cannot write the cursor record"):
        held.write_cursor(CursorRecord(cursor=5), durable=True)


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


class CursorAhead:
    def __init__(self) -> None:
        self.ahead: list[tuple[int, int]] = []

    def record_cursor_ahead(self, cursor: int, message_id: int) -> None:
        self.ahead.append((cursor, message_id))


@pytest.mark.parametrize("saved", [
    {"scale_set_id": 999},
    {"binding": "not a mapping"},
    {"binding": {"config_url": "https://github.com/elsewhere", "scale_set_id": 1}},
    {"binding": {"scale_set_name": "another-name"}},
], ids=["scale-set-id", "unreadable-binding", "config-url", "scale-set-name"])
def test_a_state_file_of_another_configuration_is_ignored_and_the_run_starts_afresh(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        saved: dict[str, object]) -> None:
    client = make_client(fake, clock)
    state = tmp_path / "state.json"
    binding = {"config_url": fake.config_url, "scale_set_id": scale_set.id, "scale_set_name": ""}
    doc: dict[str, object] = {"version": 1, "scale_set_id": scale_set.id, "cursor": 50, "pending_acks": [40]}
    for key, value in saved.items():
        doc[key] = {**binding, **value} if isinstance(value, dict) else value
    state.write_text(json.dumps(doc))
    mid = fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    metrics = CursorAhead()
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state,
                                                     scale_set_name="linux-x64"), metrics)
    listener.run(scaler, until_idle=True)
    # Afresh: message 1 is simply new (no cursor from the other file to be "ahead"), and the
    # other configuration's pending ack is not sent to this queue.
    assert scaler.started == [5] and metrics.ahead == [] and listener.cursor == mid
    assert fake.count("delete_message") == 1
    client.close()
