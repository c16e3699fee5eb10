"""Retries and hints as a caller sees them: a ``Retry-After`` (on a 429 or a 503) is waited out when
it is at most ``max_hint_wait`` and raised at once as ``RateLimitedError``, saying when to come back,
when longer; the gate it arms keeps later calls from sending. A 429 without a hint backs off with
its jitter. The retry budget ends retries once spent and is refilled only by first-try successes."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import client_with_retry, fake_with_draw, make_client, port_of

OP = "get_runner_scale_set"


def test_a_429_without_retry_after_is_waited_out_with_a_backoff(client: sc.Client, fake: FakeActionsService,
                                                                clock: FakeClock) -> None:
    fake.inject(OP, Fault.respond(429, json_body={"message": "slow down"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert fake.count(OP) == 2
    assert sum(clock.sleeps) > 0  # the retry came after a wait, not at once


def test_a_throttle_without_a_hint_backs_off_with_its_jitter_then_spreads_by_up_to_a_second() -> None:
    """A 429 with no Retry-After: the gate holds for the retry backoff with a 0.5-1.0 jitter
    (10 s x 0.995 at draw 0.99) plus a spread of up to 1 s (0.99): the retry comes 10.94 s later."""
    fake, clock = fake_with_draw(0.99)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=10.0))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(429, message="slow down"))
        assert client.get_runner_by_name("x") is None
        first, second = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert round(second - first, 3) == 10.94


def test_a_503_with_a_short_retry_after_is_retried_no_sooner_than_the_hint(client: sc.Client,
                                                                          fake: FakeActionsService,
                                                                          clock: FakeClock) -> None:
    fake.inject(OP, Fault.error(503, message="busy", headers={"Retry-After": "7"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert fake.count(OP) == 2
    assert sum(clock.sleeps) >= 7


class _NoJitterClock(FakeClock):
    """A fake clock whose jitter is always 0, so a wait lands exactly on a configured bound."""

    def random(self) -> float:
        return 0.0


def test_a_throttle_hint_of_exactly_the_longest_allowed_wait_is_waited_out(
        fake: FakeActionsService) -> None:
    """``max_hint_wait`` is the longest wait allowed, inclusive: a 429 asking for exactly that is
    slept out and the call goes through; it is not raised as RateLimitedError."""
    clock = _NoJitterClock()
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_hint_wait=2.0)))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bound"))
        fake.inject("get_runner_scale_set_by_id", Fault.respond(429, headers={"Retry-After": "2"}))
        assert client.get_runner_scale_set_by_id(scale_set.id) is not None
        assert fake.count("get_runner_scale_set_by_id") == 2
    finally:
        client.close()


def test_a_503_hint_of_exactly_max_hint_wait_is_waited_for() -> None:
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=0.5, max_hint_wait=3.0))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy", headers={"Retry-After": "3"}))
        assert client.get_runner_by_name("x") is None
        first, second = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert round(second - first, 3) == 3.0


def test_a_rate_limit_longer_than_a_call_may_wait_says_when_to_come_back(
        client: sc.Client, fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """Retry-After 600 is more than max_hint_wait (120): raised at once with retry_at in the
    future; a second call meets the held gate and sends nothing, with the same answer."""
    fake.inject("get_runner_scale_set_by_id", Fault.respond(429, json_body={"message": "slow"},
                                                            headers={"Retry-After": "600"}))
    with pytest.raises(sc.RateLimitedError) as first:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert first.value.retry_at is not None and 600.0 <= first.value.retry_at - clock.wall() <= 601.5
    with pytest.raises(sc.RateLimitedError) as second:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert second.value.retry_at is not None and 595.0 <= second.value.retry_at - clock.wall() <= 601.5
    assert "more than this call may wait" in str(second.value)
    assert fake.count("get_runner_scale_set_by_id") == 1


def test_a_throttle_longer_than_a_call_may_wait_is_raised_at_once_with_when_to_return(
        fake: FakeActionsService, clock: FakeClock) -> None:
    with make_client(fake, clock) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.respond(429, json_body={"message": "slow down"},
                                                        headers={"Retry-After": "600"}))
        with pytest.raises(sc.RateLimitedError) as first:
            client.get_runner_by_name("x")
        assert first.value.retry_after is not None and 600 < first.value.retry_after < 601  # + up to 1 s spread
        before = fake.count("get_runner_by_name")
        with pytest.raises(sc.RateLimitedError) as held:
            client.get_runner_by_name("x")  # the gate holds the origin: nothing is sent
        assert fake.count("get_runner_by_name") == before
        origin = f"http://127.0.0.1:{port_of(fake.servers['actions'].url)}"
        assert held.value.message.startswith(f"{origin} asked us to wait 60")
        assert held.value.message.endswith("s, more than this call may wait; retry after that"), held.value.message
        assert held.value.method == "GET" and held.value.url.startswith(origin + "/")


def test_a_hint_over_max_hint_wait_is_not_waited_even_when_the_call_has_the_time(fake: FakeActionsService,
                                                                                  clock: FakeClock) -> None:
    """max_hint_wait bounds every wait for a server hint on its own, not only with the deadline."""
    config = sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1000.0, max_hint_wait=120.0))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.respond(429, json_body={"message": "slow down"},
                                                        headers={"Retry-After": "600"}))
        with pytest.raises(sc.RateLimitedError):
            client.get_runner_by_name("x")
        with pytest.raises(sc.RateLimitedError):
            client.get_runner_by_name("x")  # the gate's 600 s hold: refused, not waited
        assert fake.count("get_runner_by_name") == 2


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


def test_a_call_refused_locally_by_a_long_throttle_says_it_was_not_sent(fake: FakeActionsService,
                                                                       clock: FakeClock) -> None:
    """The second call meets the gate the first call's 10-minute ``Retry-After`` armed: nothing is
    sent, and the error does not read as a failed request (no status was ever received)."""
    with make_client(fake, clock) as client:
        fake.inject("get_runner_by_name", Fault.error(429, message="slow down", headers={"Retry-After": "600"}))
        with pytest.raises(sc.RateLimitedError) as first:
            client.get_runner_by_name("x")
        with pytest.raises(sc.RateLimitedError) as second:
            client.get_runner_by_name("y")
    assert first.value.status == 429 and 'failed(status="429' in str(first.value)
    error = second.value
    assert error.status == 0 and fake.count("get_runner_by_name") == 1
    assert str(error) == f"request GET {error.url}: {error.message}"
    assert "asked us to wait" in error.message and error.retry_after is not None and error.retry_after > 590


def test_a_spent_retry_budget_ends_the_retries(fake: FakeActionsService, clock: FakeClock) -> None:
    client = client_with_retry(fake, clock, budget=1.0)
    try:
        fake.inject(OP, Fault.error(503, message="busy"), times=10)
        with pytest.raises(sc.RetryExhaustedError, match=r"retry budget .* is spent") as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.attempts == fake.count(OP)
        assert fake.count(OP) < 5  # fewer than max_attempts: the budget, not the attempt limit, ended it
    finally:
        client.close()


def test_a_spent_retry_budget_ends_the_call_and_says_so(fake: FakeActionsService, clock: FakeClock) -> None:
    config = sc.ResilienceConfig(retry=sc.RetryConfig(budget=1.0, max_attempts=5, backoff_base=0.01))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), times=3)
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
        origin = f"http://127.0.0.1:{port_of(fake.servers['actions'].url)}"
        assert str(info.value).startswith(f"get_runner_by_name gave up after 2 attempts: the retry budget for "
                                          f"{origin} is spent; last error: "), str(info.value)
        assert fake.count("get_runner_by_name") == 3  # the first call, then two attempts


def test_only_first_try_successes_refill_the_retry_budget(fake: FakeActionsService, clock: FakeClock) -> None:
    """A success earns back part of the retry budget only when it needed no retry: a retried
    success already cost a token, so letting it earn would let a flapping service keep the
    budget topped up. Seen as which 503s are retried (a second request at the fake) and which
    are raised at once (the budget is empty)."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(budget=1.0)))
    try:
        assert client.get_runner_scale_set(1, "absent") is None  # the admin token is fetched here

        def fails_once() -> None:
            fake.inject(OP, Fault.error(503, message="busy"))

        fails_once()  # the one retry the budget holds: spent, and the retried success earns nothing
        before = fake.count(OP)
        assert client.get_runner_scale_set(1, "absent") is None
        assert fake.count(OP) == before + 2
        for _ in range(4):  # four first-try successes earn 4 x 0.2: still less than one retry
            assert client.get_runner_scale_set(1, "absent") is None
        fails_once()
        before = fake.count(OP)
        with pytest.raises(sc.ServerError) as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.status == 503 and fake.count(OP) == before + 1  # not retried: the budget is empty
        assert client.get_runner_scale_set(1, "absent") is None  # the fifth first-try success
        fails_once()
        before = fake.count(OP)
        assert client.get_runner_scale_set(1, "absent") is None  # retried again: the budget earned one back
        assert fake.count(OP) == before + 2
    finally:
        client.close()
