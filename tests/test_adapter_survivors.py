"""Adapter promises the full mutation run (session 4) found no test pinning, seen from outside:
the kernel's view of our sockets (/proc/net/tcp), a proxy's traffic, requests at the fake, and
what a caller gets back or is raised."""

from __future__ import annotations

from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault, ForwardProxy

from .conftest import make_client, wait_until
from .test_deadlines import Outcome, _inside

HOUR = 3600.0
linux_only = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's socket table")


def _port(url: str) -> int:
    return int(url.split("//")[1].split("/")[0].rsplit(":", 1)[1])


def _timers_to(port: int) -> list[int]:
    """The timer kind of every established socket to 127.0.0.1:``port`` (2: keepalive armed)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, timer = fields[2], fields[3], fields[5]
        if int(remote.split(":")[1], 16) == port and state == "01":
            found.append(int(timer.split(":")[0], 16))
    return found


@linux_only
def test_pooled_connections_have_tcp_keepalive_armed(fake: FakeActionsService, clock: FakeClock) -> None:
    """A NAT that drops an idle pooled flow is noticed by keepalive probes, not by a hung call."""
    with make_client(fake, clock) as client:
        assert client.get_runner_by_name("x") is None
        timers = _timers_to(_port(fake.servers["actions"].url))
        assert timers and all(t == 2 for t in timers), timers


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
            outcome = Outcome(lambda: _inside(scope, lambda: client.get_runner_by_name("x")))
            wait_until(lambda: fake.count("get_runner_by_name") == 2)
            scope.cancel("test")
            outcome.join(limit=5.0)  # the test proxy gives up on its upstream only after 10 s
            assert isinstance(outcome.error, sc.CallCancelledError), outcome.error
            assert len(proxy.requests) == fake.count()
        finally:
            fake.release_hangs()
            client.close()


def test_a_refusing_origin_is_not_looked_at_again_before_its_look_is_due(fake: FakeActionsService,
                                                                          clock: FakeClock) -> None:
    """TCP looks at a refusing origin are paced (every ~reachability_check seconds), so a storm of
    calls during an outage is not a storm of connects: an origin back before the next look is due
    is still refused without a request until then."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0, max_open_duration=600.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_scale_set(1, "absent") is None  # the admin token is held from here
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_scale_set(1, "absent")  # refused: the breaker opens for 300 s
        with pytest.raises(sc.CircuitOpenError):
            client.get_runner_scale_set(1, "absent")  # a look, if one is due now, finds it still refusing
        fake.start_server("actions")
        before = fake.count("get_runner_scale_set")
        with pytest.raises(sc.CircuitOpenError):
            client.get_runner_scale_set(1, "absent")  # back, but no look is due yet: refused locally
        assert fake.count("get_runner_scale_set") == before
        clock.advance(1.5 * breaker.reachability_check + 1)  # now one is
        assert client.get_runner_scale_set(1, "absent") is None
        assert fake.count("get_runner_scale_set") == before + 1



def test_a_call_that_never_got_an_answer_reports_no_status(fake: FakeActionsService, clock: FakeClock) -> None:
    """Status 0 says "no HTTP answer at all" (refused, reset, timed out): a caller must not read a
    status the service never sent."""
    config = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None  # the admin token is held from here
        fake.stop("actions")
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
        assert info.value.attempts == 2 and info.value.status == 0


