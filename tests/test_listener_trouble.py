"""How a listener meets trouble on a poll, seen at the fake (when the next poll comes, whether the
run ends) and in what it raises: a 404 for a scale set that exists or is really gone, a rate
limit longer than a call may wait, a poll refused for bad credentials.
"""

from __future__ import annotations

import logging
from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, Running, fake_with_draw, job, make_client, stats, wait_until

_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"


SCALE_SET_GONE = _T.format("RunnerScaleSetNotFoundException")


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


CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


NOT_FOUND = _T.format("RunnerScaleSetNotFoundException")


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


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


def test_a_poll_refused_for_bad_credentials_ends_the_run_with_the_error(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    # The queue turns the token away; the refresh behind it is refused, and so is the admin token
    # that would renew it.
    fake.inject("get_message", Fault.respond(401, "Session expired", content_type="text/plain"))
    fake.inject_always("refresh_session", Fault.respond(401, "unauthorized", content_type="text/plain"))
    fake.inject_always("registration_token", Fault.respond(401, json_body={"message": "Bad credentials"}))
    scaler = RecordingScaler()
    with pytest.raises(sc.AuthenticationError):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [] and fake.unacked(scale_set.id) != []
    assert fake.count("get_message") == 1  # the permanent error is not retried


def test_a_failed_poll_and_a_refused_circuit_are_logged_with_what_happens_next(
        low: tuple[FakeActionsService, FakeClock], caplog: pytest.LogCaptureFixture) -> None:
    """An operator reading the log sees each failed poll (how many in a row, and the error) as a
    warning, and a poll a break refused with how long the listener waits for it."""
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
        fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
        fake.inject("get_message", Fault.error(400, message="bad poll"))  # not retried by the client

        def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
            client.circuit_breakers.force_open(duration=100.0, operation_class="long_poll")

        with caplog.at_level(logging.INFO, logger="scaleset_client._listener"):
            sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(hook), until_idle=True)
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name.split(".")[:2] == ["scaleset_client", "_listener"]]
    assert any(level == logging.WARNING and text.startswith("poll failed (1 in a row): ") and "bad poll" in text
               for level, text in said), said
    assert any(level == logging.INFO and text.endswith("; waiting 100.0s") for level, text in said), said
