"""Breakers, health and recovery over real sockets: what a supervisor and an outage see."""

from __future__ import annotations

import threading

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client

ONE_SHOT = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1),
                               circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, jitter=0.0))


def test_dead_broker_trips_only_the_broker_while_tokens_still_renew(fake: FakeActionsService,
                                                                    clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=ONE_SHOT)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    session = client.message_session(scale_set.id)
    fake.stop("broker")
    for _ in range(3):
        with pytest.raises(sc.TransportError):
            session.get_message(0, 1)
    with pytest.raises(sc.CircuitOpenError) as info:
        session.get_message(0, 1)
    assert info.value.origin == client.origin(fake.queue_url) and info.value.retry_after == pytest.approx(5.0)
    clock.advance(590)  # the admin token must be renewed on the GitHub API now
    assert client.get_runner_by_name("x") is None
    assert client.admin_token_refreshes == 2
    states = client.circuit_breakers.states()
    assert states[f"{client.origin(fake.queue_url)} long_poll"] == "half_open"  # the break is over: next call probes
    assert {v for k, v in states.items() if "long_poll" not in k} == {"closed"}
    components = client.health().components
    assert (components["broker"].status, components["github_api"].status, components["actions_service"].status) == (
        "degraded", "ok", "ok")
    session.close()
    client.close()


def test_health_reports_the_open_broker_with_its_retry_time(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=ONE_SHOT)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    session = client.message_session(scale_set.id)
    assert client.is_healthy()
    fake.stop("broker")
    for _ in range(3):
        with pytest.raises(sc.TransportError):
            session.get_message(0, 1)
    clock.advance(1.5)  # past the health cache
    report = client.health()
    broker = report.components["broker"]
    assert not report.healthy and report.status == "down" and broker.status == "down"
    assert broker.retry_at is not None and broker.retry_at > clock.wall()
    assert report.components["actions_service"].status == "ok" and "broker" in report.reason
    fake.start_server("broker")
    clock.advance(5.0)
    assert session.get_message(0, 1) is None  # the probe succeeds and closes the circuit
    clock.advance(1.5)
    assert client.is_healthy()
    session.close()
    client.close()


def test_a_retry_waits_out_the_break_instead_of_failing(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=2, jitter=0.0)))
    client.get_runner_by_name("warm")
    fake.inject("get_runner_by_name", Fault.respond(503), Fault.respond(503))
    assert client.get_runner_by_name("x") is None  # 2 failures trip it; the retry waits 5 s and probes
    assert fake.count("get_runner_by_name") == 4
    assert client.circuit_breakers.states()[f"{client.origin(fake.actions_url)} admin"] == "closed"
    client.close()


def test_force_open_refuses_without_sending_and_reset_restores(client: sc.Client, fake: FakeActionsService) -> None:
    client.get_runner_by_name("warm")
    origin = client.origin(fake.actions_url)
    client.circuit_breakers.force_open(origin)
    sent = fake.count()
    with pytest.raises(sc.CircuitOpenError) as info:
        client.get_runner_by_name("x")
    assert info.value.retry_after is None and fake.count() == sent
    client.circuit_breakers.reset(origin)
    assert client.get_runner_by_name("x") is None


