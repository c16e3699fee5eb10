"""The operator's controls on a breaker and on the registry: force open (for a while or until
reset), reset, probe now, metrics-only mode, selecting breakers by origin and operation class, and
what the listeners and the log hear of each.
"""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client._breaker import BreakerRegistry, State, Transition
from scaleset_client.testing import FakeClock

from .breakers import CFG, ORIGIN, fail, make, moves, refusal


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


def test_registry_operator_controls_act_per_origin() -> None:
    registry = BreakerRegistry(CFG, FakeClock())
    a, b = registry.get("https://a:443", "admin"), registry.get("https://b:443", "admin")
    registry.force_open("https://a:443")
    assert (a.state, b.state) == (State.FORCED_OPEN, State.CLOSED)
    assert registry.states() == {"https://a:443 admin": "forced_open", "https://b:443 admin": "closed"}
    registry.reset()
    assert a.state is State.CLOSED


def test_reset_forgets_the_doubling() -> None:
    breaker, clock, events = make()
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker)  # 10 s
    breaker.reset()
    assert events[-1].new is State.CLOSED and events[-1].reason == "reset"
    fail(breaker, 3)
    assert breaker.retry_after() == 5.0


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
