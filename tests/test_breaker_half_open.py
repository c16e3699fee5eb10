"""Half-open: after a break, probes are admitted one lease at a time; a probe's result closes or
reopens the circuit, a lease that runs out reopens it, and a result from an earlier generation or
after its lease is discarded. Last, the same edge over real sockets with sixty-four threads.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._breaker import Outcome, State
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .breakers import ORIGIN, fail, make, moves, refusal, succeed
from .helpers import make_client, run_together


def test_break_over_admits_one_probe_and_success_closes() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5.0)
    assert breaker.state is State.HALF_OPEN
    probe = breaker.acquire(lease=10)
    assert probe.probe_id and breaker.probes_in_flight() == 1
    with pytest.raises(sc.CircuitOpenError, match="probe is in flight"):
        breaker.acquire(lease=10)
    breaker.record(probe, Outcome.SUCCESS)
    assert breaker.state is State.CLOSED
    assert [e.new for e in events] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_an_expired_probe_lease_reopens_and_a_late_result_is_discarded() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    hung = breaker.acquire(lease=3)
    clock.advance(3.5)
    assert breaker.state is State.OPEN and events[-1].new is State.HALF_OPEN  # a read moves nothing
    with pytest.raises(sc.CircuitOpenError):
        breaker.acquire(lease=3)  # the next caller finds the hung probe and re-opens
    assert "lease expired" in events[-1].reason and events[-1].new is State.OPEN
    generation = breaker.generation
    breaker.record(hung, Outcome.SUCCESS)  # the hung call finally returns: too late to count
    assert breaker.state is State.OPEN and breaker.generation == generation


def test_results_from_an_earlier_generation_are_ignored() -> None:
    breaker, clock, _ = make()
    slow = breaker.acquire(lease=10)  # admitted while closed
    fail(breaker, 3)
    clock.advance(5)
    probe = breaker.acquire(lease=10)
    breaker.record(slow, Outcome.SUCCESS)  # from the closed era: must not close anything
    assert breaker.state is State.HALF_OPEN and breaker.probes_in_flight() == 1
    breaker.record(probe, Outcome.SUCCESS)
    assert breaker.state is State.CLOSED


def test_success_threshold_needs_that_many_probe_successes() -> None:
    breaker, clock, _ = make(sc.CircuitBreakerConfig(failure_threshold=1, success_threshold=2, jitter=0.0))
    fail(breaker)
    clock.advance(5)
    succeed(breaker)
    assert breaker.state is State.HALF_OPEN
    succeed(breaker)
    assert breaker.state is State.CLOSED


def test_probes_are_limited_and_each_returns_its_own_permit() -> None:
    breaker, clock, _ = make(sc.CircuitBreakerConfig(failure_threshold=1, half_open_max_calls=2,
                                                     success_threshold=3, jitter=0.0))
    fail(breaker)
    clock.advance(5)
    first, second = breaker.acquire(lease=10), breaker.acquire(lease=20)
    assert first.probe_id != second.probe_id and breaker.probes_in_flight() == 2
    refused = refusal(breaker)
    assert refused.retry_after == 10.0 and breaker.retry_after() == 10.0
    assert refused.retry_at == clock.wall() + 10.0  # the same instant on the wall clock
    assert str(refused) == (f"circuit for {ORIGIN} [admin] is half_open: a probe is in flight; "
                            "next attempt in 10.0s")
    breaker.record(first, Outcome.SUCCESS)
    assert breaker.probes_in_flight() == 1 and breaker.retry_after() == 0.0
    third = breaker.acquire(lease=5)
    assert breaker.probes_in_flight() == 2 and breaker.retry_after() == 5.0
    breaker.record(second, Outcome.SUCCESS)
    breaker.record(third, Outcome.SUCCESS)
    assert breaker.state is State.CLOSED  # three probe successes
    assert breaker.rejected == 1


def test_an_expired_lease_reopens_from_the_moment_it_expired() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    breaker.acquire(lease=3)
    clock.advance(3)  # exactly the lease
    assert breaker.state is State.OPEN
    assert refusal(breaker).retry_after == 10.0  # reading moved nothing; the next caller re-opens it
    assert events[-1].reason == "probe lease expired (the probe hung)"
    assert events[-1].retry_after == 10.0  # a hung probe grows the next break like a failed one
    assert breaker.last_failure_wall == clock.wall() and breaker.last_failure_reason == events[-1].reason
    clock.advance(4)
    assert breaker.retry_after() == 6.0


def test_the_earliest_lease_expires_first() -> None:
    breaker, clock, events = make(sc.CircuitBreakerConfig(failure_threshold=1, half_open_max_calls=2, jitter=0.0))
    fail(breaker)
    clock.advance(5)
    breaker.acquire(lease=1)
    breaker.acquire(lease=10)
    clock.advance(1.5)
    assert breaker.state is State.OPEN
    refusal(breaker)  # the call path re-opens it (a read does not)
    assert events[-1].new is State.OPEN and events[-1].reason == "probe lease expired (the probe hung)"


def test_a_short_lease_is_honoured() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    breaker.acquire(lease=0.5)
    clock.advance(0.6)
    assert breaker.state is State.OPEN


def test_a_long_lease_keeps_the_probe_in_flight() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    breaker.acquire(lease=10)
    clock.advance(9.5)
    assert breaker.state is State.HALF_OPEN and breaker.retry_after() == pytest.approx(0.5)


def test_a_result_after_the_lease_expired_does_not_close_the_circuit() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    hung = breaker.acquire(lease=3)
    clock.advance(4)
    breaker.record(hung, Outcome.SUCCESS)  # nobody looked at the state in between
    assert [e.new for e in events][-2:] == [State.HALF_OPEN, State.OPEN]
    assert breaker.state is State.OPEN


def test_probe_transitions_carry_their_reasons() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker, reason="HTTP 502")
    clock.advance(10)
    succeed(breaker)
    assert moves(events)[1:] == [
        (State.OPEN, State.HALF_OPEN, "break over; probing"),
        (State.HALF_OPEN, State.OPEN, "probe failed: HTTP 502"),
        (State.OPEN, State.HALF_OPEN, "break over; probing"),
        (State.HALF_OPEN, State.CLOSED, "probe succeeded"),
    ]


ONE_SHOT = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1),
                               circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, jitter=0.0))


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
