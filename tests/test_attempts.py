"""Attempts and slow responses: a call makes exactly ``max_attempts`` attempts (a renewal after a 401
is not one), and the client's counters and debug log agree with what the service saw. Each attempt
has its own bound, connect + read timeout, that ends with it: a connect that hangs ends at the
connect timeout, and a body still arriving at the bound is a transport failure retried after a
backoff, unless the call's own deadline came first."""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, make_client

OP = "get_runner_scale_set"


def test_the_attempt_counters_match_the_requests_the_service_saw(fake: FakeActionsService,
                                                                 clock: FakeClock) -> None:
    client = make_client(fake, clock)
    assert (client.attempts_sent, client.retries_sent) == (0, 0)  # nothing sent yet
    fake.inject("get_runner_group_by_name", Fault.respond(503, "busy"))
    client.get_runner_group_by_name("Default")
    seen = fake.count("get_runner_group_by_name")
    assert seen == 2 and client.retries_sent == 1
    assert client.attempts_sent == fake.count()  # every request the client sent reached the fake
    client.close()


def test_a_call_that_keeps_failing_makes_exactly_max_attempts_and_says_how_many(
        fake: FakeActionsService, clock: FakeClock) -> None:
    resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=3, backoff_base=0.01))
    with make_client(fake, clock, resilience=resilience) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        attempts, retries = client.attempts_sent, client.retries_sent
        fake.inject_always("get_runner_scale_set_by_id", Fault.error(503))
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_scale_set_by_id(scale_set.id)
        assert fake.count("get_runner_scale_set_by_id") == 3 and info.value.attempts == 3
        assert str(info.value).startswith("get_runner_scale_set_by_id gave up after 3 attempts; last error: ")
        assert (client.attempts_sent - attempts, client.retries_sent - retries) == (3, 2)


def test_each_answer_is_logged_at_debug_with_its_attempt(client: sc.Client, fake: FakeActionsService,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scaleset_client._adapter")
    fake.inject(OP, Fault.error(503, message="busy"))
    assert client.get_runner_scale_set(1, "absent") is None
    lines = [r.getMessage() for r in caplog.records if r.name == "scaleset_client._adapter"]
    assert any("-> 503 (attempt 1, get_runner_scale_set)" in line for line in lines)
    assert any("-> 200 (attempt 2, get_runner_scale_set)" in line for line in lines)
    assert fake.count(OP) == 2


def test_a_401_from_the_queue_renews_and_retries_with_the_new_token_without_using_an_attempt(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="scaleset_client")
    config = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=config) as client, client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(401, json_body={"message": "expired"}),
                    Fault.error(503, message="busy"))
        assert session.get_message(0, 1) is None  # 401 (renewed, not counted), 503, then the answer
        polls = fake.requests("get_message")
        assert len(polls) == 3
        token = session.session.message_queue_access_token
        assert polls[0].headers["Authorization"] != f"Bearer {token}"
        assert [p.headers["Authorization"] for p in polls[1:]] == [f"Bearer {token}"] * 2
    messages = [r.getMessage() for r in caplog.records]
    assert "get_message: answered 401; renewing the session" in messages
    assert any(m.startswith("get_message: retry 1 in ") for m in messages)


@pytest.mark.timeout(30)
def test_a_connect_that_hangs_ends_at_the_connect_timeout_and_is_retried() -> None:
    """``Client(timeout=(connect, read))``: a connect that is neither answered nor refused (a server
    whose accept queue is full drops the SYN, as a black-holed address does) ends at the connect
    timeout, is retried, and the call says so; it does not wait the read timeout out."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted): further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(server.getsockname())
            fillers.append(filler)
        port = server.getsockname()[1]
        client = sc.Client(f"http://127.0.0.1:{port}/org", token="ghp_connect", timeout=(0.3, 60.0),
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.05,
                                                                               deadline=10.0)))
        with client, pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_group_by_name("default")
        assert info.value.attempts == 2
        assert str(info.value).endswith("registration-token failed: connecting timed out")
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@pytest.mark.timeout(30)
def test_an_attempt_still_arriving_at_its_timeouts_says_which_and_keeps_the_transport_error(
        fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(0.5, 1.5),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.drip(0.1, size=36_000, chunked=False))  # an hour of bytes
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join()
    finally:
        fake.release_hangs()
        client.close()
    error = outcome.error
    assert isinstance(error, sc.TransportError), error
    assert str(error).endswith("failed: the response was still arriving at the attempt deadline "
                               "(2s: connect + read timeout)"), str(error)
    chain, cause = [], error.__cause__
    while cause is not None and len(chain) < 6:
        chain.append(type(cause).__module__.split(".")[0])
        cause = cause.__cause__
    assert "urllib3" in chain or "requests" in chain, chain  # what the socket said, kept for a debugger


@pytest.mark.timeout(40)
def test_a_retry_after_a_slow_attempt_is_cut_at_its_own_timeouts_too(fake: FakeActionsService) -> None:
    """Each attempt gets its own connect + read bound: the second dripping attempt is cut like the
    first, not left to run to the call's deadline."""
    client = sc.Client(fake.config_url, token=fake.token, timeout=(0.5, 1.5),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01,
                                                                           deadline=15.0)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.drip(0.1, size=36_000, chunked=False), times=2)
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join(limit=30.0)
    finally:
        fake.release_hangs()
        client.close()
    assert isinstance(outcome.error, sc.RetryExhaustedError), outcome.error
    assert str(outcome.error).startswith("get_runner_by_name gave up after 2 attempts; last error: "), outcome.error
    assert str(outcome.error).endswith("(2s: connect + read timeout)"), outcome.error
    assert fake.count("get_runner_by_name") == 3  # the warm-up and two attempts


@pytest.mark.timeout(30)
def test_an_attempts_bound_ends_with_it_and_does_not_cut_the_next_attempt(fake: FakeActionsService) -> None:
    """The first attempt's watchdog (connect + read = 6.5 s) is cancelled when it ends: a second
    attempt (from about 3 s to 7.5 s) still running 6.5 s after the first began is not cut by it.
    The margins are a second or more each way, so a slow machine does not change the outcome."""
    client = sc.Client(fake.config_url, token=fake.token, timeout=(0.5, 6.0),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.respond(503, json_body={"message": "busy"},
                                                        headers={"Retry-After": "3"}), Fault.delay(4.5))
        outcome = Outcome(lambda: client.get_runner_by_name("x")).join(limit=20.0)
    finally:
        fake.release_hangs()
        client.close()
    assert outcome.error is None and outcome.value is None  # the second attempt's answer: no runner
    assert fake.count("get_runner_by_name") == 3


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
