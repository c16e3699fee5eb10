"""Breakers, health and recovery over real sockets: what a supervisor and an outage see."""

from __future__ import annotations

import threading

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, run_together

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


def test_sixty_four_threads_at_the_half_open_edge_send_one_probe(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=ONE_SHOT, pool_maxsize=64)
    client.get_runner_by_name("warm")
    fake.inject("get_runner", Fault.respond(503), times=3)
    for _ in range(3):
        with pytest.raises(sc.APIError):
            client.get_runner(1)
    clock.advance(5.0)  # the break is over: the next caller probes
    fake.clear_log()
    fake.inject("get_runner", Fault.delay(2.0))  # the probe is slow; everyone else arrives meanwhile
    outcomes = ["refused" if isinstance(r, sc.CircuitOpenError) else "sent"
                for r in run_together(64, lambda: client.get_runner(1))]
    assert fake.count("get_runner") == 1
    assert outcomes.count("sent") == 1 and outcomes.count("refused") == 63
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


def test_recover_wakes_a_call_waiting_out_a_break() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token, resilience=sc.ResilienceConfig(
            retry=sc.RetryConfig(max_attempts=3, backoff_base=0.01, backoff_max=0.02),
            circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=30.0, max_open_duration=30.0)))
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.respond(503))  # trips: the retry now waits ~30 s
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(client.get_runner_by_name("x")))
        waiter.start()
        deadline = threading.Event()
        while fake.count("get_runner_by_name") < 2 and not deadline.wait(0.01):
            pass
        deadline.wait(0.2)  # the call is now inside its wait for the break to end
        client.recover(force=True)
        waiter.join(timeout=5)
        assert not waiter.is_alive() and result == [None]  # woken, probed, succeeded
        client.close()
