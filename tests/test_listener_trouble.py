"""How a listener meets each kind of trouble on a poll, seen at the fake (when the next poll comes,
what is acknowledged), the scaler, the state file and the error a run ends with. With
``FakeClock(draw=0.0)`` a backoff is exactly half its step (``error_backoff`` 100 s: 50, 100 s)
and with ``draw=0.99`` a throttle's spread is its widest; every pause is exact, not a range."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import fake_with_draw, make_client
from .test_listener import RecordingScaler, job, stats

_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"
SCALE_SET_GONE = _T.format("RunnerScaleSetNotFoundException")
SESSION_EXPIRED = _T.format("RunnerScaleSetSessionExpiredException")
SESSION_GONE = _T.format("RunnerAdminException")


def _gaps(fake: FakeActionsService) -> list[float]:
    times = [r.time for r in fake.requests("get_message")]
    return [round(b - a, 3) for a, b in pairwise(times)]


def _config(scale_set: sc.RunnerScaleSet, **kwargs: object) -> sc.ListenerConfig:
    return sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0, **kwargs)  # type: ignore[arg-type]


def test_a_scale_set_404_for_a_scale_set_that_exists_is_asked_again_then_waited_out(
        low: tuple[FakeActionsService, FakeClock]) -> None:
    """404s have been seen during GitHub incidents for scale sets that exist: the listener looks
    the scale set up, finds it, and polls again after one backoff step."""
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        fake.inject("get_message", Fault.error(404, SCALE_SET_GONE, "scale set not found"))
        sc.Listener(client, _config(scale_set)).run(RecordingScaler(), until_idle=True)
    assert fake.count("get_runner_scale_set_by_id") == 1 and _gaps(fake) == [50.0]


def test_a_scale_set_that_is_really_gone_ends_the_run_saying_what_to_do(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(404, SCALE_SET_GONE, "scale set not found"))

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            client.delete_runner_scale_set(scale_set.id)  # after the session opened, before the poll
            return super().handle_desired_runner_count(count)

    with pytest.raises(sc.ScaleSetNotFoundError) as info:
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(Scaler(), until_idle=True)
    assert info.value.message == (f"scale set {scale_set.id} no longer exists (deleted, or removed by GitHub "
                                  "after being offline): create it again or fix the id; the listener stops. "
                                  "(scale set not found)")
    client.close()


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


def test_a_throttle_longer_than_a_call_may_wait_is_waited_out_to_the_second() -> None:
    """Retry-After: 300 (over max_hint_wait): the call gives up at once; the listener waits until
    its retry_at (the hint plus the gate's spread, 0.99 s at the widest draw) and polls then, not
    earlier and not a poll interval later."""
    fake, clock = fake_with_draw(0.99)
    with fake, make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        fake.inject("get_message", Fault.error(429, message="slow down", headers={"Retry-After": "300"}))
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), until_idle=True)
        assert _gaps(fake) == [300.99]


def test_a_session_the_queue_says_expired_is_renewed_and_named_in_the_state_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    fake.inject("get_message", Fault.error(404, SESSION_EXPIRED, "session expired"))
    fake.inject("refresh_session", Fault.error(404, SESSION_GONE, "no such session"))  # so a new one is made
    named: list[tuple[str, str]] = []
    first: list[str] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            first.append(listener.health().session_id)
            return super().handle_desired_runner_count(count)


    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        named.append((json.loads(state.read_text())["session_id"], listener.health().session_id))

    scaler = Scaler(hook)
    listener.run(scaler, until_idle=True)
    assert scaler.started == [1] and fake.count("create_session") >= 2  # ours, then the new one
    (in_file, open_now), = named
    assert in_file == open_now != first[0]
    client.close()


CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


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
