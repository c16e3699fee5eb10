"""``FakeClock``: time that moves only when told, so a one-hour outage runs in milliseconds."""

from __future__ import annotations

import random
import threading
from collections import deque

__all__ = ["FakeClock"]


class FakeClock:
    """A deterministic ``Clock``. ``sleep`` advances time at once instead of waiting.

    ``sleeps`` records the requested waits (the newest 10 000), which is what a test asserts on
    ("backed off at least 60 s"), never a measured duration; ``total_slept`` sums all of them.
    ``random`` is seeded, so jitter is repeatable.
    ``auto_advance`` is how far time moves on every ``monotonic()`` read (default 0).
    ``draw``, when given, is what every ``random()`` returns instead: 0.99 shows a jitter at its
    widest, 0.0 at its narrowest, so a test can pin a spread without depending on the seed.
    """

    def __init__(self, start: float = 1_000.0, wall: float = 1_800_000_000.0, seed: int = 7,
                 auto_advance: float = 0.0, draw: float | None = None) -> None:
        if draw is not None and not 0.0 <= draw < 1.0:
            raise ValueError("draw must be in [0, 1), as random() is")
        self._lock = threading.Lock()
        self._mono = start
        self._wall_offset = wall - start
        self._rng = random.Random(seed)
        self._auto = auto_advance
        self._draw = draw
        self.sleeps: deque[float] = deque(maxlen=10_000)
        self._slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            self._mono += self._auto
            return self._mono

    def wall(self) -> float:
        with self._lock:
            return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            self._mono += seconds

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock only (an NTP correction); monotonic time is unaffected."""
        with self._lock:
            self._wall_offset += seconds

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        if interrupt is not None and interrupt.is_set():
            return True
        with self._lock:
            self.sleeps.append(seconds)
            self._slept += max(0.0, seconds)
            self._mono += max(0.0, seconds)
        return False

    def random(self) -> float:
        if self._draw is not None:
            return self._draw
        with self._lock:
            return self._rng.random()

    @property
    def total_slept(self) -> float:
        with self._lock:
            return self._slept
