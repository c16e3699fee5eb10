"""The listener's remaining paths, each seen from outside: the requests at the fake, the scaler's
calls, the error raised. A listener built from the wrong things; a session that carries no
statistics; a stop that cuts the opening or the renewal of a session; a poll refused for bad
credentials; our stale session whose delete fails; a refusing broker back during a backoff.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until
from .test_listener import RecordingScaler, Running, job, stats

_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"
CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "scaleset_client._listener" and r.levelno >= logging.WARNING]


# -- construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["config", "session", "scale set"])
def test_a_listener_built_from_the_wrong_things_is_a_config_error_that_sends_nothing(
        wrong: str, client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    sent = fake.count()
    source: Any = session
    config: Any = sc.ListenerConfig(scale_set.id, 3)
    if wrong == "config":
        config, match = {"scale_set_id": scale_set.id, "max_runners": 3}, "must be a ListenerConfig"
    elif wrong == "session":
        source, match = fake.config_url, "takes a MessageSession or a Client"
    else:
        config, match = sc.ListenerConfig(scale_set.id + 1, 3), f"the session is for scale set {scale_set.id}"
    with pytest.raises(sc.ConfigError, match=match):
        sc.Listener(source, config)
    assert fake.count() == sent  # refused before anything was sent
    session.close()


# -- a session that carries no statistics ------------------------------------------------------
def test_a_session_without_statistics_applies_no_count_until_a_message_brings_one(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    # The service's answer to create_session lacks `statistics` (protocol: unconfirmed that it is
    # always there). The queue behind it is a real one of the fake's, opened by another client.
    opener = make_client(fake, clock)
    real = opener.message_session(scale_set.id).session
    fake.inject("create_session", Fault.respond(200, json_body={
        "sessionId": real.session_id, "ownerName": "listener", "messageQueueUrl": real.message_queue_url,
        "messageQueueAccessToken": real.message_queue_access_token}))
    fake.push_message(scale_set.id, [job("JobAvailable", 7), job("JobStarted", 5)], statistics=None)
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(2))
    client = make_client(fake, clock)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    # Nothing known before the second message: no count was guessed for the first.
    assert scaler.started == [5, 6] and scaler.desired == [2]
    assert fake.count("acquire_jobs") == 1 and fake.unacked(scale_set.id) == []
    client.close()
    opener.close()


# -- a stop that cuts a session call in flight -------------------------------------------------
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


def test_a_stop_while_a_session_is_being_renewed_ends_the_run_quietly(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.hang())
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    running = Running(listener, scaler)
    wait_until(lambda: fake.count("refresh_session") == 1)
    caplog.clear()
    running.finish()
    fake.release_hangs()
    assert running.error is None
    assert fake.count("refresh_session") == 1 and fake.count("get_message") == 1  # no retry after the stop
    assert fake.count("delete_session") == 1 and fake.session_of(scale_set.id) is None  # still cleaned up
    assert warnings(caplog) == []  # our own stop is not a failure to report
    client.close()


# -- a poll refused for bad credentials --------------------------------------------------------
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


# -- our stale session, whose delete fails -----------------------------------------------------
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


# -- a refusing broker that comes back during a backoff ----------------------------------------
class BrokerBackAt(FakeClock):
    """Virtual time that restarts the broker when it reaches ``at`` seconds from now."""

    def __init__(self, fake: FakeActionsService, at: float) -> None:
        super().__init__()
        self.fake, self.at, self.back = fake, self.monotonic() + at, False

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        woken = super().sleep(seconds, interrupt)
        if not self.back and self.monotonic() >= self.at:
            self.back = True
            self.fake.start_server("broker")
        return woken


def test_a_backoff_after_a_refused_poll_ends_at_the_look_that_finds_the_broker_back(
        fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    clock = BrokerBackAt(fake, at=3.0)
    fake.clock = clock
    # One attempt per poll, and the first refusal opens the broker's circuit.
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=1),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0,
                                                max_open_duration=300.0)))
    fake.stop("broker")
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    started = clock.monotonic()
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=60.0)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    first_poll_served = times(fake, "get_message")[0]
    # The backoff would last 30-60 s and the break 300 s; a TCP look (due every 5-15 s) ends it.
    assert clock.at <= first_poll_served < started + 30.0
    client.close()


# -- pauses and skips an outside observer can time ---------------------------------------------
def test_a_message_the_scaler_failed_on_comes_again_only_after_a_pause(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    failed: list[int] = []

    def fail_once(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if not failed:
            failed.append(request_id)
            raise RuntimeError("runner backend hiccup")

    scaler = RecordingScaler(fail_once)
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0)).run(scaler, until_idle=True)
    assert failed == [5] and scaler.started == [5] and fake.unacked(scale_set.id) == []
    first, second = times(fake, "get_message")[:2]  # both delivered the message
    assert second - first >= 2.0  # backoff(1) with error_backoff 4 is 2-4 s: not polled again at once


def test_a_bounded_run_whose_broker_is_known_down_past_its_end_sends_nothing_and_says_when_to_retry(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=1),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0,
                                                max_open_duration=300.0, jitter=0.0)))
    session = client.message_session(scale_set.id)
    fake.stop("broker")
    with pytest.raises(sc.TransientError):
        session.get_message(0, 1)  # refused: the broker's circuit opens for 300 s
    session.close()
    fake.clear_log()
    with pytest.raises(sc.RunSkippedError, match="known down") as info:
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), duration=60.0)
    skipped = info.value
    assert fake.count() == 0  # not even a session was asked for
    assert skipped.retry_after is not None and 60.0 < skipped.retry_after <= 300.0
    assert skipped.retry_at == pytest.approx(clock.wall() + skipped.retry_after, abs=1.0)
    client.close()


# -- found by the listener's mutation sample (session 4) ------------------------------------------
def test_max_runners_reads_back_what_was_set(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    assert listener.max_runners == 5
    listener.set_max_runners(9)
    assert listener.max_runners == 9


def test_a_message_is_handed_over_poison_after_times_before_it_is_set_aside(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    bad = fake.push_message(scale_set.id, [job("JobCompleted", 1)], statistics=stats(0))
    calls: list[int] = []
    poisoned: list[int] = []

    def broken(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        calls.append(request_id)
        raise ValueError("cannot handle this one")

    scaler = RecordingScaler(broken)
    config = sc.ListenerConfig(scale_set.id, 5, poison_after=3, on_poison=lambda mid, exc: poisoned.append(mid))
    running = Running(sc.Listener(client, config), scaler)
    wait_until(lambda: poisoned == [bad])
    running.finish()
    assert calls == [1, 1, 1]  # three tries, then set aside and acknowledged
    assert fake.unacked(scale_set.id) == []
