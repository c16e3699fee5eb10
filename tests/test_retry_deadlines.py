"""Retries against deadlines: a retry, its backoff or a throttle's hold is taken only when it and
the 0.25 s an attempt needs still fit in the call's own deadline (``RetryConfig.deadline``) and the
caller's (``client.deadline``); landing exactly on the bound does not fit. When time runs out the
error says whose deadline it was and after how many attempts, and keeps the last failure as its
cause; a call cut by its own deadline is not the service's failure."""

from __future__ import annotations

from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, client_with_retry, fake_with_draw, make_client

HOUR = 3600.0
OP = "get_runner_scale_set"


def test_a_call_deadline_too_short_for_any_attempt_sends_nothing_and_says_so(fake: FakeActionsService,
                                                                           clock: FakeClock) -> None:
    config = sc.ResilienceConfig(retry=sc.RetryConfig(deadline=0.1))  # under the 0.25 s an attempt needs
    with make_client(fake, clock, resilience=config) as client:
        before = fake.count()
        with pytest.raises(sc.DeadlineExceededError) as info:
            client.get_runner_by_name("x")
    assert str(info.value) == f"POST {info.value.url}: the call's deadline passed"  # the registration token
    assert info.value.delivered is False and fake.count() == before


def test_retries_stop_when_the_calls_own_deadline_would_pass(fake: FakeActionsService, clock: FakeClock) -> None:
    client = client_with_retry(fake, clock, deadline=3.0, max_attempts=50, budget=0.0)
    try:
        fake.inject_always(OP, Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError, match="the call's 3s deadline would pass") as info:
            client.get_runner_scale_set(1, "absent")
        assert 1 < info.value.attempts == fake.count(OP) < 50
    finally:
        client.close()


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


def test_a_short_backoff_fits_inside_a_short_caller_deadline(fake: FakeActionsService, clock: FakeClock) -> None:
    """A backoff sleeps what it says (10 ms here), never a floor of its own: the retry still fits
    inside the caller's 0.8 s and answers."""
    retry = sc.RetryConfig(backoff_base=0.01, backoff_max=0.01)
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=retry))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="short"))
        fake.inject("get_runner_scale_set_by_id", Fault.respond(503))
        with client.deadline(0.8):
            assert client.get_runner_scale_set_by_id(scale_set.id) is not None
        assert fake.count("get_runner_scale_set_by_id") == 2
    finally:
        client.close()


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


def test_an_attempt_cut_by_the_calls_own_deadline_says_how_many_attempts_and_which_deadline() -> None:
    """Real time (about 1 s): a hung attempt is cut by the call's own deadline, not the caller's."""
    with FakeActionsService(long_poll_hold=0.05) as live:
        client = sc.Client(live.config_url, token=live.token, timeout=(2.0, 5.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1.0)))
        try:
            client.get_runner_by_name("warm")
            live.inject("get_runner_by_name", Fault.hang(60.0))
            with pytest.raises(sc.RetryExhaustedError) as info:
                client.get_runner_by_name("x")
            assert str(info.value).startswith("get_runner_by_name gave up after 1 attempts: the call's 1s "
                                              "deadline passed")
            assert info.value.attempts == 1 and live.count("get_runner_by_name") == 2
        finally:
            live.release_hangs()
            client.close()


@pytest.mark.timeout(30)
def test_a_hung_attempt_cut_by_the_calls_own_deadline_is_not_the_services_failure(
        fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(1.0, 60.0),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1.5, backoff_base=0.05)))
    try:
        client.get_runner_by_name("warm")
        fake.inject_always("get_runner_by_name", Fault.hang(HOUR))
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join(limit=20.0)
        assert isinstance(outcome.error, sc.RetryExhaustedError), outcome.error
        assert "still arriving" not in str(outcome.error)  # our deadline, not a slow service
        assert client.health().components["actions_service"].last_failure is None
    finally:
        fake.release_hangs()
        client.close()


@pytest.mark.timeout(30)
def test_a_call_out_of_time_after_a_failure_names_it(fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(1.0, 60.0),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(deadline=1.5, backoff_base=0.01)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.hang(HOUR))
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join(limit=20.0)
    finally:
        fake.release_hangs()
        client.close()
    error = outcome.error
    assert isinstance(error, sc.RetryExhaustedError), error
    assert str(error).startswith("get_runner_by_name gave up after 2 attempts: the call's 2s deadline passed; "
                                 "last error: "), str(error)
    assert isinstance(error.last_error, sc.ServerError) and error.__cause__ is not None
