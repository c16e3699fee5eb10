"""Backoff and jitter: every pause the package draws comes from these few formulas.

A pause that many processes take at once (after an outage, a rate limit, a lost session) must
not end at once for all of them, or their retries arrive as a herd. Each formula takes a
``draw``, a uniform number in [0, 1) from the caller's clock (``Clock.random``), so a test with
a ``FakeClock(draw=...)`` pins a spread at its narrowest or widest.

- ``exponential``: the ceiling of the ``failures``-th pause, ``base`` doubling up to ``cap``;
- ``full``: anywhere in [0, value) (retries of one call: the AWS "full jitter" result);
- ``half_to_full``: in [value/2, value) (a listener's error pause: never zero, so a loop cannot spin);
- ``around``: ``value`` ± ``fraction`` (a period: polls, standby, looks at an origin, breaks);
- ``plus_up_to``: ``value`` plus up to ``extra`` (a fleet leaving the same break not at once).
"""

from __future__ import annotations

__all__ = ["around", "exponential", "full", "half_to_full", "plus_up_to"]


def exponential(failures: int, base: float, cap: float) -> float:
    """``base * 2**(failures-1)``, at most ``cap`` (``failures`` counts from 1; the exponent is
    bounded so a long outage cannot overflow)."""
    return min(cap, base * 2.0 ** min(max(failures, 1) - 1, 60))


def full(value: float, draw: float) -> float:
    return value * draw


def half_to_full(value: float, draw: float) -> float:
    return value * (0.5 + 0.5 * draw)


def around(value: float, fraction: float, draw: float) -> float:
    """``value`` spread by ±``fraction`` (0.2: between 80 % and 120 %)."""
    return value * (1.0 + fraction * (2.0 * draw - 1.0))


def plus_up_to(value: float, extra: float, draw: float) -> float:
    return value + extra * draw
