"""Adapter promises the session-4 mutation run left unpinned, seen from outside: what a caller is
raised (its class and words), and when requests reach the fake. ``FakeClock(draw=0.99)`` makes
every jitter its widest, so a pause is known without depending on the seed."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import WatchedClock, fake_with_draw, make_client, wait_until
from .test_deadlines import Outcome

HOUR = 3600.0


@pytest.fixture
def wide() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    fake, clock = fake_with_draw(0.99)
    with fake:
        yield fake, clock


@pytest.mark.timeout(30)
def test_a_call_waiting_out_a_throttle_when_the_client_closes_names_itself_and_the_throttle(
        fake: FakeActionsService) -> None:
    """Not in flight (the 429 was read; the call waits out its hint): the error says which call
    the close ended and what it was waiting for, and that nothing was sent since."""
    client = sc.Client(fake.config_url, token=fake.token)
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(429, message="slow down", headers={"Retry-After": "30"}))
        outcome = Outcome(lambda: client.get_runner_by_name("x"))
        wait_until(lambda: bool(client.export_resilience_state()["gates"]))  # the hint is being waited out
        client.close()
        outcome.join(limit=10.0)
    finally:
        client.close()
    error = outcome.error
    assert isinstance(error, sc.CallCancelledError), error
    assert isinstance(error.__cause__, sc.RateLimitedError)
    assert str(error) == f"GET {error.url}: the client was closed; last error: {error.__cause__}"
    assert "agentName=x" in error.url and error.delivered is False
    assert fake.count("get_runner_by_name") == 2  # the warm-up and the 429: no retry after the close


def test_retries_that_would_outlast_the_call_deadline_say_so(
        wide: tuple[FakeActionsService, FakeClock]) -> None:
    """Backoffs of 2.97 s, then 5.94 s, then 11.9 s against a 10 s deadline: the third would pass it."""
    fake, clock = wide
    config = sc.ResilienceConfig(retry=sc.RetryConfig(deadline=10.0, backoff_base=3.0, max_attempts=10))
    with make_client(fake, clock, resilience=config) as client:
        fake.inject_always("get_runner_by_name", Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
    assert fake.count("get_runner_by_name") == 3
    assert str(info.value) == ("get_runner_by_name gave up after 3 attempts: the call's 10s deadline would pass; "
                               f"last error: {info.value.last_error}")
    times = [r.time for r in fake.requests("get_runner_by_name")]
    assert [round(b - a, 2) for a, b in pairwise(times)] == [2.97, 5.94]


@pytest.mark.timeout(30)
def test_a_body_still_arriving_when_the_call_deadline_comes_is_a_deadline_not_a_slow_attempt(
        fake: FakeActionsService) -> None:
    """The call's 2 s run out before one attempt's connect + read timeouts (2 + 5 s) would: the
    caller is told the deadline passed, and the traceback's cause is not a "slow attempt" (which
    is what a body still arriving after the attempt's own 7 s would be, and would be retried)."""
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, 5.0),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=2.0)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.drip(0.2, size=1000))  # 200 s of body, a byte at a time
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join(limit=20.0)
    finally:
        client.close()
    error = outcome.error
    assert isinstance(error, sc.RetryExhaustedError), error
    assert str(error) == "get_runner_by_name gave up after 1 attempts: the call's 2s deadline passed"
    assert "still arriving" not in str(error.__cause__)  # the traceback shows what cut the body: the deadline
    assert fake.count("get_runner_by_name") == 2  # no retry


@pytest.mark.timeout(60)
def test_a_slow_attempt_is_retried_after_a_backoff_not_at_once(
        wide: tuple[FakeActionsService, FakeClock]) -> None:
    """An attempt that outlives its connect + read timeouts (a dripped body) is retried like any
    transient failure: after the backoff (fake time), on a fresh connection, and the retry's
    answer is the call's."""
    fake, clock = wide
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=10.0))
    client = make_client(fake, clock, timeout=(1.0, 1.0), resilience=config)
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.drip(0.2, size=1000))
        assert client.get_runner_by_name("x") is None
    finally:
        client.close()
    first, second = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert second - first > 9.8  # the backoff of retry 1: 10 s x 0.99


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


def test_a_call_deadline_too_short_for_any_attempt_sends_nothing_and_says_so(fake: FakeActionsService,
                                                                           clock: FakeClock) -> None:
    config = sc.ResilienceConfig(retry=sc.RetryConfig(deadline=0.1))  # under the 0.25 s an attempt needs
    with make_client(fake, clock, resilience=config) as client:
        before = fake.count()
        with pytest.raises(sc.DeadlineExceededError) as info:
            client.get_runner_by_name("x")
    assert str(info.value) == f"POST {info.value.url}: the call's deadline passed"  # the registration token
    assert info.value.delivered is False and fake.count() == before


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


def test_a_backoff_that_leaves_exactly_the_minimum_attempt_time_is_not_taken() -> None:
    """A 503, then a backoff of 2 s (4 s x 0.5) against a 2.25 s deadline: 2 s + the 0.25 s an
    attempt needs reaches the deadline exactly, so the call gives up after the one attempt."""
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=4.0, deadline=2.25))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"))
        with pytest.raises(sc.ServerError):
            client.get_runner_by_name("x")
        assert fake.count("get_runner_by_name") == 2  # the warm-up and the one attempt


