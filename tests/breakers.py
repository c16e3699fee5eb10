"""A lone CircuitBreaker on a FakeClock, and the verbs the breaker tests speak in.

``make()`` builds one (origin ``ORIGIN``, class ``admin``) whose transitions land in a list;
``fail``/``succeed`` take a permit and record an outcome; ``moves`` and ``refusal`` read what an
outside observer sees. No helper reads a private attribute.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._breaker import CircuitBreaker, Outcome, State, Transition
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
