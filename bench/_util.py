"""Helpers shared by the benchmarks: counting connection attempts and virtual time for urllib3."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
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
        self.looks: dict[int, list[float]] = {}  # TCP looks (connect and close, no HTTP request)
        self._lock = threading.Lock()
        self.clock: Any = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[ConnectCounter]:
        """Count urllib3's connects (the baselines) and the client's own (``adapter.connect_socket``,
        which opens sockets itself so a cancel can abort a connect in progress)."""
        import scaleset_client._connections as adapter

        original = urllib3.util.connection.create_connection
        ours = adapter.connect_socket
        plain = socket.create_connection  # the client's TCP looks at a refusing origin (no HTTP)

        def note(port: int) -> None:
            with self._lock:
                self.counts[port] += 1
                if self.clock is not None:
                    self.times.setdefault(port, []).append(self.clock.monotonic())

        def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
            note(address[1])
            return original(address, *args, **kwargs)

        def counting_ours(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
            note(address[1])
            return ours(address, *args, **kwargs)

        def counting_looks(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.clock is not None:
                    self.looks.setdefault(address[1], []).append(self.clock.monotonic())
            return plain(address, *args, **kwargs)

        urllib3.util.connection.create_connection = counting
        adapter.connect_socket = counting_ours  # type: ignore[assignment]
        socket.create_connection = counting_looks  # type: ignore[assignment]
        try:
            yield self
        finally:
            urllib3.util.connection.create_connection = original
            adapter.connect_socket = ours  # type: ignore[assignment]
            socket.create_connection = plain


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


@dataclasses.dataclass
class Row:
    """One line of the results table."""

    bench: str
    measure: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    ok: bool | None = None


def rows_table(rows: list[Row]) -> str:
    data = [("bench", "measure", "scaleset_client", "baseline", "ratio", "target", "pass")]
    data += [(r.bench, r.measure, r.ours, r.baseline, r.ratio, r.target,
              "" if r.ok is None else ("yes" if r.ok else "NO")) for r in rows]
    return table(data)


def rows_markdown(rows: list[Row]) -> str:
    head = "| bench | measure | scaleset_client | baseline | ratio | target | pass |\n|---|---|---|---|---|---|---|\n"
    return head + "".join(f"| {r.bench} | {r.measure} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | "
                          f"{'' if r.ok is None else ('yes' if r.ok else '**no**')} |\n" for r in rows)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def process_footprint() -> tuple[float, int, int]:
    """(resident MiB, open file descriptors, threads) of this process."""
    import os

    with open("/proc/self/statm") as handle:
        rss_pages = int(handle.read().split()[1])
    return rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, len(os.listdir("/proc/self/fd")), threading.active_count()


class SimClock:
    """Virtual time shared by many threads: time advances only when every participant sleeps.

    A thread doing real I/O keeps time still, so a request takes zero virtual seconds however
    long the loopback round trip is, and N clients in N threads share one exact timeline.
    Threads must run inside ``with clock.participant():``.
    """

    def __init__(self, start: float = 0.0, seed: int = 1) -> None:
        import random as _random

        self._cond = threading.Condition()
        self._now = start
        self._active = 0
        self._wakes: list[float] = []
        self._rng = _random.Random(seed)

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.monotonic()

    def random(self) -> float:
        with self._cond:
            return self._rng.random()

    @contextlib.contextmanager
    def participant(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._advance()

    def _advance(self) -> None:
        if self._active == 0 and self._wakes:
            self._now = max(self._now, min(self._wakes))
            self._cond.notify_all()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        if interrupt is not None and interrupt.is_set():
            return True
        with self._cond:
            wake = self._now + max(0.0, seconds)
            self._wakes.append(wake)
            self._active -= 1
            self._advance()
            while self._now < wake:
                self._cond.wait(1.0)
            self._wakes.remove(wake)
            self._active += 1
        return False


class NoOpScaler:
    """A scaler that does nothing and reports the desired count back (benchmarks measure us)."""

    def handle_job_started(self, job: Any) -> None:
        return None

    def handle_job_completed(self, job: Any) -> None:
        return None

    def handle_desired_runner_count(self, count: int) -> int:
        return count


def bench_main(run: Any, argv: list[str] | None = None) -> int:
    """``python -m bench.<name> [--quick]``: print the rows; exit 1 when a target is missed."""
    import sys as _sys

    rows = run("--quick" in (argv if argv is not None else _sys.argv[1:]))
    print(rows_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """``median [min–max] (n)``: how every figure in the results is reported."""
    return f"{fmt.format(median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"
