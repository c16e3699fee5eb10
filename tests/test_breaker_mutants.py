"""The breaker's promises, each pinned where an outside observer sees it.

Written against the survivors of ``tools/mutate.py breaker``: what listeners receive (state,
reason, the break's length), what ``retry_after()`` and a refusal report on a FakeClock, which
calls are admitted, what a snapshot restores in another process, and what is logged. No test
reads a private attribute.
"""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client._breaker import BreakerRegistry, CircuitBreaker, Outcome, Permit, State, Transition
from scaleset_client.testing import FakeClock

ORIGIN = "https://h:443"
CFG = sc.CircuitBreakerConfig(failure_threshold=3, window_size=10, minimum_calls=6, failure_ratio=0.5,
                              open_duration=5.0, max_open_duration=40.0, jitter=0.0)
RATIO_ONLY = sc.CircuitBreakerConfig(failure_threshold=100, window_size=10, minimum_calls=6, failure_ratio=0.5,
                                     open_duration=5.0, max_open_duration=40.0, jitter=0.0)


class FixedRandomClock(FakeClock):
    """A FakeClock whose jitter draw is always ``value``, so a break's length is exact."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self._value = value

    def random(self) -> float:
        return self._value


def make(config: sc.CircuitBreakerConfig = CFG,
         clock: FakeClock | None = None) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    clock = clock or FakeClock()
    events: list[Transition] = []
    return CircuitBreaker(ORIGIN, "admin", config, clock, events.extend), clock, events


def fail(breaker: CircuitBreaker, n: int = 1, reason: str = "HTTP 503") -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(lease=10), Outcome.FAILURE, reason)


def succeed(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(lease=10), Outcome.SUCCESS)


def moves(events: list[Transition]) -> list[tuple[State, State, str]]:
    return [(e.old, e.new, e.reason) for e in events]


def refusal(breaker: CircuitBreaker) -> sc.CircuitOpenError:
    with pytest.raises(sc.CircuitOpenError) as info:
        breaker.acquire(lease=10)
    return info.value


# -- counting: what trips and what does not --------------------------------------------------------
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


# -- the break: length, doubling, jitter -----------------------------------------------------------
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


def test_reset_forgets_the_doubling() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # 10 s
    breaker.reset()
    assert events[-1].new is State.CLOSED and events[-1].reason == "reset"
    fail(breaker, 3)
    assert breaker.retry_after() == 5.0


# -- half-open: probes, leases, retry_after --------------------------------------------------------
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


def test_retry_after_reads_zero_when_a_call_may_go() -> None:
    breaker, clock, _ = make()
    assert breaker.retry_after() == 0.0
    fail(breaker, 3)
    clock.advance(7)  # the break is over but nobody has called yet
    assert breaker.retry_after() == 0.0


# -- refusals and operator states ------------------------------------------------------------------
def test_an_open_refusal_says_why_and_when() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2)
    refused = refusal(breaker)
    assert str(refused) == (f"circuit for {ORIGIN} [admin] is open: open after failures (HTTP 503); "
                            "next attempt in 3.0s")
    assert refused.retry_after == 3.0 and refused.operation_class == "admin"


def test_force_open_for_a_duration_reports_the_time_left_and_ends_on_time() -> None:
    breaker, clock, events = make()
    breaker.force_open(duration=30)
    assert moves(events) == [(State.CLOSED, State.FORCED_OPEN, "forced open")]
    clock.advance(10)
    assert breaker.retry_after() == 20.0
    refused = refusal(breaker)
    assert refused.retry_after == 20.0
    assert str(refused) == (f"circuit for {ORIGIN} [admin] is forced_open: forced open by an operator; "
                            "next attempt in 20.0s")
    clock.advance(20)  # exactly over
    assert breaker.acquire(lease=1).probe_id == 0
    assert moves(events)[-1] == (State.FORCED_OPEN, State.CLOSED, "forced open period over")


def test_force_open_without_a_duration_holds_until_reset() -> None:
    breaker, clock, _ = make()
    breaker.force_open()
    clock.advance(1e6)
    assert breaker.retry_after() is None
    refused = refusal(breaker)
    assert refused.retry_after is None
    assert str(refused).endswith("forced open by an operator; reset it to retry")


def test_operator_transitions_reach_the_listeners() -> None:
    breaker, _, events = make()
    breaker.disable()
    breaker.metrics_only()
    breaker.force_open(reason="maintenance")
    breaker.reset()
    assert moves(events) == [(State.CLOSED, State.DISABLED, "disabled"),
                             (State.DISABLED, State.METRICS_ONLY, "metrics only"),
                             (State.METRICS_ONLY, State.FORCED_OPEN, "maintenance"),
                             (State.FORCED_OPEN, State.CLOSED, "reset")]


def test_metrics_only_logs_what_would_have_opened(caplog: pytest.LogCaptureFixture) -> None:
    breaker, _, events = make()
    breaker.metrics_only()
    with caplog.at_level(logging.INFO, logger="scaleset_client._breaker"):
        fail(breaker, 3)
    assert breaker.state is State.METRICS_ONLY and len(events) == 1
    assert any("would open (metrics only): 3 consecutive failures" in r.getMessage() for r in caplog.records)


def test_probe_now_ends_the_break_and_says_so() -> None:
    breaker, _, events = make()
    breaker.probe_now()  # closed: nothing to do
    assert events == []
    fail(breaker, 3)
    breaker.probe_now()
    assert moves(events)[-1] == (State.OPEN, State.HALF_OPEN, "recover() asked for a probe")
    assert breaker.retry_after() == 0.0 and breaker.acquire(lease=10).probe_id
    assert refusal(breaker).retry_after == 10.0


def test_transitions_are_frozen_for_every_listener() -> None:
    breaker, _, events = make()
    fail(breaker, 3)
    with pytest.raises(AttributeError):
        events[0].reason = "changed by a listener"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Permit(1).generation = 2  # type: ignore[misc]


# -- snapshot and restore across processes ---------------------------------------------------------
def roundtrip(breaker: CircuitBreaker, clock: FakeClock, config: sc.CircuitBreakerConfig = CFG,
              elapsed: float = 0.0) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    snap = breaker.snapshot()
    other = FakeClock(start=50.0, wall=clock.wall() + elapsed)
    restored, _, events = make(config, other)
    restored.restore(snap)
    return restored, other, events


def test_snapshot_is_plain_data_a_newer_release_can_read() -> None:
    breaker, clock, _ = make()
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, reason="HTTP 502")
    assert breaker.snapshot() == {
        "origin": ORIGIN, "operation_class": "admin", "state": "closed", "open_remaining": 0.0,
        "reopen_count": 0, "consecutive_failures": 1, "window": [1, 1, 0, 1], "saved_wall": clock.wall(),
        "last_failure_reason": "HTTP 502",
    }
    fail(breaker, 2)
    clock.advance(1)
    assert {k: breaker.snapshot()[k] for k in ("state", "open_remaining")} == {"state": "open",
                                                                                "open_remaining": 4.0}
    breaker.force_open()
    assert breaker.snapshot()["open_remaining"] is None


def test_restore_keeps_the_break_exactly_and_announces_itself() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(2)
    restored, _, events = roundtrip(breaker, clock)
    assert restored.retry_after() == 3.0
    assert moves(events) == [(State.CLOSED, State.OPEN, "restored from a snapshot")]
    assert str(refusal(restored)).endswith("open after failures (HTTP 503); next attempt in 3.0s")


def test_restore_keeps_the_failure_counts() -> None:
    breaker, clock, _ = make()
    fail(breaker, 2)
    restored, _, _ = roundtrip(breaker, clock)
    fail(restored)
    assert restored.state is State.OPEN  # 2 before the restart + 1 after
    ratio, clock, _ = make(RATIO_ONLY)
    for _ in range(2):
        fail(ratio)
        succeed(ratio)
    restored, _, _ = roundtrip(ratio, clock, RATIO_ONLY)
    fail(restored)
    assert restored.state is State.CLOSED  # 5 calls: still below minimum_calls
    fail(restored)
    assert restored.state is State.OPEN  # 4 of 6


def test_restore_replaces_the_window_instead_of_adding_to_it() -> None:
    source, source_clock, _ = make(RATIO_ONLY)
    succeed(source, 3)
    target, _, _ = make(RATIO_ONLY, FakeClock(wall=source_clock.wall()))
    fail(target, 5)
    target.restore(source.snapshot())
    fail(target, 2)
    assert target.state is State.CLOSED  # 2 of 5 calls, not 7 of 10


def test_restore_keeps_the_doubling() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # 10 s
    clock.advance(10)
    succeed(breaker)
    restored, _, _ = roundtrip(breaker, clock)
    fail(restored, 3)
    assert restored.retry_after() == 10.0


@pytest.mark.parametrize(("saved", "expected"), [(0, 5.0), (-5, 5.0), (2, 20.0), (100, 40.0)])
def test_restored_doubling_is_clamped(saved: int, expected: float) -> None:
    breaker, clock, _ = make()
    snap = breaker.snapshot()
    snap["reopen_count"] = saved
    restored, _, _ = make(CFG, FakeClock(wall=clock.wall()))
    restored.restore(snap)
    fail(restored, 3)
    assert restored.retry_after() == expected


def test_a_break_that_ended_while_stopped_probes_at_once() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(8)
    restored, _, _ = roundtrip(breaker, clock)
    assert restored.state is State.HALF_OPEN and restored.retry_after() == 0.0
    open_later, clock, _ = make()
    fail(open_later, 3)
    restored, _, _ = roundtrip(open_later, clock, elapsed=7.0)  # the restart took longer than the break
    assert restored.state is State.HALF_OPEN


def test_a_half_open_snapshot_restores_as_ready_to_probe() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.advance(5)
    breaker.acquire(lease=10)
    restored, _, events = roundtrip(breaker, clock)
    assert events[-1].new is State.OPEN and restored.state is State.HALF_OPEN
    assert restored.acquire(lease=10).probe_id


def test_forced_open_survives_a_restart() -> None:
    held, clock, _ = make()
    held.force_open()
    restored, other, _ = roundtrip(held, clock)
    other.advance(1e6)
    assert restored.state is State.FORCED_OPEN and restored.retry_after() is None
    timed, clock, _ = make()
    timed.force_open(duration=30)
    restored, _, _ = roundtrip(timed, clock)
    assert restored.retry_after() == 30.0
    long, clock, _ = make()
    long.force_open(duration=1000)
    restored, _, _ = roundtrip(long, clock)
    assert restored.retry_after() == 2 * CFG.max_open_duration  # a forced hold is capped at twice the max


def test_an_open_snapshot_without_a_remaining_time_probes_at_once() -> None:
    breaker, clock, _ = make()
    snap = {"origin": ORIGIN, "operation_class": "admin", "state": "open", "open_remaining": None,
            "saved_wall": clock.wall()}
    breaker.restore(snap)
    assert breaker.state is State.HALF_OPEN and breaker.retry_after() == 0.0


def test_a_sparse_snapshot_restores_the_defaults() -> None:
    breaker, _, events = make()
    fail(breaker, 3)
    breaker.restore({"state": "open", "open_remaining": 5.0})
    assert str(refusal(breaker)).endswith("open after failures (unknown); next attempt in 5.0s")
    breaker.restore({})
    assert breaker.state is State.CLOSED and events[-1].reason == "restored from a snapshot"
    assert breaker.last_failure_reason == ""
    fail(breaker, 2)
    assert breaker.state is State.CLOSED
    breaker.restore({"state": "no such state"})
    assert breaker.state is State.CLOSED and breaker.last_failure_reason == "HTTP 503"  # ignored as a whole


def test_a_restored_reason_is_cut_to_200_characters() -> None:
    breaker, _, _ = make()
    breaker.restore({"state": "closed", "last_failure_reason": "x" * 300})
    assert breaker.last_failure_reason == "x" * 200


def test_a_restored_window_keeps_the_newest_calls() -> None:
    breaker, _, _ = make(RATIO_ONLY)
    breaker.restore({"state": "closed", "window": [1] * 10 + [0] * 10})  # more than the window holds
    fail(breaker)
    assert breaker.state is State.CLOSED  # 1 of the newest 10
    short, _, _ = make(RATIO_ONLY)
    short.restore({"state": "closed", "window": [0, 0, 1, 1, 1]})
    fail(short)
    assert short.state is State.OPEN  # 4 of 6


# -- the registry ----------------------------------------------------------------------------------
def test_registry_controls_select_by_origin_and_operation_class() -> None:
    registry = BreakerRegistry(CFG, FakeClock())
    poll, admin = registry.get("https://a:443", "long_poll"), registry.get("https://a:443", "admin")
    other = registry.get("https://b:443", "long_poll")
    assert registry.get("https://a:443", "admin") is admin
    registry.force_open("https://a:443/", operation_class="long_poll")
    assert (poll.state, admin.state, other.state) == (State.FORCED_OPEN, State.CLOSED, State.CLOSED)
    registry.disable("https://b:443")
    assert (other.state, admin.state) == (State.DISABLED, State.CLOSED)
    registry.metrics_only(operation_class="admin")
    assert (admin.state, poll.state) == (State.METRICS_ONLY, State.FORCED_OPEN)
    assert registry.states() == {"https://a:443 long_poll": "forced_open", "https://a:443 admin": "metrics_only",
                                 "https://b:443 long_poll": "disabled"}
    registry.reset("https://a:443", operation_class="long_poll")
    assert poll.state is State.CLOSED


def test_registry_probe_now_and_snapshot_restore() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(CFG, clock)
    fail(registry.get("https://a:443", "admin"), 3)
    registry.probe_now()
    assert registry.states() == {"https://a:443 admin": "half_open"}
    fail(registry.get("https://a:443", "admin"))  # the probe fails: 10 s
    saved = registry.snapshot()
    fresh = BreakerRegistry(CFG, FakeClock(wall=clock.wall()))
    fresh.restore([None, {"operation_class": "admin", "state": "open"}, {"origin": "", "operation_class": "x"},
                   *saved])  # type: ignore[list-item]
    assert fresh.states() == {"https://a:443 admin": "open"}
    assert fresh.get("https://a:443", "admin").retry_after() == 10.0


def test_registry_logs_transitions_and_broken_listeners(caplog: pytest.LogCaptureFixture) -> None:
    registry = BreakerRegistry(CFG, FakeClock())

    def broken(t: Transition) -> None:
        raise RuntimeError("listener bug")

    registry.add_listener(broken)
    with caplog.at_level(logging.INFO, logger="scaleset_client._breaker"):
        fail(registry.get("https://a:443", "admin"), 3)
        registry.reset()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "circuit https://a:443 [admin]: closed -> open (3 consecutive failures (HTTP 503))"
            ) in lines
    assert (logging.INFO, "circuit https://a:443 [admin]: open -> closed (reset)") in lines
    assert sum("circuit listener" in m and "failed" in m for _, m in lines) == 2


def test_reset_and_operator_modes_start_from_clean_counts() -> None:
    breaker, _, _ = make()
    fail(breaker, 2)
    breaker.reset()
    fail(breaker, 2)
    assert breaker.state is State.CLOSED  # reset is "back to CLOSED with clean counters"
    breaker.metrics_only()
    breaker.reset()
    fail(breaker, 2)
    assert breaker.state is State.CLOSED


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


def test_a_breaker_put_to_a_probe_can_be_saved() -> None:
    breaker, clock, _ = make()
    fail(breaker, 3)
    breaker.probe_now()
    restored, _, _ = roundtrip(breaker, clock)
    assert restored.state is State.HALF_OPEN and restored.retry_after() == 0.0


def test_a_sparse_snapshot_starts_the_doubling_from_zero() -> None:
    breaker, _, _ = make()
    breaker.restore({"state": "closed"})
    fail(breaker, 3)
    assert breaker.retry_after() == 5.0


def test_restore_replaces_the_saved_window_in_every_state() -> None:
    breaker, clock, _ = make()
    fail(breaker, 2)
    breaker.restore({"state": "open", "open_remaining": 5.0, "window": [], "saved_wall": clock.wall()})
    assert breaker.snapshot()["window"] == [] and breaker.snapshot()["consecutive_failures"] == 0
