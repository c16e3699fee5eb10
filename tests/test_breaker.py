"""The circuit breaker state machine on a fake clock: every transition, leases, generations."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaleset_client as sc
from scaleset_client._breaker import BreakerRegistry, CircuitBreaker, Outcome, State, Transition
from scaleset_client.testing import FakeClock

CFG = sc.CircuitBreakerConfig(failure_threshold=3, window_size=10, minimum_calls=6, failure_ratio=0.5,
                              open_duration=5.0, max_open_duration=40.0, jitter=0.0)


def make(config: sc.CircuitBreakerConfig = CFG) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    clock = FakeClock()
    events: list[Transition] = []
    return CircuitBreaker("https://h:443", "admin", config, clock, events.extend), clock, events


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(lease=10), Outcome.FAILURE, "HTTP 503")


def succeed(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(lease=10), Outcome.SUCCESS)


def test_consecutive_failures_open_the_circuit() -> None:
    breaker, _, events = make()
    fail(breaker, 2)
    assert breaker.state is State.CLOSED
    fail(breaker)
    assert breaker.state is State.OPEN
    assert [(e.old, e.new) for e in events] == [(State.CLOSED, State.OPEN)] and "3 consecutive" in events[0].reason
    with pytest.raises(sc.CircuitOpenError) as info:
        breaker.acquire(lease=10)
    assert info.value.retry_after == pytest.approx(5.0) and info.value.origin == "https://h:443"


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _, _ = make(sc.CircuitBreakerConfig(failure_threshold=3, failure_ratio=0.9, jitter=0.0))
    for _ in range(4):
        fail(breaker, 2)
        succeed(breaker)
    assert breaker.state is State.CLOSED  # 8 failures, never 3 in a row, ratio 2/3 under 0.9


def test_failure_ratio_over_the_window_opens_a_flapping_circuit() -> None:
    breaker, _, events = make(sc.CircuitBreakerConfig(failure_threshold=100, window_size=10, minimum_calls=6,
                                                      failure_ratio=0.5, jitter=0.0))
    for _ in range(2):
        fail(breaker)
        succeed(breaker)
    assert breaker.state is State.CLOSED  # 4 calls: below minimum_calls
    fail(breaker)
    fail(breaker)  # 6 calls, 4 failures
    assert breaker.state is State.OPEN and "ratio" in events[-1].reason


def test_neutral_outcomes_change_nothing() -> None:
    breaker, _, _ = make()
    for _ in range(50):
        breaker.record(breaker.acquire(lease=10), Outcome.NEUTRAL)
    assert breaker.state is State.CLOSED and breaker.last_failure_wall is None


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


def test_failed_probes_double_the_break_up_to_the_cap() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    durations = []
    for _ in range(5):
        durations.append(breaker.retry_after())
        clock.advance(breaker.retry_after() or 0)
        fail(breaker)  # the probe fails
    assert durations == [5.0, 10.0, 20.0, 40.0, 40.0]


def test_break_doubling_resets_after_a_long_closed_period() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # re-trip: 10 s
    clock.advance(10)
    succeed(breaker)
    clock.advance(601)
    fail(breaker, 3)
    assert breaker.retry_after() == 5.0


def test_jitter_spreads_breaks_within_twenty_percent() -> None:
    values = set()
    for seed in range(20):
        clock = FakeClock(seed=seed)
        breaker = CircuitBreaker("o", "admin", sc.CircuitBreakerConfig(failure_threshold=1), clock)
        breaker.record(breaker.acquire(1), Outcome.FAILURE)
        values.add(round(breaker.retry_after() or 0, 3))
    assert len(values) > 10 and min(values) >= 4.0 and max(values) <= 6.0


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


def test_operator_states() -> None:
    breaker, clock, _ = make()
    breaker.force_open()
    with pytest.raises(sc.CircuitOpenError) as info:
        breaker.acquire(lease=1)
    assert info.value.retry_after is None
    clock.advance(10_000)
    assert breaker.state is State.FORCED_OPEN
    breaker.reset()
    assert breaker.state is State.CLOSED
    breaker.force_open(duration=30)
    clock.advance(31)
    breaker.acquire(lease=1)
    assert breaker.state is State.CLOSED
    breaker.disable()
    fail(breaker, 20)
    assert breaker.state is State.DISABLED
    breaker.metrics_only()
    fail(breaker, 20)
    assert breaker.state is State.METRICS_ONLY and breaker.last_failure_wall is not None


def test_snapshot_and_restore_keep_an_open_break_but_never_beyond_its_cap() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2)
    snap = breaker.snapshot()
    other_clock = FakeClock(start=50.0, wall=clock.wall() + 1)  # a new process, one second later
    restored = CircuitBreaker("https://h:443", "admin", CFG, other_clock)
    restored.restore(snap)
    assert restored.state is State.OPEN and restored.retry_after() == pytest.approx(2.0)
    snap["open_remaining"] = 10_000
    restored.restore(snap)
    assert (restored.retry_after() or 0) <= CFG.max_open_duration


def test_listener_errors_do_not_break_the_breaker() -> None:
    registry = BreakerRegistry(CFG, FakeClock())
    seen: list[Transition] = []

    def bad(t: Transition) -> None:
        raise RuntimeError("listener bug")

    registry.add_listener(bad)
    registry.add_listener(seen.append)
    breaker = registry.get("https://h:443", "admin")
    fail(breaker, 3)
    assert breaker.state is State.OPEN and len(seen) == 1


def test_registry_operator_controls_act_per_origin() -> None:
    registry = BreakerRegistry(CFG, FakeClock())
    a, b = registry.get("https://a:443", "admin"), registry.get("https://b:443", "admin")
    registry.force_open("https://a:443")
    assert (a.state, b.state) == (State.FORCED_OPEN, State.CLOSED)
    assert registry.states() == {"https://a:443 admin": "forced_open", "https://b:443 admin": "closed"}
    registry.reset()
    assert a.state is State.CLOSED


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_calls=st.integers(1, 3))
def test_random_outcomes_across_threads_keep_the_invariants(seed: int, max_calls: int) -> None:
    """Never more probes in flight than allowed; every permit is returned or expires."""
    clock = FakeClock(seed=seed)
    config = sc.CircuitBreakerConfig(failure_threshold=2, open_duration=1.0, max_open_duration=4.0,
                                     half_open_max_calls=max_calls, window_size=5, minimum_calls=3)
    breaker = CircuitBreaker("o", "c", config, clock)
    violations: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(seed + n)
        for _ in range(60):
            clock.advance(rng.choice([0.0, 0.0, 0.1, 0.5, 1.0]))
            try:
                permit = breaker.acquire(lease=rng.choice([0.5, 2.0]))
            except sc.CircuitOpenError:
                continue
            in_flight = breaker.probes_in_flight()
            if in_flight > max_calls:
                with lock:
                    violations.append(f"{in_flight} probes in flight")
            if rng.random() < 0.1:
                continue  # an abandoned call: its lease must expire
            breaker.record(permit, rng.choice([Outcome.SUCCESS, Outcome.FAILURE, Outcome.NEUTRAL]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert violations == []
    clock.advance(10.0)  # every lease is over by now
    breaker.acquire(lease=1)  # the breaker is never wedged: a call is admitted once time passes


@pytest.mark.parametrize("moment", ["break over", "lease expired", "forced period over"])
def test_reading_a_breaker_fires_no_transition_and_calls_no_listener(moment: str) -> None:
    breaker, clock, events = make()
    registry_events: list[Transition] = []
    registry = BreakerRegistry(CFG, clock)
    registry.add_listener(registry_events.append)
    for b in (breaker, registry.get("https://h:443", "admin")):
        if moment == "forced period over":
            b.force_open(duration=2.0)
        else:
            fail(b, 3)
            clock.advance(5)
            if moment == "lease expired":
                b.acquire(lease=1)
                clock.advance(1)
    clock.advance(3)
    before, generation, registry_before = list(events), breaker.generation, list(registry_events)
    for _ in range(2):  # health and metrics read these, any number of times
        breaker.state, breaker.retry_after(), breaker.probes_in_flight(), breaker.snapshot()
        registry.states(), registry.snapshot()
    assert events == before and registry_events == registry_before and breaker.generation == generation
    try:
        breaker.acquire(lease=10)  # the call path makes the transition the reads did not
    except sc.CircuitOpenError:
        assert moment == "lease expired"  # a hung probe re-opens the circuit: this call is refused
    assert len(events) == len(before) + 1 and breaker.generation != generation