def test_recover_drops_connections_renews_credentials_and_sessions(client: sc.Client, fake: FakeActionsService,
                                                                   scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    tokens, refreshes = fake.count("registration_token"), fake.count("refresh_session")
    report = client.recover()
    assert fake.count("registration_token") == tokens + 1 and fake.count("refresh_session") == refreshes + 1
    assert "renewed the admin token" in report.actions
    # Never a silent no-op: a second recover right after the first does the work again.
    again = client.recover()
    assert fake.count("registration_token") == tokens + 2 and fake.count("refresh_session") == refreshes + 2
    assert any("session" in action for action in again.actions)
    fake.inject("registration_token", Fault.respond(401, json_body={"message": "revoked"}))
    with pytest.raises(sc.RecoveryError, match="revoked"):
        client.recover()
    session.close()


def test_resilience_state_survives_a_new_process(fake: FakeActionsService, clock: FakeClock) -> None:
    import json

    first = make_client(fake, clock, resilience=ONE_SHOT)
    first.get_runner_by_name("warm")
    fake.stop("actions")
    for _ in range(3):
        with pytest.raises(sc.TransportError):
            first.get_runner_by_name("x")
    saved = json.loads(json.dumps(first.export_resilience_state()))  # what a state file would hold
    first.close()
    assert fake.token not in json.dumps(saved)
    clock.advance(1.0)
    second = make_client(fake, clock, resilience=ONE_SHOT)
    second.import_resilience_state(saved)
    fake.clear_log()
    with pytest.raises(sc.CircuitOpenError) as info:
        second.get_runner_by_name("x")
    assert info.value.retry_after == pytest.approx(4.0) and fake.count(server="actions") == 0
    assert fake.count("runner_registration") == 1  # the GitHub API, up all along, was still used
    second.close()


class _SleepWatchingClock(sc.SystemClock):
    """The real clock, but a test can wait until some thread is inside a long interruptible sleep."""

    def __init__(self, longer_than: float) -> None:
        super().__init__(seed=1)
        self._longer_than = longer_than
        self.long_sleep_started = threading.Event()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        if seconds > self._longer_than and interrupt is not None:
            self.long_sleep_started.set()
        return super().sleep(seconds, interrupt)


def test_recover_wakes_a_call_waiting_out_a_break() -> None:
    clock = _SleepWatchingClock(longer_than=10.0)
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token, clock=clock, resilience=sc.ResilienceConfig(
            retry=sc.RetryConfig(max_attempts=3, backoff_base=0.01, backoff_max=0.02),
            circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=30.0, max_open_duration=30.0)))
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.respond(503))  # trips: the retry now waits ~30 s
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(client.get_runner_by_name("x")), daemon=True)
        waiter.start()
        # The condition, not a guess: the call is inside its wait for the 30 s break to end.
        assert clock.long_sleep_started.wait(timeout=10)
        assert fake.count("get_runner_by_name") == 2
        client.recover(force=True)
        waiter.join(timeout=10)  # far less than the 30 s break: only the wake-up ends the wait this soon
        assert not waiter.is_alive() and result == [None]  # woken, probed, succeeded
        assert fake.count("get_runner_by_name") == 3
        client.close()


SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


_NEUTRAL_ANSWERS = [
    Fault.respond(429, json_body={"message": "slow down"}, headers={"Retry-After": "1"}),
    Fault.respond(403, json_body={"message": "API rate limit exceeded"},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
    Fault.respond(403, json_body={"message": SECONDARY}),
    Fault.respond(401, json_body={"message": "Bad credentials"}),
    Fault.respond(403, json_body={"message": "Must have admin rights"}),
    Fault.respond(400, json_body={"message": "bad request"}),
    Fault.respond(404, json_body={"message": "Not Found"}),
    Fault.respond(409, json_body={"message": "conflict"}),
    Fault.respond(422, json_body={"message": "unprocessable"}),
]


@pytest.mark.parametrize("answer", _NEUTRAL_ANSWERS, ids=lambda f: f"{f.status}-{f.body[:24]!r}")
def test_throttles_auth_failures_and_4xx_never_trip_the_breaker(fake: FakeActionsService, clock: FakeClock,
                                                               answer: Fault) -> None:
    client = make_client(fake, clock, resilience=ONE_SHOT)
    client.get_runner_by_name("warm")
    fake.clear_log()
    fake.inject_always("get_runner", answer)
    for _ in range(6):  # twice the failure threshold
        with pytest.raises(sc.ScalesetError) as info:
            client.get_runner(1)
        assert not isinstance(info.value, sc.CircuitOpenError)
        clock.advance(4000)  # past any rate-limit hold, so the next call is sent too
    assert fake.count("get_runner") >= 6  # every call was sent, none refused by a breaker
    assert set(client.circuit_breakers.states().values()) == {"closed"}
    fake.inject_always("get_runner", Fault.respond(503))  # the control: real failures do trip it
    for _ in range(3):
        with pytest.raises(sc.APIError):
            client.get_runner(1)
    assert client.circuit_breakers.states()[f"{client.origin(fake.actions_url)} admin"] == "open"
    client.close()


@pytest.mark.parametrize("status", [501, 400, 403, 404, 409, 422])
def test_501_and_4xx_are_sent_once_while_other_5xx_are_retried(client: sc.Client, fake: FakeActionsService,
                                                               status: int) -> None:
    client.get_runner_by_name("warm")
    fake.inject("get_runner", Fault.respond(status, json_body={"message": "no"}))
    with pytest.raises(sc.APIError):
        client.get_runner(1)
    assert fake.count("get_runner") == 1
    fake.inject("get_runner", Fault.respond(503))  # the control: a 503 once, then the fake's real answer
    with pytest.raises(sc.APIError):  # runner 1 does not exist: the retry reached the fake's 404
        client.get_runner(1)
    assert fake.count("get_runner") == 3
