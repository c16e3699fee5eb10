"""The circuit breaker's counting on a fake clock: what trips it and what does not, how long a
break lasts (doubling, jitter, the reset after a quiet spell), what ``retry_after()`` and a refusal
report, and what listeners are told. No test reads a private attribute.
"""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaleset_client as sc
from scaleset_client._breaker import BreakerRegistry, CircuitBreaker, Outcome, Permit, State, Transition
from scaleset_client.testing import FakeClock

from .breakers import CFG, ORIGIN, RATIO_ONLY, FixedRandomClock, fail, make, moves, refusal, succeed


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


def test_trip_reasons_name_the_rule_and_the_last_failure() -> None:
    breaker, _, events = make()
    fail(breaker, 3)
    assert moves(events) == [(State.CLOSED, State.OPEN, "3 consecutive failures (HTTP 503)")]
    assert events[0].retry_after == 5.0 and events[0].origin == ORIGIN and events[0].operation_class == "admin"
    ratio, _, ratio_events = make(RATIO_ONLY)
    for _ in range(2):
        fail(ratio)
        succeed(ratio)
    fail(ratio, 2)
    assert moves(ratio_events) == [(State.CLOSED, State.OPEN, "failure ratio 67% over 6 calls (HTTP 503)")]


def test_a_failure_without_a_reason_is_reported_as_failure() -> None:
    breaker, _, events = make()
    for _ in range(3):
        breaker.record(breaker.acquire(lease=10), Outcome.FAILURE)
    assert events[-1].reason == "3 consecutive failures (failure)"
    assert str(refusal(breaker)).endswith("open after failures (failure); next attempt in 5.0s")


def test_the_failure_ratio_trips_at_exactly_the_configured_share() -> None:
    breaker, _, _ = make(RATIO_ONLY)
    for _ in range(2):
        fail(breaker)
        succeed(breaker)
    succeed(breaker)
    assert breaker.state is State.CLOSED
    fail(breaker)  # 3 failures in 6 calls: exactly 50 %
    assert breaker.state is State.OPEN


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_neutral_outcomes_neither_count_nor_clear_failures(state: str) -> None:
    """A throttle between failures does not reset the run, and a neutral probe closes nothing."""
    breaker, clock, _ = make()
    if state == "closed":
        fail(breaker, 2)
        breaker.record(breaker.acquire(lease=10), Outcome.NEUTRAL)
        fail(breaker)
        assert breaker.state is State.OPEN
    else:
        fail(breaker, 3)
        clock.advance(5)
        breaker.record(breaker.acquire(lease=10), Outcome.NEUTRAL)
        assert breaker.state is State.HALF_OPEN and breaker.last_success_wall is None
        probe = breaker.acquire(lease=10)  # the permit came back: the next caller probes
        assert probe.probe_id


def test_a_disabled_breaker_records_nothing() -> None:
    breaker, _, _ = make()
    breaker.disable()
    fail(breaker, 5)
    succeed(breaker)
    assert breaker.last_failure_wall is None and breaker.last_success_wall is None
    assert breaker.last_failure_reason == ""


def test_success_and_failure_times_are_the_wall_clock() -> None:
    breaker, clock, _ = make()
    succeed(breaker)
    assert breaker.last_success_wall == clock.wall()
    clock.advance(3)
    fail(breaker)
    assert breaker.last_failure_wall == clock.wall() and breaker.last_failure_reason == "HTTP 503"


def test_closing_forgets_the_failures_seen_before_the_break() -> None:
    consecutive, clock, _ = make()
    fail(consecutive, 3)
    clock.advance(5)
    succeed(consecutive)  # the probe closes it
    fail(consecutive, 2)
    assert consecutive.state is State.CLOSED  # 2 new failures, not 5
    ratio, clock, _ = make(RATIO_ONLY)
    fail(ratio, 6)
    assert ratio.state is State.OPEN
    clock.advance(5)
    succeed(ratio)
    fail(ratio)
    assert ratio.state is State.CLOSED  # one call in a fresh window, below minimum_calls


def test_a_break_keeps_its_doubling_while_closed_briefly() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # the probe fails: 10 s
    clock.advance(10)
    succeed(breaker)
    clock.advance(599)
    fail(breaker, 3)
    assert breaker.retry_after() == 10.0


def test_the_doubling_resets_after_exactly_reset_after_seconds_closed() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)
    clock.advance(10)
    succeed(breaker)
    clock.advance(600)
    fail(breaker, 3)
    assert breaker.retry_after() == 5.0


def test_closed_time_counts_from_closing_not_from_the_probe_starting() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # 10 s break
    clock.advance(10)
    probe = breaker.acquire(lease=1000)
    clock.advance(590)  # a slow probe
    breaker.record(probe, Outcome.SUCCESS)
    clock.advance(20)  # closed for 20 s only (610 s since the probe started)
    fail(breaker, 3)
    assert breaker.retry_after() == 10.0


def test_jitter_scales_the_break_by_the_random_draw() -> None:
    config = sc.CircuitBreakerConfig(failure_threshold=1, open_duration=5.0, jitter=0.2)
    high, _, high_events = make(config, FixedRandomClock(0.75))  # spread 1 + 0.2 * 0.5
    fail(high)
    low, _, _ = make(config, FixedRandomClock(0.25))
    fail(low)
    assert high.retry_after() == pytest.approx(5.5) and high_events[0].retry_after == pytest.approx(5.5)
    assert low.retry_after() == pytest.approx(4.5)


def test_a_break_shorter_than_a_second_is_kept() -> None:
    breaker, _, _ = make(sc.CircuitBreakerConfig(failure_threshold=1, open_duration=0.5, max_open_duration=1.0,
                                                 jitter=0.0))
    fail(breaker)
    assert breaker.retry_after() == 0.5


def test_retry_after_reads_zero_when_a_call_may_go() -> None:
    breaker, clock, _ = make()
    assert breaker.retry_after() == 0.0
    fail(breaker, 3)
    clock.advance(7)  # the break is over but nobody has called yet
    assert breaker.retry_after() == 0.0


def test_an_open_refusal_says_why_and_when() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2)
    refused = refusal(breaker)
    assert str(refused) == (f"circuit for {ORIGIN} [admin] is open: open after failures (HTTP 503); "
                            "next attempt in 3.0s")
    assert refused.retry_after == 3.0 and refused.operation_class == "admin"


def test_transitions_are_frozen_for_every_listener() -> None:
    breaker, _, events = make()
    fail(breaker, 3)
    with pytest.raises(AttributeError):
        events[0].reason = "changed by a listener"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Permit(1).generation = 2  # type: ignore[misc]


def test_every_transition_moves_the_generation() -> None:
    breaker, clock, _ = make()
    seen = {breaker.generation}
    fail(breaker, 3)
    seen.add(breaker.generation)
    clock.advance(5)
    probe = breaker.acquire(lease=10)
    seen.add(breaker.generation)
    assert len(seen) == 3 and probe.generation == breaker.generation


def test_retry_after_never_reads_negative_just_past_a_deadline() -> None:
    breaker, clock, _ = make()
    breaker.force_open(duration=30)
    clock.advance(31)  # over, but nobody has called yet
    assert breaker.retry_after() == 0.0
    probing, clock, _ = make()
    fail(probing, 3)
    clock.advance(5)
    probing.acquire(lease=10)
    clock.advance(9.5)
    assert refusal(probing).retry_after == pytest.approx(0.5)
