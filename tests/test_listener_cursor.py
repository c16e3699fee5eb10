"""The delivery record (cursor) and acknowledgements, read the way a restarted process reads them:
a handled message is acknowledged, never handed over again; progress within a message is kept;
an ack that fails stays pending and is sent first; a record of another service or configuration
is not gone by.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._listener_state import binding_key
from scaleset_client._state import CursorRecord, StateFile
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, job, make_client, newest_cursor_record, stats


def test_a_cursor_from_another_service_starts_afresh_from_the_message_it_meets(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """The saved cursor is far ahead (a restored server). The first message met is handled and
    its statistics reach the scaler (asked for once the queue drained, as the message came after
    the session's own); when the scaler fails on it, the next poll asks from just before it (so it
    comes again), and the state file already says so."""
    state = tmp_path / "state.json"
    ahead = 900_000_000
    held = StateFile(state)
    held.acquire()
    held.write_cursor(CursorRecord(ahead, binding=binding_key(fake.config_url, scale_set.id),
                                   stats_message_id=ahead), durable=True)
    held.release()
    client = make_client(fake, clock)
    pushed: list[int] = []
    saved_cursor: list[int] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not pushed:
                pushed.append(fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(4)))
            return super().handle_desired_runner_count(count)

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        saved_cursor.append(json.loads(state.read_text())["cursor"])
        if len(saved_cursor) == 1:
            raise RuntimeError("not yet")

    scaler = Scaler(hook)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    (mid,) = pushed
    assert scaler.started == [1] and scaler.desired == [0, 0, 4]  # the session's, with the message, the service's
    asked = [int(r.query.get("lastMessageId", "0")) for r in fake.requests("get_message")]
    assert asked == [0, mid - 1, mid]  # from 0 (to verify the cursor), again from just before it, then on
    assert saved_cursor[1] == mid - 1  # saved before that poll
    client.close()


def test_progress_within_a_message_is_recorded_after_each_event(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """What a process killed mid-message leaves: how many started and completed events of the
    message in flight were handed over (the next one skips exactly those)."""
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1), job("JobStarted", 2),
                                           job("JobCompleted", 3, result="succeeded"),
                                           job("JobCompleted", 4, result="succeeded")], statistics=stats(1))
    client = make_client(fake, clock)
    seen: list[tuple[int, int, int, int]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id > 1:
            r = newest_cursor_record(state)
            seen.append((r.cursor, r.message_id, r.started, r.completed))

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(hook),
                                                                                  until_idle=True)
    assert seen == [(0, mid, 1, 0), (0, mid, 2, 0), (0, mid, 2, 1)]
    client.close()


def test_a_pending_ack_that_goes_through_leaves_the_state_file_before_the_next_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """The last run handled ``done`` but could not acknowledge it: this run sends the ack first and
    the state file stops listing it at once."""
    state = tmp_path / "state.json"
    done = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": done,
                                 "pending_acks": [done]}))
    client = make_client(fake, clock)
    listed: list[list[int]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        listed.append(json.loads(state.read_text())["pending_acks"])

    scaler = RecordingScaler(hook)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [2] and listed == [[]] and fake.unacked(scale_set.id) == []
    client.close()


def test_a_killed_runs_progress_is_restored_and_its_events_not_handed_over_again(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1), job("JobStarted", 2)], statistics=stats(1))
    held = StateFile(state)
    held.acquire()
    held.write_cursor(CursorRecord(0, mid, 1, 0, binding_key(fake.config_url, scale_set.id)), durable=True)
    held.release()
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [2] and fake.unacked(scale_set.id) == []
    client.close()


def test_a_pending_ack_is_sent_before_the_first_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    done = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": done,
                                 "pending_acks": [done]}))
    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                  until_idle=True)
    queue = [r.operation for r in fake.requests() if r.operation in ("get_message", "delete_message")]
    assert queue[:2] == ["delete_message", "get_message"]
    client.close()


def test_a_breaker_transition_is_in_the_state_file_before_the_next_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """A process killed during a break leaves the break for the next one to respect. The break
    is the session breaker's (an hour), which the next poll does not meet: the file is read when
    the next message is handled, with the break still on (a long-poll break would end first, and
    the file rightly say so)."""
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    client = make_client(fake, clock)
    saved: list[list[str]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 1:
            client.circuit_breakers.force_open(duration=3600.0, operation_class="session")
        else:
            breakers = json.loads(state.read_text())["resilience"]["breakers"]
            saved.append([b["state"] for b in breakers if b["operation_class"] == "session"])

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(hook),
                                                                                  until_idle=True)
    assert saved == [["forced_open"]]
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


_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"


NOT_FOUND = _T.format("RunnerScaleSetNotFoundException")


def test_a_message_at_the_cursor_is_acknowledged_and_not_handed_to_the_scaler(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    handled = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fresh = fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(2))
    # A process died after recording `handled` as its cursor, before acknowledging it, and before
    # the state file knew the ack was pending.
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": handled}))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    listener.run(scaler, until_idle=True)
    assert scaler.started == [2] and fake.unacked(scale_set.id) == []
    assert [int(r.path.rstrip("/").rsplit("/", 1)[-1]) for r in fake.requests("delete_message")] == [
        handled, fresh]
    assert json.loads(state.read_text())["cursor"] == fresh and listener.cursor == fresh
    client.close()


def test_an_ack_that_fails_is_in_the_state_file_while_the_next_message_is_handled_and_sent_later(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    second = fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(2))
    fake.inject("delete_message", Fault.error(400, "SomethingElseException", "not now"))
    seen_pending: list[list[int]] = []

    def look_at_the_state_file(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 2:
            seen_pending.append(json.loads(state.read_text())["pending_acks"])

    scaler = RecordingScaler(look_at_the_state_file)
    client = make_client(fake, clock)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(scaler, until_idle=True)
    assert scaler.started == [1, 2] and seen_pending == [[first]]
    assert fake.unacked(scale_set.id) == []
    acks = [int(r.path.rstrip("/").rsplit("/", 1)[-1]) for r in fake.requests("delete_message")]
    assert acks[0] == first and acks.count(first) == 2 and second in acks
    assert json.loads(state.read_text())["pending_acks"] == []
    client.close()


def test_an_ack_refused_for_a_missing_scale_set_that_exists_is_sent_again(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("delete_message", Fault.error(400, NOT_FOUND, "no such scale set"))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []  # handed over once, acked on a later try
    assert fake.count("get_runner_scale_set_by_id") == 1 and fake.count("delete_message") == 2
    client.close()


class CursorAhead:
    def __init__(self) -> None:
        self.ahead: list[tuple[int, int]] = []

    def record_cursor_ahead(self, cursor: int, message_id: int) -> None:
        self.ahead.append((cursor, message_id))


def test_a_cursor_record_of_another_configuration_is_ignored(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    from scaleset_client._state import CursorRecord, StateFile

    state = tmp_path / "state.json"
    other = StateFile(state)
    other.acquire()
    other.write_cursor(CursorRecord(50, 0, 0, 0, "0123456789abcdef", 50), durable=True)
    other.release()
    client = make_client(fake, clock)
    mid = fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    metrics = CursorAhead()
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state), metrics)
    listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and metrics.ahead == [] and listener.cursor == mid
    client.close()


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


def test_the_delivery_record_names_no_message_in_flight_once_a_message_is_handled(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    first = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    state = tmp_path / "state.json"
    client = make_client(fake, clock)
    records: list[CursorRecord] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 2:  # message 1 is handled and acknowledged; nothing of message 2 yet
            records.append(newest_cursor_record(state))

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(hook),
                                                                                  until_idle=True)
    assert len(records) == 1
    assert (records[0].cursor, records[0].message_id, records[0].started, records[0].completed) == (first, 0, 0, 0)
    client.close()


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
