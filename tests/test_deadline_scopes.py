"""The ``Deadline`` scope on its own: what it accepts, how a cancel travels (outer to inner, once,
with the first reason), nested and detached scopes, subscriptions, one scope across threads, and
the watchdog that notices a cancel nobody reads. Observed through the public scope API and what a
caller gets (errors, reasons, remaining time, callbacks run, log records)."""

from __future__ import annotations

import logging
import math
import threading

import pytest

import scaleset_client as sc
from scaleset_client._deadline import WATCHDOG, current, current_scopes, detached
from scaleset_client.testing import FakeClock

from .helpers import wait_until


@pytest.mark.parametrize("seconds", [-1, math.nan, True, "5"])
def test_a_deadline_that_is_not_a_non_negative_number_is_a_config_error(seconds: object) -> None:
    with pytest.raises(sc.ConfigError, match="a deadline must be a number of seconds >= 0 or None"):
        sc.Deadline(seconds)  # type: ignore[arg-type]


def test_zero_and_none_are_valid() -> None:
    clock = FakeClock()
    assert sc.Deadline(0, clock=clock).expired
    unlimited = sc.Deadline(None, clock=clock)
    assert unlimited.remaining() == math.inf and not unlimited.expired
    assert repr(unlimited) == "Deadline(none)"


def test_a_set_cancel_on_event_cancels_the_scope_when_read_even_before_the_watchdog_looks() -> None:
    stop = threading.Event()
    scope = sc.Deadline(cancel_on=stop)  # never entered: the watchdog does not watch it
    assert not scope.cancelled and scope.cancel_reason() == ""
    stop.set()
    assert scope.cancelled
    assert scope.cancel_reason() == "stop requested"
    assert "cancelled (stop requested)" in repr(scope)


def test_cancelling_an_outer_scope_cancels_the_inner_one_with_the_outer_reason() -> None:
    outer = sc.Deadline()
    with outer, sc.Deadline() as inner:
        assert not inner.cancelled and inner.cancel_reason() == ""
        outer.cancel("shutting down")
        assert inner.cancelled
        assert inner.cancel_reason() == "shutting down"


def test_a_second_cancel_keeps_the_first_reason_and_runs_callbacks_once() -> None:
    scope = sc.Deadline()
    seen: list[str] = []
    scope.subscribe(seen.append)
    scope.cancel("first")
    scope.cancel("second")
    assert scope.cancel_reason() == "first"
    assert seen == ["first"]


def test_subscribing_inside_an_already_cancelled_scope_fires_at_once() -> None:
    outer = sc.Deadline()
    outer.cancel("gone")
    with outer, sc.Deadline() as inner:
        seen: list[str] = []
        handles = inner.subscribe(seen.append)
        assert seen == ["gone"]
        sc.Deadline.unsubscribe(handles)


def test_an_unsubscribed_callback_is_not_called() -> None:
    outer = sc.Deadline()
    with outer, sc.Deadline() as inner:
        seen: list[str] = []
        sc.Deadline.unsubscribe(inner.subscribe(seen.append))
        outer.cancel("later")
        assert seen == []
        assert inner.cancelled


def test_an_inner_scope_only_shortens_the_time_an_outer_one_allows() -> None:
    clock = FakeClock()
    with sc.Deadline(10, clock=clock) as outer:
        with sc.Deadline(100, clock=clock) as longer:
            assert longer.remaining() == pytest.approx(10)
        with sc.Deadline(3, clock=clock) as shorter:
            assert shorter.remaining() == pytest.approx(3)
            clock.advance(4)
            assert shorter.expired and not outer.expired
            assert "6.000s left" in repr(outer)


def test_a_detached_scope_ignores_the_cancel_and_the_time_of_enclosing_scopes() -> None:
    clock = FakeClock()
    outer = sc.Deadline(1, clock=clock)
    with outer:
        outer.cancel("stop")
        with detached(30, clock=clock, reason="clean-up") as cleanup:
            assert not cleanup.cancelled and cleanup.cancel_reason() == ""
            assert cleanup.remaining() == pytest.approx(30)
            assert list(current_scopes()) == [cleanup]
            with sc.Deadline(clock=clock) as inner:
                assert list(current_scopes()) == [inner, cleanup]
                assert not inner.cancelled
        assert list(current_scopes()) == [outer]
    assert current() is None and list(current_scopes()) == []


def test_one_scope_entered_twice_in_a_thread_stays_current_until_the_last_exit() -> None:
    scope = sc.Deadline()
    with scope:
        with scope:
            assert current() is scope
        assert current() is scope
        assert list(current_scopes()) == [scope]
    assert current() is None


def test_one_scope_shared_by_threads_follows_each_thread_and_its_cancel_reaches_all() -> None:
    stop = threading.Event()
    scope = sc.Deadline(cancel_on=stop)
    inside = threading.Barrier(3)
    seen: list[bool] = []

    def worker() -> None:
        with scope:
            inside.wait(timeout=10)
            wait_until(lambda: scope.cancelled)
            seen.append(current() is scope)
        seen.append(current() is None)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(timeout=10)
    assert current() is None  # the scope never leaked into this thread
    stop.set()  # the watchdog (or a reader) notices and cancels
    for t in threads:
        t.join(timeout=20)
    assert seen == [True, True, True, True]
    assert scope.cancel_reason() == "stop requested"


def test_the_watchdog_notices_a_cancel_on_event_with_nobody_reading() -> None:
    stop = threading.Event()
    scope = sc.Deadline(cancel_on=stop)
    fired = threading.Event()
    scope.subscribe(lambda reason: fired.set())
    with scope:
        stop.set()
        assert fired.wait(timeout=15), "the watchdog did not cancel the scope"
    assert scope.cancel_reason() == "stop requested"


def test_a_failing_watchdog_callback_is_logged_and_the_watchdog_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="scaleset_client._deadline")

    def boom() -> None:
        raise RuntimeError("callback broke")

    WATCHDOG.schedule(0, boom)
    wait_until(lambda: any(r.getMessage() == "watchdog callback failed" for r in caplog.records))
    after = threading.Event()
    WATCHDOG.schedule(0, after.set)
    assert after.wait(timeout=15)


def test_cancelled_watchdog_timers_never_fire_and_later_ones_still_do() -> None:
    fired: list[int] = []
    timers = [WATCHDOG.schedule(3600, lambda i=i: fired.append(i)) for i in range(100)]  # type: ignore[misc]
    for timer in timers:
        WATCHDOG.cancel(timer)
    WATCHDOG.cancel(timers[0])  # cancelling twice is harmless
    done = threading.Event()
    WATCHDOG.schedule(0, done.set)
    assert done.wait(timeout=15)
    assert fired == []
