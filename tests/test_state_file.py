"""The state file's promises: bound to its configuration, never a crash loop, one lock per real
file, per-event progress across a SIGKILL, and statistics applied only when newer."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import SLOT, CursorRecord, StateFile
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


class Hooks:
    """A metrics recorder that keeps what the listener reported."""

    def __init__(self) -> None:
        self.ahead: list[tuple[int, int]] = []
        self.failures: list[int] = []
        self.poisoned: list[int] = []

    def record_cursor_ahead(self, cursor: int, message_id: int) -> None:
        self.ahead.append((cursor, message_id))

    def record_scaler_failure(self, message_id: int, error: BaseException) -> None:
        self.failures.append(message_id)

    def record_poisoned(self, message_id: int) -> None:
        self.poisoned.append(message_id)


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


def test_a_cursor_ahead_of_the_service_is_a_warning_a_metric_and_a_fresh_start(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # A restored server with the same URL and id: the file matches, but its cursor is from before.
    state = tmp_path / "state.json"
    mids = [fake.push_message(scale_set.id, [job("JobStarted", i)], statistics=stats(i)) for i in (1, 2)]
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": mids[-1] + 500}))
    client = make_client(fake, clock)
    scaler, hooks = RecordingScaler(), Hooks()
    with caplog.at_level(logging.WARNING, "scaleset_client._listener"):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state), metrics=hooks).run(
            scaler, until_idle=True)
    assert scaler.started == [1, 2] and fake.unacked(scale_set.id) == []
    assert hooks.ahead == [(mids[-1] + 500, mids[0])]
    assert any("ahead of what the service delivers" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
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


def test_the_lock_belongs_to_the_real_file_not_to_a_name(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    alias = tmp_path / "alias.json"
    alias.symlink_to(real)
    with StateFile(real), pytest.raises(sc.StateFileLockedError):
        StateFile(alias).acquire()
    with StateFile(alias) as held:  # and the alias writes through to the real file
        held.save({"cursor": 3})
    assert alias.is_symlink() and json.loads(real.read_text())["cursor"] == 3


def test_a_torn_cursor_slot_falls_back_to_the_last_synced_record(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with StateFile(state) as held:
        held.write_cursor(CursorRecord(cursor=41), durable=True)
        held.write_cursor(CursorRecord(cursor=41, message_id=42, started=1), durable=False)
        held.write_cursor(CursorRecord(cursor=41, message_id=42, started=2), durable=False)
    raw = bytearray((tmp_path / "state.json.cursor").read_bytes())
    assert len(raw) == 2 * SLOT
    with StateFile(state) as held:
        assert held.load_cursor() == CursorRecord(cursor=41, message_id=42, started=2)
    # A power loss tore the slot the unsynced writes went to: the synced one is intact.
    unsynced = 1 if raw[:SLOT].find(b'"started":0') != -1 else 0
    raw[unsynced * SLOT + 20:unsynced * SLOT + 30] = b"\x00" * 10
    (tmp_path / "state.json.cursor").write_bytes(bytes(raw))
    with StateFile(state) as held:
        assert held.load_cursor() == CursorRecord(cursor=41)


CHILD = """
import json, os, signal, sys, threading
import scaleset_client as sc

url, token, set_id, state, log_path, kill_at = sys.argv[1:7]
kill_at = tuple(kill_at.split(":"))

class Scaler:
    def __init__(self):
        self.listener = None
    def _event(self, kind):
        ref = self.listener.current_event
        with open(log_path, "a") as f:
            f.write(json.dumps([ref.message_id, ref.kind, ref.index]) + "\\n")
        if (ref.kind, str(ref.index)) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    def handle_job_started(self, job):
        self._event("job_started")
    def handle_job_completed(self, job):
        self._event("job_completed")
    def handle_desired_runner_count(self, count):
        self._event("desired_runner_count")
        return count

client = sc.Client(url, token=token, long_poll_timeout=5.0)
scaler = Scaler()
listener = sc.Listener(client, sc.ListenerConfig(int(set_id), 3, state_file=state))
scaler.listener = listener
listener.run(scaler, until_idle=True)
client.close()
"""


@pytest.mark.parametrize("kill_at", ["job_started:1", "job_completed:0", "desired_runner_count:0"])
def test_a_sigkill_repeats_at_most_the_one_event_in_flight(tmp_path: Path, kill_at: str) -> None:
    script, log_path, state = tmp_path / "child.py", tmp_path / "events.jsonl", tmp_path / "state.json"
    script.write_text(CHILD)
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="kill"))
        client.close()
        mid = fake.push_message(scale_set.id, [job("JobStarted", 1), job("JobStarted", 2), job("JobStarted", 3),
                                               job("JobCompleted", 4)], statistics=stats(3))
        args = [sys.executable, str(script), fake.config_url, fake.token, str(scale_set.id), str(state),
                str(log_path)]
        killed = subprocess.run([*args, kill_at], capture_output=True, timeout=60)
        assert killed.returncode == -9, killed.stderr.decode()[-2000:]
        assert fake.unacked(scale_set.id) == [mid]
        done = subprocess.run([*args, "never:0"], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert fake.unacked(scale_set.id) == []
    events = [tuple(json.loads(line)) for line in log_path.read_text().splitlines()]
    expected = [(mid, "job_started", 0), (mid, "job_started", 1), (mid, "job_started", 2),
                (mid, "job_completed", 0), (mid, "desired_runner_count", 0)]
    kind, index = kill_at.split(":")
    repeated = (mid, kind, int(index))
    # Every event once, except the one the process died in, which comes exactly once more.
    assert sorted(events, key=expected.index) == sorted([*expected, repeated], key=expected.index)
    assert events.count(repeated) == 2


def test_backlog_statistics_never_replace_the_newer_ones_of_the_session(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    # Queued while no listener ran: each message's statistics are those of when it was queued.
    for i, assigned in enumerate((18, 19, 20)):
        fake.push_message(scale_set.id, [job("JobStarted", i + 1)], statistics=stats(assigned))
    now = {"totalAssignedJobs": 21, "totalRunningJobs": 0}
    fake.statistics = lambda scale_set_id: dict(now)  # type: ignore[method-assign]  # the session's: newest
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=tmp_path / "s.json")).run(
        scaler, until_idle=True)
    assert scaler.started == [1, 2, 3]
    assert scaler.desired and set(scaler.desired) == {21}
    client.close()


def test_the_cursor_record_on_disk_names_the_last_handled_message(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(5))
    listener.run(scaler, until_idle=True)
    assert listener.cursor == first
    record = StateFile(state)
    with record:
        saved = record.load_cursor()
    assert saved is not None and saved.cursor == first
    client.close()

