"""Server hints, the not-before gate and the retry budget: the parts of retrying that are shared.

GitHub's rules, in order: ``Retry-After`` (seconds or an HTTP date) wins; else
``x-ratelimit-remaining: 0`` means wait until ``x-ratelimit-reset``; else a secondary rate limit
(403/429 whose message says so, no header) means at least 60 s, growing each time it repeats.
A hint arms a per-origin gate that every thread honours before sending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ._clock import Clock

__all__ = ["RateGate", "RetryBudget", "hint_seconds", "is_throttle", "server_now"]

SECONDARY_MIN_WAIT = 60.0
_SECONDARY_MARKERS = (b"secondary rate limit", b"abuse detection")


def parse_retry_after(value: str, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), or None."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - now_wall)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, 10 * 365 * 86400.0)


def _is_secondary(response: requests.Response) -> bool:
    body = (response.content or b"")[:2048].lower()
    return any(marker in body for marker in _SECONDARY_MARKERS)


def is_throttle(response: requests.Response) -> bool:
    """429, or a 403 that is GitHub's rate limit rather than a permission problem."""
    if response.status_code == 429:
        return True
    if response.status_code == 403:
        if response.headers.get("x-ratelimit-remaining", "").strip() == "0":
            return True
        return "retry-after" in response.headers or _is_secondary(response)
    return False


def server_now(response: requests.Response, fallback: float) -> float:
    """GitHub's wall time when it answered: its ``Date`` header, else ``fallback``.

    Absolute hints (an HTTP-date ``Retry-After``, ``x-ratelimit-reset``) are instants on GitHub's
    clock, so they are measured against GitHub's clock: a machine an hour slow must still wait
    the 3 s the server meant, not an hour.
    """
    header = response.headers.get("Date")
    if header:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None and when.tzinfo is not None:
            return when.timestamp()
    return fallback


def hint_seconds(response: requests.Response, now_wall: float, secondary_strikes: int = 0, *,
                 server_time: float | None = None) -> float | None:
    """How long the server asked us to wait, by GitHub's rules; None when it said nothing.

    ``now_wall`` is this machine's wall time; ``server_time`` (GitHub's time as the client knows
    it from earlier ``Date`` headers) is used when the response has no ``Date`` of its own.
    """
    github_now = server_now(response, now_wall if server_time is None else server_time)
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        parsed = parse_retry_after(retry_after, github_now)
        if parsed is not None:
            return parsed
    if response.headers.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            reset = float(response.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            reset = None
        if reset is not None:
            return max(0.0, reset - github_now)
    if response.status_code in (403, 429) and _is_secondary(response):
        return SECONDARY_MIN_WAIT * 2.0 ** min(secondary_strikes, 6)
    return None


class RateGate:
    """Per-origin "no request before" instants (monotonic), honoured by every thread."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._strikes: dict[str, int] = {}
        self._listeners: list[Callable[[str, float], None]] = []

    def add_listener(self, listener: Callable[[str, float], None]) -> None:
        """Call ``listener(origin, seconds)`` when a hold is set or extended (outside the lock):
        the client's state file saves on it."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def arm(self, origin: str, seconds: float) -> float:
        """Hold ``origin`` for ``seconds`` from now (never shortens an existing hold)."""
        with self._lock:
            until = self._clock.monotonic() + seconds
            extended = until > self._until.get(origin, 0.0)
            if extended:
                self._until[origin] = until
            held, listeners = self._until[origin], self._listeners
        if extended:
            for listener in listeners:
                try:
                    listener(origin, seconds)
                except Exception:  # a broken listener must not break the call that armed the gate
                    logging.getLogger(__name__).exception("rate gate listener %r failed", listener)
        return held

    def strike(self, origin: str) -> int:
        """Count a secondary-limit hit; returns how many came before it."""
        with self._lock:
            n = self._strikes.get(origin, 0)
            self._strikes[origin] = n + 1
            return n

    def strikes(self, origin: str) -> int:
        """How many secondary-limit hits ``origin`` has had since its last success (a pure read)."""
        with self._lock:
            return self._strikes.get(origin, 0)

    def clear_strikes(self, origin: str) -> None:
        """Forget the secondary-rate-limit strikes of ``origin`` after a success."""
        with self._lock:
            self._strikes.pop(origin, None)

    def wait_for(self, origin: str) -> float:
        """Seconds until ``origin`` may be sent to (0 when now)."""
        with self._lock:
            return max(0.0, self._until.get(origin, 0.0) - self._clock.monotonic())

    def snapshot(self) -> dict[str, float]:
        """Wall-clock instants, for the state file."""
        now_m, now_w = self._clock.monotonic(), self._clock.wall()
        with self._lock:
            return {o: now_w + (u - now_m) for o, u in self._until.items() if u > now_m}

    def restore(self, data: dict[str, Any], cap: float) -> None:
        """Load a ``snapshot()``; waits longer than ``cap`` seconds are cut to it."""
        now_m, now_w = self._clock.monotonic(), self._clock.wall()
        for origin, wall_until in data.items():
            try:
                left = min(float(wall_until) - now_w, cap)
            except (TypeError, ValueError):
                continue
            if left > 0:
                self.arm(str(origin), left)
        del now_m


class RetryBudget:
    """A token bucket per origin that caps retries (not first attempts).

    A retry costs 1 token (a timeout 2); a first-try success earns 0.2 back; one token trickles
    back every 30 s, so a quiet client can always retry now and then. Capacity 0 disables it.
    """

    EARN = 0.2
    TRICKLE_SECONDS = 30.0

    def __init__(self, capacity: float, clock: Clock) -> None:
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}

    def _level(self, origin: str, now: float) -> float:
        tokens, stamp = self._tokens.get(origin, (self._capacity, now))
        return min(self._capacity, tokens + (now - stamp) / self.TRICKLE_SECONDS)

    def spend(self, origin: str, cost: float = 1.0) -> bool:
        """Take ``cost`` retry tokens for ``origin``; False when the budget is spent."""
        if self._capacity <= 0:
            return True
        with self._lock:
            now = self._clock.monotonic()
            level = self._level(origin, now)
            if level < cost:
                self._tokens[origin] = (level, now)
                return False
            self._tokens[origin] = (level - cost, now)
            return True

    def earn(self, origin: str) -> None:
        """A success refills part of ``origin``'s budget."""
        if self._capacity <= 0:
            return
        with self._lock:
            now = self._clock.monotonic()
            self._tokens[origin] = (min(self._capacity, self._level(origin, now) + self.EARN), now)

    def level(self, origin: str) -> float:
        """Tokens left for ``origin``."""
        with self._lock:
            return self._capacity if self._capacity <= 0 else self._level(origin, self._clock.monotonic())

    def snapshot(self) -> dict[str, float]:
        """The levels as JSON-able data, for the state file."""
        with self._lock:
            now = self._clock.monotonic()
            return {o: round(self._level(o, now), 3) for o in self._tokens}

    def restore(self, data: dict[str, Any]) -> None:
        """Load a ``snapshot()``, refilled for the time that passed."""
        with self._lock:
            now = self._clock.monotonic()
            for origin, level in data.items():
                try:
                    self._tokens[str(origin)] = (max(0.0, min(self._capacity, float(level))), now)
                except (TypeError, ValueError):
                    continue
