"""The delivery record and the state file while messages are handled, read the way a restarted
process reads them (the ``.cursor`` slots, the JSON document) and at the fake (what a poll asks
for): a cursor from another service, progress within a message, and a pending ack that goes
through. Time is a FakeClock shared with the fake."""

from __future__ import annotations

import json
from pathlib import Path

import scaleset_client as sc
from scaleset_client._listener_state import binding_key
from scaleset_client._state import CursorRecord, StateFile
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client, newest_cursor_record
from .test_listener import RecordingScaler, job, stats


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
    """A process killed during a break leaves the break for the next one to respect."""
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 2)], statistics=stats(1))
    client = make_client(fake, clock)
    saved: list[list[str]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 1:
            client.circuit_breakers.force_open(duration=10.0, operation_class="long_poll")
        else:
            breakers = json.loads(state.read_text())["resilience"]["breakers"]
            saved.append([b["state"] for b in breakers if b["operation_class"] == "long_poll"])

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(hook),
                                                                                  until_idle=True)
    assert saved == [["forced_open"]]
    client.close()