def test_a_throttle_hold_that_leaves_exactly_the_minimum_attempt_time_is_refused() -> None:
    """Retry-After: 2 plus a 0.5 s spread (draw 0.5) is a 2.5 s hold against a 2.75 s deadline:
    the hold plus the 0.25 s an attempt needs reaches the deadline exactly: refused, not waited."""
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(deadline=2.75))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(429, message="slow down", headers={"Retry-After": "2"}))
        with pytest.raises(sc.RateLimitedError) as info:
            client.get_runner_by_name("x")
        assert fake.count("get_runner_by_name") == 2 and info.value.status == 429


def _breaker_client(fake: FakeActionsService, clock: FakeClock, deadline: float = 120.0) -> sc.Client:
    """Two failures open the breaker for exactly 4 s; retries back off 0.25 s, then 0.5 s (draw 0.5)."""
    config = sc.ResilienceConfig(
        retry=sc.RetryConfig(backoff_base=0.5, deadline=deadline),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=2, open_duration=4.0, jitter=0.0))
    return make_client(fake, clock, resilience=config)


def test_a_call_that_opened_the_breaker_waits_the_break_out_plus_a_spread_then_probes() -> None:
    """Opened at the second 503; after the 0.5 s backoff 3.5 s of break are left: the call waits
    them, plus 0.05 s, plus a spread of up to 0.5 s (0.25 at draw 0.5), and its probe succeeds."""
    fake, clock = fake_with_draw(0.5)
    with fake, _breaker_client(fake, clock) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.error(503, message="busy"))
        assert client.get_runner_by_name("x") is None
        times = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert [round(b - a, 3) for a, b in pairwise(times)] == [0.25, 4.3]


def test_a_break_that_leaves_exactly_the_minimum_attempt_time_is_not_waited_for() -> None:
    """As above with a 4.5 s deadline: when the call meets the break, 3.75 s are left, exactly the
    3.5 s of break plus the 0.25 s an attempt needs: it gives up instead of waiting."""
    fake, clock = fake_with_draw(0.5)
    with fake, _breaker_client(fake, clock, deadline=4.5) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.error(503, message="busy"))
        with pytest.raises(sc.CircuitOpenError):
            client.get_runner_by_name("x")
        assert fake.count("get_runner_by_name") == 3  # the warm-up and the two 503s


def test_a_503_hint_of_exactly_max_hint_wait_is_waited_for() -> None:
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=0.5, max_hint_wait=3.0))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy", headers={"Retry-After": "3"}))
        assert client.get_runner_by_name("x") is None
        first, second = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert round(second - first, 3) == 3.0


def test_a_break_of_exactly_max_hint_wait_is_waited_out() -> None:
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(
        retry=sc.RetryConfig(backoff_base=0.5, max_hint_wait=3.5),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=2, open_duration=4.0, jitter=0.0))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.error(503, message="busy"))
        assert client.get_runner_by_name("x") is None  # the 3.5 s left of the break are waited out
        assert fake.count("get_runner_by_name") == 4


def test_a_caller_scope_ending_with_the_calls_own_deadline_is_the_calls_deadline() -> None:
    """A ``client.deadline(2.25)`` scope that ends exactly when the call's own 2.25 s deadline
    does: not the caller's limit, so the one failure is raised as it is (no retry fits)."""
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=4.0, deadline=2.25))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"))
        with client.deadline(2.25), pytest.raises(sc.ServerError):
            client.get_runner_by_name("x")


def test_a_caller_deadline_that_leaves_no_room_for_a_retry_names_the_failure_as_its_cause() -> None:
    fake, clock = fake_with_draw(0.5)
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=4.0))
    with fake, make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"))
        with client.deadline(2.25), pytest.raises(sc.DeadlineExceededError) as info:
            client.get_runner_by_name("x")
    assert "the caller's deadline passed" in str(info.value)
    assert isinstance(info.value.__cause__, sc.ServerError)


def test_after_a_wake_by_recover_the_next_backoff_is_still_waited() -> None:
    """recover() wakes a call waiting between retries (it retries now); the wait after its next
    failure is a full backoff again (0.5 s at draw 0.5), not cut short by the old wake."""
    clock = WatchedClock(draw=0.5)
    woke: list[float] = []
    config = sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=0.5))
    with FakeActionsService(clock=clock, long_poll_hold=0.05, strict=True) as fake, \
            make_client(fake, clock, resilience=config) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.error(503, message="busy"))

        def recover_once(seconds: float) -> None:  # right after the first backoff sleep
            if seconds > 0 and not woke:
                woke.append(seconds)
                client.recover()

        clock.watch = recover_once
        assert client.get_runner_by_name("x") is None
        times = [r.time for r in fake.requests("get_runner_by_name")][1:]
    assert woke and len(times) == 3
    assert round(times[2] - times[1], 3) == 0.5


def test_a_call_out_of_time_while_waiting_out_a_break_names_the_last_failure_as_the_cause() -> None:
    """Two 503s open the breaker for 4 s; the call waits the break out but its own 4.885 s end
    first: it gives up with the last 503 as the cause (what a traceback shows)."""
    fake, clock = fake_with_draw(0.99)
    with fake, _breaker_client(fake, clock, deadline=4.885) as client:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
        assert fake.count("get_runner_by_name") == 3  # the warm-up and the two 503s
    assert "gave up after 2 attempts: the call's 5s deadline passed" in str(info.value)
    assert isinstance(info.value.__cause__, sc.ServerError) and info.value.__cause__ is info.value.last_error
