"""Helpers the test modules share: import them from here (fixtures live in ``conftest.py``).

A client wired to a fake, waiting on another thread (or inside a deadline scope), a scaler that
records what it is handed, a listener run in a thread, the shapes of a job message, and
``scaleset-listen``'s command line.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scaleset_client as sc
from scaleset_client._state import SLOT, CursorRecord
from scaleset_client.testing import FakeActionsService, FakeClock

# -- a client and a fake ---------------------------------------------------------------------------


def make_client(fake: FakeActionsService, clock: object = None, **kwargs: object) -> sc.Client:
    kwargs.setdefault("timeout", (2.0, 5.0))
    kwargs.setdefault("long_poll_timeout", 5.0)
    return sc.Client(fake.config_url, token=fake.token, clock=clock, **kwargs)  # type: ignore[arg-type]


def client_with_retry(fake: FakeActionsService, clock: FakeClock, **retry: float) -> sc.Client:
    """A client whose ``RetryConfig`` is built from ``retry`` (the rest of its resilience default)."""
    config = sc.ResilienceConfig(retry=sc.RetryConfig(**retry))  # type: ignore[arg-type]
    return make_client(fake, clock, resilience=config)


def port_of(url: str) -> int:
    """The port of ``http://host:port/...`` (a fake server's URL)."""
    return int(url.split("//")[1].split("/")[0].rsplit(":", 1)[1])


def fake_with_draw(draw: float) -> tuple[FakeActionsService, FakeClock]:
    """A fake (not started: use it in ``with``) sharing a FakeClock whose every jitter draw is
    ``draw``, so a pause is exact: 0.0 shows each spread at its narrowest, 0.99 at its widest."""
    clock = FakeClock(draw=draw)
    return FakeActionsService(clock=clock, long_poll_hold=0.01, strict=True), clock


class WatchedClock(FakeClock):
    """A FakeClock that calls ``watch(seconds)`` after every sleep: a test's eyes (and hands)
    inside a wait that would otherwise pass in one step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch: Callable[[float], object] | None = None

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        woken = super().sleep(seconds, interrupt)
        if self.watch is not None:
            self.watch(seconds)
        return woken


def newest_cursor_record(state: Path) -> CursorRecord:
    """The delivery record a restarted process would load from ``state``'s ``.cursor`` file."""
    raw = state.with_name(state.name + ".cursor").read_bytes()
    slots = [CursorRecord.decode(raw[i * SLOT:(i + 1) * SLOT]) for i in range(len(raw) // SLOT)]
    return max((s for s in slots if s is not None), key=lambda s: s[0])[1]


# -- threads ---------------------------------------------------------------------------------------


def run_together(count: int, work: Callable[[], object]) -> list[object]:
    """Start ``count`` threads at once on ``work``; return each result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[object] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            outcome: object = work()
        except BaseException as exc:  # returned to the test, which asserts on it
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == count, "a thread did not finish"
    return results


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition another thread makes true; the timeout only bounds a broken test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Outcome:
    """Run ``fn`` in a thread; keep what it returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # kept for the assertion
            self.error = exc

    def join(self, limit: float = 20.0) -> Outcome:
        self.thread.join(timeout=limit)
        assert not self.thread.is_alive(), "the call was not bounded"
        return self


def inside(scope: sc.Deadline, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` inside ``scope`` (for an ``Outcome``: ``Outcome(lambda: inside(scope, call))``)."""
    with scope:
        return fn()


# -- a listener and its scaler ---------------------------------------------------------------------


class RecordingScaler:
    def __init__(self, hook: Callable[[RecordingScaler, str, int], None] | None = None) -> None:
        self.started: list[int] = []
        self.completed: list[int] = []
        self.desired: list[int] = []
        self.hook = hook

    def handle_job_started(self, job: sc.JobStarted) -> None:
        if self.hook:
            self.hook(self, "started", job.runner_request_id)
        self.started.append(job.runner_request_id)

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        if self.hook:
            self.hook(self, "completed", job.runner_request_id)
        self.completed.append(job.runner_request_id)

    def handle_desired_runner_count(self, count: int) -> int:
        self.desired.append(count)
        return count


# Every Running not yet stopped; conftest's autouse fixture stops them after each test.
RUNNING: list[Running] = []


class Running:
    """A listener run in a thread, with its outcome kept for the test."""

    def __init__(self, listener: sc.Listener, scaler: RecordingScaler, **kwargs: object) -> None:
        RUNNING.append(self)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(listener, scaler, kwargs), daemon=True)
        self.thread.start()

    def _run(self, listener: sc.Listener, scaler: RecordingScaler, kwargs: dict[str, object]) -> None:
        try:
            listener.run(scaler, self.stop, **kwargs)  # type: ignore[arg-type]
        except BaseException as exc:  # kept for the assertion
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def job(kind: str, request_id: int, **extra: object) -> dict[str, object]:
    return {"messageType": kind, "runnerRequestId": request_id, "runnerId": 1, "runnerName": "r", **extra}


def stats(assigned: int) -> dict[str, int]:
    return {"totalAssignedJobs": assigned, "totalRunningJobs": 0}


# -- scaleset-listen as a process ------------------------------------------------------------------


def cli(fake: FakeActionsService, *args: str, token: str | None = None) -> list[str]:
    return [sys.executable, "-m", "scaleset_client", "--url", fake.config_url, "--log-level", "INFO", *args]


def env(fake: FakeActionsService, token: str | None = None) -> dict[str, str]:
    return {**os.environ, "GITHUB_TOKEN": token or fake.token}


def run_bounded(listener: sc.Listener, scaler: RecordingScaler, duration: float) -> None:
    """Run with a duration (fake time) in a thread; the join's real-time bound only stops a broken
    run from holding the test for its whole timeout."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            listener.run(scaler, duration=duration)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the bounded run did not end"
    assert errors == []


def free_port() -> int:
    """A loopback port free right now (for a server the test starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") while nothing listens there yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
