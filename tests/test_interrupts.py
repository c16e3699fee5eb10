"""A call ended from outside before it is done: the caller's deadline already passed or its scope
cancelled, the client closed, ``recover()``. What was sent, whether the service may have acted
(``delivered``), what the error says and keeps as its cause, and what the cut costs the call (one
by recover() uses up no attempt, and leaves the next backoff whole)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault, ForwardProxy

from .helpers import Outcome, WatchedClock, inside, make_client, wait_until

HOUR = 3600.0


def test_a_call_whose_caller_deadline_passed_sends_nothing_and_says_so(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.clear_log()  # the admin token is held already (the scale set was created)
    with client.deadline(0), pytest.raises(sc.DeadlineExceededError) as info:
        client.get_runner_scale_set_by_id(scale_set.id)
    assert str(info.value).startswith("GET http") and str(info.value).endswith(": the caller's deadline passed")
    assert info.value.delivered is False and fake.count() == 0


def test_a_scope_cancelled_without_a_reason_says_cancelled(client: sc.Client, fake: FakeActionsService,
                                                           scale_set: sc.RunnerScaleSet) -> None:
    fake.clear_log()
    with client.deadline(None) as scope:
        scope.cancel("")
        with pytest.raises(sc.CallCancelledError) as info:
            client.get_runner_scale_set_by_id(scale_set.id)
    assert " was cancelled (cancelled)" in str(info.value) and fake.count() == 0


def test_a_call_on_a_closed_client_is_refused_before_anything_is_sent(fake: FakeActionsService,
                                                                      clock: FakeClock) -> None:
    client = make_client(fake, clock)
    client.close()
    before = fake.count()
    with pytest.raises(sc.CallCancelledError, match="the client is closed") as info:
        client.get_runner_scale_set(1, "absent")
    assert info.value.delivered is False
    assert fake.count() == before


@pytest.mark.timeout(30)
def test_a_call_in_flight_when_the_client_closes_says_so(fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, HOUR))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.hang(HOUR))
        outcome = Outcome(lambda: client.get_runner_by_name("x"))
        wait_until(lambda: fake.count("get_runner_by_name") == 2)
        client.close()
        outcome.join(limit=10.0)
    finally:
        fake.release_hangs()
        client.close()
    assert isinstance(outcome.error, sc.CallCancelledError), outcome.error
    assert str(outcome.error) == f"GET {outcome.error.url}: the client was closed during the request"
    assert outcome.error.delivered is None  # it was on the wire: whether the service acted is unknown
    assert outcome.error.__cause__ is not None  # what the socket said when it was shut


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


@pytest.mark.timeout(30)
def test_a_cancel_ends_a_hung_call_sent_through_a_proxy(fake: FakeActionsService) -> None:
    """The proxy's pool is tracked like the direct one: the cancel shuts the socket in flight, and
    every call goes through the proxy."""
    with ForwardProxy() as proxy:
        client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, HOUR),
                           proxies={"http": proxy.url, "https": proxy.url})
        try:
            client.get_runner_by_name("warm")
            fake.inject("get_runner_by_name", Fault.hang(HOUR))
            scope = client.deadline()
            outcome = Outcome(lambda: inside(scope, lambda: client.get_runner_by_name("x")))
            wait_until(lambda: fake.count("get_runner_by_name") == 2)
            scope.cancel("test")
            outcome.join(limit=5.0)  # the test proxy gives up on its upstream only after 10 s
            assert isinstance(outcome.error, sc.CallCancelledError), outcome.error
            assert len(proxy.requests) == fake.count()
        finally:
            fake.release_hangs()
            client.close()


@pytest.mark.timeout(30)
def test_a_retry_cancelled_in_flight_names_the_failure_it_was_retrying(fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, HOUR),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=0.01)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.hang(HOUR))
        scope = client.deadline()
        outcome = Outcome(lambda: inside(scope, lambda: client.get_runner_by_name("x")))
        wait_until(lambda: fake.count("get_runner_by_name") == 3)  # the 503, then the retry, held
        scope.cancel("shutting down")
        outcome.join(limit=10.0)
    finally:
        fake.release_hangs()
        client.close()
    message = str(outcome.error)
    assert isinstance(outcome.error, sc.CallCancelledError), outcome.error
    assert message.startswith("GET http://127.0.0.1:") and " was cancelled (shutting down); last error: " in message
    assert message.endswith("busy"), message
    assert outcome.error.delivered is None  # cut on the wire: whether the service acted is unknown


def test_an_attempt_cut_by_recover_does_not_use_up_an_attempt() -> None:
    """Real time (well under a second): recover() interrupts a black-holed attempt; the retry on a
    fresh connection is not counted, so a later 503 still has its retry."""
    with FakeActionsService(long_poll_hold=0.05) as live:
        client = sc.Client(live.config_url, token=live.token, timeout=(2.0, 3600.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01)))
        outcome: list[object] = []
        try:
            client.get_runner_by_name("warm")
            live.inject("get_runner_by_name", Fault.hang(3600.0), Fault.error(503, message="busy"))
            worker = threading.Thread(target=lambda: outcome.append(_catch(lambda: client.get_runner_by_name("x"))))
            worker.start()
            wait_until(lambda: live.count("get_runner_by_name") == 2)
            client.recover()
            worker.join(timeout=30)
            assert outcome == [None]  # answered: no such runner
            assert live.count("get_runner_by_name") == 4  # warm-up, the hung one, the 503, the answer
        finally:
            live.release_hangs()
            client.close()


def _catch(work: Callable[[], object]) -> object:
    try:
        return work()
    except sc.ScalesetError as exc:
        return exc


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
