"""Callers held back by a break return spread out (issue 28, the herd from one client).

Many threads share one client's breaker (``--config``'s scale sets, a threaded runner). Before,
when the origin came back, every thread it had refused called in the same second (100 sessions
of one client: 100 polls within 0.9 s, ``python -m bench.herd --shared``). Now each refused
thread gets a turn, evenly over ``return_spread``; seen here as a caller sees it: admitted, or
refused with ``retry_after`` until its turn. Real threads: the callers are threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client._breaker import BreakerRegistry, CircuitBreaker, Outcome, State
from scaleset_client.testing import FakeClock

from .breakers import ORIGIN, fail, make, succeed

SPREAD = sc.CircuitBreakerConfig(failure_threshold=3, open_duration=5.0, max_open_duration=40.0, jitter=0.0,
                                 return_spread=10.0)


class Caller:
    """One thread that makes the calls it is given, in order: a caller with a lasting identity."""

    def __init__(self) -> None:
        self._work: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._results: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            self._results.put(work())

    def run(self, work: Callable[[], Any]) -> Any:
        self._work.put(work)
        return self._results.get(timeout=30)

    def stop(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=30)


def attempt(breaker: CircuitBreaker) -> float | None:
    """One call: None when admitted (it succeeds), else the ``retry_after`` it was told."""
    try:
        permit = breaker.acquire(lease=10)
    except sc.CircuitOpenError as exc:
        return exc.retry_after
    breaker.record(permit, Outcome.SUCCESS)
    return None


@pytest.fixture
def callers() -> Iterator[list[Caller]]:
    made = [Caller() for _ in range(5)]
    yield made
    for caller in made:
        caller.stop()


def _held_through_a_break(breaker: CircuitBreaker, clock: FakeClock, callers: list[Caller]) -> None:
    fail(breaker, 3)
    for caller in callers:
        assert caller.run(lambda: attempt(breaker)) == pytest.approx(5.0)
    clock.advance(5.0)


def test_threads_held_during_a_break_get_turns_evenly_over_the_spread(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    _held_through_a_break(breaker, clock, callers)
    succeed(breaker)  # this thread's probe brings the origin back
    assert breaker.state is State.CLOSED
    told = [caller.run(lambda: attempt(breaker)) for caller in callers]
    assert told == [None, pytest.approx(2.0), pytest.approx(4.0), pytest.approx(6.0), pytest.approx(8.0)]
    clock.advance(4.0)
    told = [caller.run(lambda: attempt(breaker)) for caller in callers[1:]]
    assert told == [None, None, pytest.approx(2.0), pytest.approx(4.0)]
    clock.advance(4.0)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers[3:]] == [None, None]
    # once through, a thread is not held again
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def test_a_turn_refusal_says_the_origin_is_back_and_when() -> None:
    breaker, clock, _ = make(SPREAD)
    holders = [Caller(), Caller()]
    try:
        _held_through_a_break(breaker, clock, holders)
        succeed(breaker)

        def refused() -> sc.CircuitOpenError | None:
            try:
                breaker.acquire(lease=10)
            except sc.CircuitOpenError as exc:
                return exc
            return None

        assert holders[0].run(refused) is None
        error = holders[1].run(refused)
        assert isinstance(error, sc.CircuitOpenError)
        assert "back after a break" in str(error) and "spread over 10s" in str(error)
        assert error.retry_after == pytest.approx(5.0)
        assert error.retry_at == pytest.approx(clock.wall() + 5.0)
    finally:
        for caller in holders:
            caller.stop()


def test_a_thread_never_refused_and_the_probes_own_are_not_held(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    fail(breaker, 3)
    for caller in callers:
        caller.run(lambda: attempt(breaker))
    assert attempt(breaker) == pytest.approx(5.0)  # this thread is held too (last), then makes the probe
    clock.advance(5.0)
    newcomer = Caller()
    try:
        succeed(breaker)
        assert attempt(breaker) is None  # the probe's thread goes on
        assert newcomer.run(lambda: attempt(breaker)) is None
    finally:
        newcomer.stop()


def test_one_held_thread_returns_at_once() -> None:
    breaker, clock, _ = make(SPREAD)
    only = Caller()
    try:
        _held_through_a_break(breaker, clock, [only])
        succeed(breaker)
        assert only.run(lambda: attempt(breaker)) is None
    finally:
        only.stop()


def test_a_spread_of_zero_lets_every_held_thread_go_at_once(callers: list[Caller]) -> None:
    breaker, clock, _ = make(sc.CircuitBreakerConfig(failure_threshold=3, jitter=0.0, return_spread=0.0))
    _held_through_a_break(breaker, clock, callers)
    succeed(breaker)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def _held_in_a_registry(callers: list[Caller]) -> tuple[BreakerRegistry, CircuitBreaker, FakeClock]:
    """A client's breakers (``Client.recover()`` calls the registry's ``probe_now``), one open,
    every caller refused by it."""
    clock = FakeClock()
    registry = BreakerRegistry(SPREAD, clock)
    breaker = registry.get(ORIGIN, "long_poll")
    fail(breaker, 3)
    for caller in callers:
        caller.run(lambda: attempt(breaker))
    return registry, breaker, clock


def test_recover_lets_every_held_thread_go_at_once(callers: list[Caller]) -> None:
    registry, breaker, _clock = _held_in_a_registry(callers)
    registry.probe_now()
    succeed(breaker)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def test_recover_during_the_turns_ends_them(callers: list[Caller]) -> None:
    registry, breaker, clock = _held_in_a_registry(callers)
    clock.advance(5.0)
    succeed(breaker)
    assert callers[4].run(lambda: attempt(breaker)) == pytest.approx(8.0)
    registry.probe_now()
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def test_a_look_that_found_the_origin_back_keeps_the_threads_held(callers: list[Caller]) -> None:
    """A reachability look ends the break early (``probe_now(release_held=False)``); the held
    threads still return by turns once the probe succeeds."""
    breaker, _clock, events = make(SPREAD)
    fail(breaker, 3)
    for caller in callers:
        caller.run(lambda: attempt(breaker))
    breaker.probe_now("the origin accepts connections again; probing", release_held=False)
    assert (events[-1].new, events[-1].reason) == (State.HALF_OPEN, "the origin accepts connections again; probing")
    succeed(breaker)
    assert callers[4].run(lambda: attempt(breaker)) == pytest.approx(8.0)


def test_threads_refused_while_a_probe_is_in_flight_are_held_too(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    fail(breaker, 3)
    clock.advance(5.0)
    probe = breaker.acquire(lease=10)
    for caller in callers:
        assert caller.run(lambda: attempt(breaker)) == pytest.approx(10.0)  # the probe's lease
    breaker.record(probe, Outcome.SUCCESS)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers][-1] == pytest.approx(8.0)


def test_a_new_break_during_the_turns_refuses_everyone_again(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    _held_through_a_break(breaker, clock, callers)
    succeed(breaker)
    fail(breaker, 3)  # the origin fails again before the turns are over
    assert breaker.state is State.OPEN
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [pytest.approx(5.0)] * 5
    clock.advance(5.0)
    succeed(breaker)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers][1] == pytest.approx(2.0)


def test_a_forced_break_that_runs_out_returns_its_threads_by_turns(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    breaker.force_open(duration=30.0)
    for caller in callers:
        assert caller.run(lambda: attempt(breaker)) == pytest.approx(30.0)
    clock.advance(30.0)
    assert attempt(breaker) is None  # the first caller after the period
    assert [caller.run(lambda: attempt(breaker)) for caller in callers][-1] == pytest.approx(8.0)


def test_reset_lets_every_held_thread_go_at_once(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    _held_through_a_break(breaker, clock, callers)
    breaker.reset()
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def test_return_spread_is_checked() -> None:
    with pytest.raises(sc.ConfigError, match="return_spread"):
        sc.CircuitBreakerConfig(return_spread=-1.0)


def test_recover_while_a_probe_is_in_flight_holds_nobody(callers: list[Caller]) -> None:
    registry, breaker, clock = _held_in_a_registry(callers)
    clock.advance(5.0)
    probe = breaker.acquire(lease=10)  # half open, its probe in flight
    registry.probe_now()  # recover(): everyone now
    for caller in callers:
        assert caller.run(lambda: attempt(breaker)) == pytest.approx(10.0)  # refused by the probe only
    breaker.record(probe, Outcome.SUCCESS)
    assert [caller.run(lambda: attempt(breaker)) for caller in callers] == [None] * 5


def test_threads_that_ended_are_given_no_turn(callers: list[Caller]) -> None:
    """A thread's id is reused once it ended: a new thread must not inherit a dead one's turn,
    and the dead ones do not stretch the living ones' spread."""
    breaker, clock, _ = make(SPREAD)
    _held_through_a_break(breaker, clock, callers)
    for caller in callers[:3]:
        caller.stop()
    newcomers = [Caller() for _ in range(3)]
    try:
        succeed(breaker)
        assert [caller.run(lambda: attempt(breaker)) for caller in callers[3:]] == [None, pytest.approx(5.0)]
        assert [caller.run(lambda: attempt(breaker)) for caller in newcomers] == [None] * 3
    finally:
        for caller in newcomers:
            caller.stop()


def test_retry_after_tells_a_held_thread_its_turn(callers: list[Caller]) -> None:
    breaker, clock, _ = make(SPREAD)
    _held_through_a_break(breaker, clock, callers)
    succeed(breaker)
    assert callers[4].run(breaker.retry_after) == pytest.approx(8.0)
    assert callers[4].run(lambda: attempt(breaker)) == pytest.approx(8.0)
    assert breaker.retry_after() == 0.0  # a thread never held