@pytest.mark.timeout(30)
def test_a_probe_holds_its_lease_for_its_connect_and_read_timeouts_and_no_longer(fake: FakeActionsService,
                                                                                 clock: FakeClock) -> None:
    """A half-open probe's permit lasts its attempt's connect + read timeouts (here 5 + 100 s, less
    than the 200 s the call has) plus 5 s, 110 s in all: while it lasts, the probe is in flight and nobody else
    probes; once it runs out, the hung probe counts as failed and the breaker opens again."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=30.0, max_open_duration=60.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1, deadline=200.0))
    client = make_client(fake, clock, resilience=config, timeout=(5.0, 100.0))
    probe: Outcome | None = None
    try:
        assert client.get_runner_by_name("x") is None  # the admin token is held from here

        def actions_state() -> str:
            states = {b.state.value for b in client.circuit_breakers.all()
                      if b.origin.endswith(str(_port(fake.servers["actions"].url)))}
            assert len(states) == 1, states
            return states.pop()

        fake.inject("get_runner_by_name", Fault.error(503))
        with pytest.raises(sc.ServerError):
            client.get_runner_by_name("x")  # the breaker opens for 30 s
        clock.advance(31)
        fake.inject("get_runner_by_name", Fault.hang(HOUR))
        probe = Outcome(lambda: client.get_runner_by_name("x"))  # the probe, held by the fake
        wait_until(lambda: fake.count("get_runner_by_name") == 3)
        clock.advance(10)
        assert actions_state() == "half_open"  # 10 s into a 110 s lease: still the probe's
        clock.advance(100.5)
        assert actions_state() == "open"  # 110.5 s: the lease ran out, the hung probe failed
    finally:
        fake.release_hangs()
        client.close()
    if probe is not None:
        probe.join()


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


def test_a_retry_that_meets_the_break_it_caused_waits_it_out_and_goes_as_the_probe(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """Mid-call, a failure opened the breaker (5 s, no jitter): the call's next try waits the rest of
    the break plus 0.05 to 0.55 s (so it never arrives early and is refused again), then is the probe."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=5.0, jitter=0.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=3, backoff_base=0.5))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None  # the admin token is held from here
        fake.inject("get_runner_by_name", Fault.error(503))
        slept_before = len(clock.sleeps)
        assert client.get_runner_by_name("x") is None
        waits = list(clock.sleeps)[slept_before:]
        assert fake.count("get_runner_by_name") == 3  # the first call, the 503, the probe: none refused
        assert len(waits) == 2 and 5.05 <= sum(waits) < 5.55, waits  # backoff + the rest of the break


def test_a_break_longer_than_a_call_may_wait_is_raised_with_the_failure_that_caused_it(
        fake: FakeActionsService, clock: FakeClock) -> None:
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0, max_open_duration=600.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=3, max_hint_wait=60.0))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.error(503))
        with pytest.raises(sc.CircuitOpenError) as info:
            client.get_runner_by_name("x")
        assert isinstance(info.value.__cause__, sc.ServerError) and info.value.__cause__.status == 503
        assert fake.count("get_runner_by_name") == 2


def test_an_open_breaker_on_a_refusing_origin_says_to_come_back_at_the_next_look(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """The break is 300 s, but the origin is looked at again within 1.5 x reachability_check: the
    error's retry_after is that, so a caller does not stay away five minutes from a service back in ten seconds."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0, max_open_duration=600.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_scale_set(1, "absent") is None
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_scale_set(1, "absent")
        with pytest.raises(sc.CircuitOpenError) as info:
            client.get_runner_scale_set(1, "absent")
        assert info.value.retry_after is not None
        assert 0 < info.value.retry_after <= 1.5 * breaker.reachability_check


def test_a_probe_permit_taken_with_too_little_time_left_is_given_back(fake: FakeActionsService,
                                                                      clock: FakeClock) -> None:
    """A half-open probe permit taken by a call that then has too little time to send is returned
    at once: the next call probes, instead of waiting for the unused permit's lease to run out."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=5.0, jitter=0.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.error(503))
        with pytest.raises(sc.ServerError):
            client.get_runner_by_name("x")
        clock.advance(6)
        before = fake.count("get_runner_by_name")
        with client.deadline(0.1), pytest.raises(sc.DeadlineExceededError):
            client.get_runner_by_name("x")  # takes the probe permit, cannot use it
        assert client.get_runner_by_name("x") is None  # the next call is the probe
        assert fake.count("get_runner_by_name") == before + 1


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


def test_debug_logging_of_a_call_that_got_no_answer(fake: FakeActionsService, clock: FakeClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="scaleset_client")
    config = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_by_name("x")
    assert any(" -> 200 (attempt 1, get_runner_by_name)" in r.getMessage() for r in caplog.records)


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
def test_a_retry_cancelled_in_flight_names_the_failure_it_was_retrying(fake: FakeActionsService) -> None:
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, HOUR),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(backoff_base=0.01)))
    try:
        client.get_runner_by_name("warm")
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), Fault.hang(HOUR))
        scope = client.deadline()
        outcome = Outcome(lambda: _inside(scope, lambda: client.get_runner_by_name("x")))
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


