"""Branch coverage of the resilience adapter (issue 12), observed at the fake service (requests
it received) and by the caller (what it got back or was raised, what was logged)."""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client

OP = "get_runner_scale_set"


def _resilient(fake: FakeActionsService, clock: FakeClock, **retry: float) -> sc.Client:
    config = sc.ResilienceConfig(retry=sc.RetryConfig(**retry))  # type: ignore[arg-type]
    return make_client(fake, clock, resilience=config)


def test_each_answer_is_logged_at_debug_with_its_attempt(client: sc.Client, fake: FakeActionsService,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scaleset_client._adapter")
    fake.inject(OP, Fault.error(503, message="busy"))
    assert client.get_runner_scale_set(1, "absent") is None
    lines = [r.getMessage() for r in caplog.records if r.name == "scaleset_client._adapter"]
    assert any("-> 503 (attempt 1, get_runner_scale_set)" in line for line in lines)
    assert any("-> 200 (attempt 2, get_runner_scale_set)" in line for line in lines)
    assert fake.count(OP) == 2


def test_a_call_on_a_closed_client_is_refused_before_anything_is_sent(fake: FakeActionsService,
                                                                      clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.close()
    before = fake.count()
    with pytest.raises(sc.CallCancelledError, match="the client is closed") as info:
        client.get_runner_scale_set(1, "absent")
    assert info.value.delivered is False
    assert fake.count() == before


def test_a_429_without_retry_after_is_waited_out_with_a_backoff(client: sc.Client, fake: FakeActionsService,
                                                                clock: FakeClock) -> None:
    fake.inject(OP, Fault.respond(429, json_body={"message": "slow down"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert fake.count(OP) == 2
    assert sum(clock.sleeps) > 0  # the retry came after a wait, not at once


def test_a_503_with_a_short_retry_after_is_retried_no_sooner_than_the_hint(client: sc.Client,
                                                                          fake: FakeActionsService,
                                                                          clock: FakeClock) -> None:
    fake.inject(OP, Fault.error(503, message="busy", headers={"Retry-After": "7"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert fake.count(OP) == 2
    assert sum(clock.sleeps) >= 7


def test_a_spent_retry_budget_ends_the_retries(fake: FakeActionsService, clock: FakeClock) -> None:
    client = _resilient(fake, clock, budget=1.0)
    try:
        fake.inject(OP, Fault.error(503, message="busy"), times=10)
        with pytest.raises(sc.RetryExhaustedError, match=r"retry budget .* is spent") as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.attempts == fake.count(OP)
        assert fake.count(OP) < 5  # fewer than max_attempts: the budget, not the attempt limit, ended it
    finally:
        client.close()


def test_retries_stop_when_the_calls_own_deadline_would_pass(fake: FakeActionsService, clock: FakeClock) -> None:
    client = _resilient(fake, clock, deadline=3.0, max_attempts=50, budget=0.0)
    try:
        fake.inject_always(OP, Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError, match="the call's 3s deadline would pass") as info:
            client.get_runner_scale_set(1, "absent")
        assert 1 < info.value.attempts == fake.count(OP) < 50
    finally:
        client.close()


def test_a_reachability_check_of_an_origin_back_without_an_open_breaker_probes_nothing(
        fake: FakeActionsService, clock: FakeClock) -> None:
    client = _resilient(fake, clock, max_attempts=1)
    origin = fake.servers["actions"].url
    try:
        client.get_runner_scale_set(1, "absent")  # the admin token is fetched; the origin is known good
        fake.stop("actions")
        with pytest.raises(sc.TransportError) as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.delivered is False  # refused: the origin is now unreachable
        assert client.check_reachable(origin, timeout=0) is False  # no time to look
        assert client.check_reachable(origin) is False  # still down: the connect is refused
        fake.start_server("actions")
        before = fake.count()
        assert client.check_reachable(origin) is False  # back, but no breaker was open to probe
        assert fake.count() == before  # a bare TCP connect: no HTTP request reached the service
        assert client.get_runner_scale_set(1, "absent") is None
    finally:
        client.close()


def test_a_call_behind_a_gate_armed_longer_than_it_may_wait_is_refused_without_sending(
        client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject(OP, Fault.respond(429, json_body={"message": "slow down"}, headers={"Retry-After": "600"}))
    with pytest.raises(sc.RateLimitedError):
        client.get_runner_scale_set(1, "absent")
    assert fake.count(OP) == 1
    with pytest.raises(sc.RateLimitedError, match="asked us to wait") as info:
        client.get_runner_scale_set(1, "absent")
    assert info.value.retry_after is not None and info.value.retry_after >= 600
    assert fake.count(OP) == 1  # the second call waited for nothing and sent nothing
