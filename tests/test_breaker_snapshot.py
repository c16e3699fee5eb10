"""A breaker saved and restored in another process: the snapshot is plain data, and a restore keeps
the break (never beyond its cap), the counts, the window and the doubling, whatever state it was in.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._breaker import CircuitBreaker, State, Transition
from scaleset_client.testing import FakeClock

from .breakers import CFG, ORIGIN, RATIO_ONLY, fail, make, moves, refusal, succeed


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
