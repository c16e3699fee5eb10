"""The listener's less travelled paths, seen at the fake and the scaler: session renewal that meets
a conflict or an error, opening a session under a conflict or errors, a scale-set 404 that a second
look contradicts or confirms, a rate limit longer than a call may wait, and a message at the cursor.

Time is a FakeClock shared with the fake, so request times at the fake show every pause exactly.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats

_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"
CONFLICT = _T.format("RunnerScaleSetSessionConflictException")
NOT_FOUND = _T.format("RunnerScaleSetNotFoundException")


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


def gaps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


# -- renewing a session the queue turned away ----------------------------------------------------
def test_a_renewal_that_meets_a_conflict_stands_by_then_renews_and_delivers(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"), times=2)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    scaler = RecordingScaler()
    listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    refreshes = times(fake, "refresh_session")
    assert len(refreshes) == 3 and fake.count("create_session") == 1  # renewed in place, no new session
    assert min(gaps(refreshes)) >= 0.8 * 30.0  # the standby interval between tries, not a hot loop
    assert not listener.health().standby
    client.close()


def test_a_renewal_that_stays_in_conflict_past_standby_timeout_ends_the_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject_always("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0,
                                                     standby_timeout=100.0))
    scaler = RecordingScaler()
    with pytest.raises(sc.SessionConflictError):
        listener.run(scaler, until_idle=True)
    refreshes = times(fake, "refresh_session")
    # Tries every 24-36 s for 100 s: 4 to 6 tries, then it gives up.
    assert 4 <= len(refreshes) <= 6 and refreshes[-1] - refreshes[0] >= 100.0 - 36.0
    assert listener.health().standby and scaler.desired == [0]
    assert fake.session_of(scale_set.id) is None  # the owned session was still deleted on the way out
    client.close()


def test_a_renewal_that_fails_otherwise_backs_off_and_polling_goes_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.error(400, "SomethingElseException", "bad request"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0))
    scaler = RecordingScaler()
    listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    assert fake.count("refresh_session") == 1 and fake.count("create_session") == 1
    refresh = times(fake, "refresh_session")[0]
    after = [t for t in times(fake, "get_message") if t > refresh]
    assert after and 4.0 <= after[0] - refresh <= 8.0  # backoff(2) with error_backoff 4: 4-8 s
    client.close()


def test_a_renewal_refused_for_bad_credentials_ends_the_run(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    # `client` already holds an admin token (it created the scale set): the run needs no new one.
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    # The refresh is refused, and renewing the admin token behind it is refused by GitHub.
    fake.inject("refresh_session", Fault.respond(401, "unauthorized", content_type="text/plain"))
    fake.inject_always("registration_token", Fault.respond(401, json_body={"message": "Bad credentials"}))
    scaler = RecordingScaler()
    with pytest.raises(sc.AuthenticationError):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert fake.count("refresh_session") == 1 and fake.count("get_message") == 1  # no retry of either


# -- opening the listener's own session ----------------------------------------------------------
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


# -- a 404 for the scale set while polling -------------------------------------------------------
@pytest.mark.parametrize("where", ["poll", "session renewal"])
@pytest.mark.parametrize("second_look", ["contradicts", "confirms"])
def test_a_scale_set_404_goes_on_or_ends_the_run_as_a_second_look_says(
        where: str, second_look: str, fake: FakeActionsService, clock: FakeClock,
        scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    if where == "poll":
        fake.inject("get_message", Fault.error(404, NOT_FOUND, "Runner scale set not found."))
    else:
        fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
        fake.inject("refresh_session", Fault.error(400, NOT_FOUND, "no such scale set"))
    if second_look == "confirms":
        fake.inject("get_runner_scale_set_by_id", Fault.error(404, NOT_FOUND, "no such scale set"))
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    if second_look == "confirms":
        with pytest.raises(sc.ScaleSetNotFoundError, match="no longer exists"):
            listener.run(scaler, until_idle=True)
        assert scaler.started == [] and fake.unacked(scale_set.id) != []
    else:
        listener.run(scaler, until_idle=True)
        assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    assert fake.count("get_runner_scale_set_by_id") == 1  # exactly one second look
    client.close()


def test_a_poll_404_whose_second_look_fails_is_looked_at_again_later(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.error(404, NOT_FOUND, "Runner scale set not found."), times=2)
    fake.inject("get_runner_scale_set_by_id", Fault.error(400, "SomethingElseException", "cannot say"))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.count("get_runner_scale_set_by_id") == 2
    client.close()


# -- a rate limit longer than one call may wait --------------------------------------------------
def test_a_long_rate_limit_on_the_poll_is_waited_out_whole_then_polling_resumes(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.respond(429, "slow down", headers={"Retry-After": "300"}))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [5]
    polls = times(fake, "get_message")
    # The hint plus up to 1 s of spread, then at once: not before, and not a backoff later.
    assert 300.0 <= polls[1] - polls[0] <= 302.0
    client.close()


# -- a message at the cursor ---------------------------------------------------------------------
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


# -- acknowledgements that fail ------------------------------------------------------------------
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


# -- user hooks that raise -----------------------------------------------------------------------
class RaisingMetrics:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
        self.calls.append("statistics")
        raise RuntimeError("metrics backend down")

    def record_job_started(self, job: sc.JobStarted) -> None:
        self.calls.append("job_started")
        raise RuntimeError("metrics backend down")


def test_metrics_hooks_that_raise_do_not_stop_delivery(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(2))
    metrics = RaisingMetrics()
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics).run(scaler, until_idle=True)
    assert scaler.started == [5, 6] and fake.unacked(scale_set.id) == []
    assert metrics.calls.count("job_started") == 2
    client.close()


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


# -- a state file that belongs to someone else ---------------------------------------------------
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


# -- a bounded run that spends its time standing by ----------------------------------------------
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


def test_a_bounded_run_whose_renewal_stands_by_ends_by_its_duration_without_error(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject_always("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    started = clock.monotonic()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    listener.run(RecordingScaler(), duration=100.0)
    refreshes = times(fake, "refresh_session")
    assert 3 <= len(refreshes) <= 5 and refreshes[-1] - started <= 100.0
    assert clock.monotonic() - started <= 100.0 + 2.0 and fake.count("get_message") == 1
    client.close()
