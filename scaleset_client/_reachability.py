"""Which origins refused us, and the bare TCP "looks" that tell when they are back.

When an origin's last failure never reached it (refused, DNS, connect timeout), a TCP connect
alone can tell whether it accepts again, without an HTTP request the service would have to
answer. Looks are spaced by ``CircuitBreakerConfig.reachability_check`` (+-50 % jitter, so a
fleet spreads out); when one connects, the origin's open breakers are put to a probe at once.

Why each interval is drawn afresh rather than kept at a fixed phase from the first failure
(measured for issue 28 with ``bench/herd.py``): a fixed phase keeps a fleet's spread exactly as
the outage found it. For a fleet whose polls were evenly spread it returns a little more evenly
(100 clients, 20 s, three seeds: 8-10 requests in the busiest second against 9-13), but a fleet
that failed in step, as long polls cut at the same moment do, stays in step for the whole outage
and returns in one second (74 requests in the busiest second against 10 with fresh jitter).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from urllib.parse import urlsplit

from ._breaker import BreakerRegistry
from ._clock import Clock
from ._jitter import around

__all__ = ["Reachability"]

log = logging.getLogger(__name__)


class Reachability:
    """Per-origin "never got through" marks and the schedule of TCP looks. Thread-safe."""

    def __init__(self, breakers: BreakerRegistry, clock: Clock, interval: float) -> None:
        self._breakers = breakers
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._unreachable: set[str] = set()  # origins whose last failure never reached them
        self._next_look_at: dict[str, float] = {}  # origin -> when the next TCP look is due

    def note(self, origin: str, reached: bool | None) -> None:
        """Record whether the last attempt reached ``origin`` (None: the outcome does not say)."""
        if reached is True:
            self._unreachable.discard(origin)
        elif reached is False:
            self._unreachable.add(origin)

    def unreachable(self, origin: str) -> bool:
        """True when the origin's last failure was a connection that never got through."""
        return origin in self._unreachable

    def next_look(self, origin: str) -> float:
        """Seconds until the next TCP look at ``origin`` is due (0: now)."""
        with self._lock:
            due = self._next_look_at.get(origin, -math.inf)
        return max(0.0, due - self._clock.monotonic())

    def look(self, origin: str, timeout: float, *, force: bool = False) -> bool:
        """A TCP connect when the next look is due, or now with ``force``; True when it connected
        and an open breaker of the origin was put to a probe. ``timeout`` bounds the connect (the
        caller passes what its deadline leaves)."""
        if origin not in self._unreachable or (self._interval <= 0 and not force):
            return False
        now = self._clock.monotonic()
        with self._lock:
            if not force and now < self._next_look_at.get(origin, -math.inf):
                return False
            self._next_look_at[origin] = now + around(self._interval, 0.5, self._clock.random())
        parts = urlsplit(origin)
        if not parts.hostname or not parts.port or timeout <= 0:
            return False
        try:
            with socket.create_connection((parts.hostname.strip("[]"), parts.port), timeout=timeout):
                pass
        except OSError:
            return False
        opened = [b for b in self._breakers.all() if b.origin == origin and b.state.value == "open"]
        for breaker in opened:
            breaker.probe_now("the origin accepts connections again; probing", release_held=False)
        if opened:
            log.info("%s accepts connections again; probing it now", origin)
        return bool(opened)
