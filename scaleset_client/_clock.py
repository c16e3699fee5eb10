"""Time and randomness, injected so that hours of backoff run in milliseconds in tests.

Every wait in the package goes through ``Clock.sleep`` with an optional ``threading.Event``
that cuts it short (a stopping listener, a closing client). ``scaleset_client.testing.FakeClock``
is the test double.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the package needs of time: monotonic for durations, wall for the wire and disk."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (token expiry, Retry-After dates, the state file)."""
        ...

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Wait ``seconds``; return True at once if ``interrupt`` is (or becomes) set."""
        ...

    def random(self) -> float:
        """A float in [0, 1) for jitter."""
        ...


class SystemClock:
    """The real clock. ``random`` uses its own generator so jitter does not touch the global one."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        return time.monotonic()

    def wall(self) -> float:
        """Unix time in seconds."""
        return time.time()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Sleep ``seconds``, or until ``event`` is set; True when the event ended it."""
        if interrupt is not None:
            return interrupt.wait(max(0.0, seconds))
        if seconds > 0:
            time.sleep(seconds)
        return False

    def random(self) -> float:
        """A uniform random number in [0, 1) (for jitter)."""
        with self._rng_lock:
            return self._rng.random()
