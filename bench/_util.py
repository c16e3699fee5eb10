"""Helpers shared by the benchmarks: counting connection attempts and virtual time for urllib3."""

from __future__ import annotations

import contextlib
import statistics
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import urllib3.util.connection
import urllib3.util.retry

from scaleset_client.testing import FakeClock


class ConnectCounter:
    """Counts TCP connection attempts per port, for any client built on urllib3."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.times: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self.clock: Any = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[ConnectCounter]:
        original = urllib3.util.connection.create_connection

        def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.counts[address[1]] += 1
                if self.clock is not None:
                    self.times.setdefault(address[1], []).append(self.clock.monotonic())
            return original(address, *args, **kwargs)

        urllib3.util.connection.create_connection = counting
        try:
            yield self
        finally:
            urllib3.util.connection.create_connection = original


class _VirtualTime:
    """Stands in for the ``time`` module inside urllib3's Retry, so its sleeps are virtual."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    def time(self) -> float:
        return self._clock.wall()

    def monotonic(self) -> float:
        return self._clock.monotonic()


@contextlib.contextmanager
def urllib3_virtual_time(clock: FakeClock) -> Iterator[None]:
    original = urllib3.util.retry.time  # type: ignore[attr-defined]
    urllib3.util.retry.time = _VirtualTime(clock)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        urllib3.util.retry.time = original  # type: ignore[attr-defined]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
