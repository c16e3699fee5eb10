"""A call meeting the circuit breaker. A break that opened mid-call is waited out (plus a spread)
when it fits the call's time and ``max_hint_wait``, else raised with the failure that caused it; the
next try after a break goes as the probe. A probe's permit lasts its attempt's timeouts, and is given
back when unused or when its answer says nothing of the service (too big). An origin that refuses
connections is looked at over TCP, at a paced interval, and an open breaker says when the next look
is."""

from __future__ import annotations

from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, client_with_retry, fake_with_draw, make_client, port_of, wait_until

HOUR = 3600.0


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
                      if b.origin.endswith(str(port_of(fake.servers["actions"].url)))}
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


def test_an_oversized_probe_answer_frees_its_probe_without_judging_the_service(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """A body over the cap says nothing about the service's health: the half-open probe that got
    it is released (neutral), so its lease never expires into a failed probe that re-opens the circuit."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))

        def admin_state() -> tuple[str, str]:
            [breaker] = [b for b in client.circuit_breakers.all() if b.operation_class == "admin"]
            return breaker.state.value, breaker.last_failure_reason

        fake.inject_always("get_runner_scale_set_by_id", Fault.error(503, message="down"))
        with pytest.raises(sc.ScalesetError):
            client.get_runner_scale_set_by_id(scale_set.id)
        assert admin_state()[0] == "open"
        fake.clear_faults("get_runner_scale_set_by_id")
        clock.advance(120.0)  # the break is over: the next call is the probe
        fake.inject("get_runner_scale_set_by_id", Fault.huge(8000))
        with pytest.raises(sc.ResponseError, match="exceeds the 4096-byte limit"):
            client.get_runner_scale_set_by_id(scale_set.id)
        clock.advance(600.0)  # far past any probe lease
        assert admin_state() == ("half_open", "HTTP 503")
        assert client.get_runner_scale_set_by_id(scale_set.id) is not None  # the next probe goes out
        assert admin_state()[0] == "closed"
    finally:
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


def test_a_call_finding_a_refusing_origin_back_becomes_the_probe_before_the_break_ends(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """The breaker opened on refused connects with a long break; once the origin accepts again, the
    next call's TCP look (due within 1.5 x reachability_check) lets it through as the probe."""
    breaker = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0, max_open_duration=600.0)
    config = sc.ResilienceConfig(circuit_breaker=breaker, retry=sc.RetryConfig(max_attempts=1))
    client = make_client(fake, clock, resilience=config)
    try:
        assert client.get_runner_scale_set(1, "absent") is None  # the admin token is held from here
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_scale_set(1, "absent")  # refused: the breaker opens for 300 s
        fake.start_server("actions")
        clock.advance(1.5 * breaker.reachability_check + 1)  # a look is due; the break is not over
        before = fake.count("get_runner_scale_set")
        assert client.get_runner_scale_set(1, "absent") is None
        assert fake.count("get_runner_scale_set") == before + 1
    finally:
        client.close()


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


def test_a_reachability_check_of_an_origin_back_without_an_open_breaker_probes_nothing(
        fake: FakeActionsService, clock: FakeClock) -> None:
    client = client_with_retry(fake, clock, max_attempts=1)
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
