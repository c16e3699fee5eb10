"""``Pacer``: how a listener waits, and when its run is over.

Every wait of a listener goes through here, so one place keeps the promises about time: a wait
ends early on ``stop()``, on an enclosing scope's cancel or end, on the run's ``duration``, on a
closed client and on ``client.recover()``; it is sliced into beats of at most a second so
liveness stays true through an hour-long outage; a wait on an origin that refuses connections
ends as soon as a bare TCP look finds it back. The pauses themselves (the error backoff, the
standby pause) are drawn here from the listener's configuration with jitter, so a fleet that
failed together does not come back together.
"""

from __future__ import annotations

import logging
import threading
import time

from .._breaker import OperationClass, State
from .._client import Client
from .._clock import Clock
from .._deadline import MIN_ATTEMPT_TIME, Deadline
from .._errors import (
    CallCancelledError,
    CircuitOpenError,
    DeadlineExceededError,
    RunSkippedError,
    ScalesetError,
    TransientError,
)
from .._jitter import around, exponential, half_to_full, plus_up_to
from .._listener_config import ListenerConfig

__all__ = ["BEAT", "Pacer"]

log = logging.getLogger(__name__)

BEAT = 1.0  # waits are sliced so liveness beats and a client.recover() is noticed within 1 s


class Pacer:
    """The run's end and every wait of one listener. ``stop``, ``scope`` and ``end`` are set per
    run by the listener (``begin``); ``last_beat`` is when the loop last showed progress."""

    def __init__(self, client: Client, config: ListenerConfig, clock: Clock) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self.stop = threading.Event()
        self.scope: Deadline | None = None
        self.end: float | None = None  # monotonic time the run must end by (None: no limit)
        self.last_beat = clock.monotonic()

    def begin(self, stop: threading.Event, scope: Deadline) -> None:
        """A run starts inside ``scope``, stopped by ``stop`` (or by cancelling the scope)."""
        self.stop, self.scope = stop, scope
        expiry = scope.effective_expiry()
        self.end = None if expiry == float("inf") else expiry
        self.beat()

    def finish(self) -> None:
        """The run is over: ``stop()`` no longer has a scope to cancel."""
        self.scope = None

    # -- is the run over? --------------------------------------------------------------------
    def ending(self) -> bool:
        """True once the run should end: stopped, cancelled (here or in an enclosing scope), out of
        time (less left than any call could use), or the client closed."""
        scope, end = self.scope, self.end
        return (self.stop.is_set() or (end is not None and end - self._clock.monotonic() < MIN_ATTEMPT_TIME)
                or (scope is not None and scope.cancelled) or self._client.closed)

    def cut(self, exc: ScalesetError) -> bool:
        """True when ``exc`` is a call ended by this run's own stop, cancellation or time limit."""
        return isinstance(exc, (CallCancelledError, DeadlineExceededError)) and self.ending()

    def skip_if_known_down(self) -> None:
        """A bounded run whose service is known down past its end sends nothing at all: raise
        ``RunSkippedError`` saying until when."""
        end = self.end
        if end is None:
            return
        now = self._clock.monotonic()
        for breaker in self._client.circuit_breakers.all():
            if breaker.operation_class not in (OperationClass.LONG_POLL, OperationClass.SESSION):
                continue
            wait = breaker.retry_after()
            if breaker.state in (State.OPEN, State.FORCED_OPEN) and (wait is None or now + wait >= end):
                retry_at = None if wait is None else self._clock.wall() + wait
                raise RunSkippedError(
                    f"skipped: {breaker.origin} [{breaker.operation_class}] is known down "
                    f"({breaker.last_failure_reason or 'held open'}); next attempt at "
                    + ("operator reset" if retry_at is None else
                       time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(retry_at)) + f" (in {wait:.0f}s)"),
                    retry_at=retry_at, retry_after=wait)

    # -- pauses --------------------------------------------------------------------------------
    def backoff(self, failures: int) -> float:
        """The pause after ``failures`` in a row: ``error_backoff`` doubling to ``error_backoff_max``,
        drawn between half and all of it (never zero: the loop cannot spin)."""
        ceiling = exponential(failures, self._config.error_backoff, self._config.error_backoff_max)
        return half_to_full(ceiling, self._clock.random())

    def standby_pause(self) -> float:
        """``standby_interval`` ±20 %."""
        return around(self._config.standby_interval, 0.2, self._clock.random())

    # -- waiting -------------------------------------------------------------------------------
    def wait(self, seconds: float) -> bool:
        """Sleep in beats (liveness stays true) until ``seconds`` passed, the run ends or the client
        recovered; True when the run should end."""
        deadline = self._clock.monotonic() + seconds
        if self.end is not None:
            deadline = min(deadline, self.end)
        recoveries = self._client.recoveries
        while not self.ending():
            self.beat()
            left = deadline - self._clock.monotonic()
            if left <= 0 or self._client.recoveries != recoveries:
                break
            if self._clock.sleep(min(left, BEAT), self.stop):
                return True
        return self.ending()

    def wait_out(self, exc: ScalesetError, errors: int, queue_origin: str) -> None:
        """Wait out a failed poll that is neither permanent nor the session's: a
        ``TransientError`` until its ``retry_at`` when it has one, anything else by the backoff. A
        refused circuit names its origin, which is watched for an early return (plus up to 0.5 s,
        so a fleet does not return at once); one held open by an operator (no ``retry_at``) is
        asked again every ``standby_interval``."""
        now = self._clock.wall()
        if isinstance(exc, CircuitOpenError):
            wait = self._config.standby_interval if exc.retry_at is None else exc.retry_at - now
            log.info("%s; waiting %.1fs", exc, wait)
            self.wait_out_break(exc.origin, plus_up_to(max(wait, 0.05), 0.5, self._clock.random()))
        elif isinstance(exc, TransientError) and exc.retry_at is not None:
            self.wait(max(0.05, exc.retry_at - now))
        else:
            log.warning("poll failed (%d in a row): %s", errors, exc)
            self.wait_out_break(queue_origin, self.backoff(errors))

    def wait_out_break(self, origin: str, seconds: float) -> None:
        """Wait out a break or a backoff; while the origin refuses connections, look with a bare
        TCP connect (no HTTP request) whenever the client's jittered schedule says a look is due,
        and end the wait as soon as it is back, or the run ends."""
        until = self._clock.monotonic() + seconds
        while True:
            left = until - self._clock.monotonic()
            if left <= 0 or self.wait(min(left, BEAT)):
                return
            # A look cannot be cancelled mid-connect: 1 s at most, so a stop still ends this wait soon.
            if until - self._clock.monotonic() > 0 and self._client.check_reachable(origin, 1.0, when_due=True):
                return

    def beat(self) -> None:
        """The loop showed progress now (``Listener.health`` reads ``last_beat``)."""
        self.last_beat = self._clock.monotonic()