def _padded_message(message_id: int, size: int) -> bytes:
    head = b'{"messageId": %d, "messageType": "RunnerScaleSetJobMessages", "body": "[]", "pad": "' % message_id
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_message_says_how_big_and_which_message_it_was(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, declared: bool) -> None:
    """Declared too big: refused before reading, the id read from the first bytes. Streamed too big:
    refused once past the cap, the id read from what arrived. Either way the listener can set the
    message aside by id instead of polling it for ever."""
    limit = 64 * 1024
    with make_client(fake, clock, resilience=sc.ResilienceConfig(max_message_bytes=limit)) as client:
        with client.message_session(scale_set.id) as session:
            body = _padded_message(4242, 100_000)
            fault = (Fault.respond(200, body, content_type="application/json") if declared
                     else Fault.huge(100_000, chunked=True))
            fake.inject("get_message", fault)
            with pytest.raises(sc.ResponseError) as info:
                session.get_message(0, 1)
    what = "response of 100000 bytes" if declared else "response"
    assert str(info.value) == f"get_message: {what} exceeds the {limit}-byte limit"
    assert info.value.message_id == (4242 if declared else None)


def test_a_body_of_exactly_the_declared_limit_is_read(fake: FakeActionsService, clock: FakeClock,
                                                      scale_set: sc.RunnerScaleSet) -> None:
    limit = 64 * 1024
    with make_client(fake, clock, resilience=sc.ResilienceConfig(max_message_bytes=limit)) as client:
        with client.message_session(scale_set.id) as session:
            fake.inject("get_message", Fault.respond(200, _padded_message(4243, limit),
                                                     content_type="application/json"))
            message = session.get_message(0, 1)
    assert message is not None and message.message_id == 4243


def test_sequential_calls_reuse_one_pooled_connection(fake: FakeActionsService, clock: FakeClock) -> None:
    """A body read to the end hands its connection back to the pool: five calls, one connection."""
    with make_client(fake, clock) as client:
        client.get_runner_by_name("warm")
        before = fake.connections("actions")
        for _ in range(5):
            assert client.get_runner_by_name("x") is None
        assert fake.connections("actions") == before


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
        origin = f"http://127.0.0.1:{_port(fake.servers['actions'].url)}"
        assert held.value.message.startswith(f"{origin} asked us to wait 60")
        assert held.value.message.endswith("s, more than this call may wait; retry after that"), held.value.message
        assert held.value.method == "GET" and held.value.url.startswith(origin + "/")


def test_a_spent_retry_budget_ends_the_call_and_says_so(fake: FakeActionsService, clock: FakeClock) -> None:
    config = sc.ResilienceConfig(retry=sc.RetryConfig(budget=1.0, max_attempts=5, backoff_base=0.01))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.inject("get_runner_by_name", Fault.error(503, message="busy"), times=3)
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
        origin = f"http://127.0.0.1:{_port(fake.servers['actions'].url)}"
        assert str(info.value).startswith(f"get_runner_by_name gave up after 2 attempts: the retry budget for "
                                          f"{origin} is spent; last error: "), str(info.value)
        assert fake.count("get_runner_by_name") == 3  # the first call, then two attempts


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
