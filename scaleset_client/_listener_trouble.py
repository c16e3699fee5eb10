"""What a listener does when its session or a poll is in trouble, and how it waits.

A mixin of ``Listener`` (the attributes below are the listener's; nothing else uses this class):
opening its session (with a growing pause) and renewing it when the queue turns it away, being
a standby while another listener owns the scale set, waiting out what a failed poll means (a
break until its end, a throttle until its ``retry_at``, anything else by the backoff, ended
early when an unreachable origin is back), skipping a bounded run whose service is known down,
and the interruptible waits themselves, sliced into beats so liveness stays true.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ._adapter import MIN_ATTEMPT_TIME
from ._breaker import State
from ._client import Client
from ._clock import Clock
from ._deadline import Deadline
from ._errors import (
    AuthenticationError,
    CallCancelledError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    RunSkippedError,
    ScalesetError,
    ScaleSetNotFoundError,
    SessionConflictError,
    SessionNotFoundError,
    StateFileError,
    TransientError,
)
from ._listener_config import ListenerConfig
from ._session import MessageSession

log = logging.getLogger("scaleset_client._listener")  # logs as the listener it is part of

PERMANENT = (ScaleSetNotFoundError, AuthenticationError, ConfigError, StateFileError)
_STOOD_BY_TOO_LONG = SessionConflictError  # the one conflict ``_as_standby`` lets out: past standby_timeout
_BEAT_CHUNK = 1.0  # waits are sliced so liveness beats and a client.recover() is noticed within 1 s


class SessionAndWaits:
    """The listener's session and waiting logic; see the module docstring."""

    config: ListenerConfig
    _client: Client
    _clock: Clock
    _session: MessageSession | None
    _stop: threading.Event
    _scope: Deadline | None
    _standby: bool
    _dirty: bool
    _last_beat: float

    def _ending(self, end: float | None) -> bool:
        """True once the run should end: stopped, cancelled (here or in an enclosing scope), or out
        of time (less left than any call could use)."""
        scope = self._scope
        return (self._stop.is_set() or (end is not None and end - self._clock.monotonic() < MIN_ATTEMPT_TIME)
                or (scope is not None and scope.cancelled) or self._client.closed)

    def _wait_out(self, exc: ScalesetError, errors: int, end: float | None) -> None:
        """Wait out what is neither permanent nor the session's: a ``TransientError`` until its
        ``retry_at`` when it has one, anything else by the backoff. A refused circuit names its
        origin, which is watched for an early return (plus up to 0.5 s so a fleet does not return
        at once); one held open by an operator (no ``retry_at``) is asked again every
        ``standby_interval``."""
        now = self._clock.wall()
        if isinstance(exc, CircuitOpenError):
            wait = self.config.standby_interval if exc.retry_at is None else exc.retry_at - now
            log.info("%s; waiting %.1fs", exc, wait)
            self._wait_out_break(exc.origin, max(wait, 0.05) + self._clock.random() * 0.5, end)
        elif isinstance(exc, TransientError) and exc.retry_at is not None:
            self._wait(max(0.05, exc.retry_at - now), end)
        else:
            session = self._session
            assert session is not None
            log.warning("poll failed (%d in a row): %s", errors, exc)
            self._wait_out_break(self._client.origin(session.session.message_queue_url),
                                 self._backoff(errors), end)

    def _confirm_scale_set_gone(self, exc: ScaleSetNotFoundError) -> None:
        """A 404 has been seen during GitHub incidents for scale sets that exist: ask once more."""
        try:
            found = self._client.get_runner_scale_set_by_id(self.config.scale_set_id)
        except ScaleSetNotFoundError:
            found = None
        except ScalesetError:
            return  # cannot tell now; try again after the pause
        if found is None:
            raise exc.recast(ScaleSetNotFoundError,
                f"scale set {self.config.scale_set_id} no longer exists (deleted, or removed by GitHub after "
                f"being offline): create it again or fix the id; the listener stops. ({exc.message})") from exc

    def _renew_session(self, exc: ScalesetError, end: float | None) -> None:
        """Renew the session the queue turned away, in place. An error other than a conflict is
        waited out once, then polling (which retries) goes on."""
        session = self._session
        assert session is not None
        if isinstance(exc, SessionNotFoundError) and not self._client.resilience.auto_recover_session:
            raise exc

        def renew() -> MessageSession:
            session.recover()
            return session

        try:
            renewed = self._as_standby(renew, self._clock.monotonic(), end)
        except ScalesetError as other:
            if self._cut(other, end):
                return
            if isinstance(other, ScaleSetNotFoundError):
                self._confirm_scale_set_gone(other)
            elif isinstance(other, (_STOOD_BY_TOO_LONG, *PERMANENT)):
                raise
            log.warning("session renewal failed: %s", other)
            self._wait(self._backoff(2), end)
            return
        if renewed is not None:
            self._dirty = True
            log.info("session renewed: %s", session.session.session_id)

    def _open_session(self, stale_id: object, end: float | None) -> MessageSession | None:
        """Open the listener's own session (deleting its stale one from the state file), trying
        again after a growing pause until it opens; None when the run ends first."""
        started = self._clock.monotonic()
        stale = stale_id if isinstance(stale_id, str) and stale_id else None

        def open_one() -> MessageSession:
            return self._client.message_session(self.config.scale_set_id, self.config.owner,
                                                stale_session_id=stale)

        attempts = 0
        while True:
            attempts += 1
            try:
                return self._as_standby(open_one, started, end)
            except ScalesetError as exc:
                if isinstance(exc, (_STOOD_BY_TOO_LONG, *PERMANENT)):
                    raise
                if self._cut(exc, end):
                    return None
                log.warning("could not open a session: %s", exc)
                if self._wait(self._backoff(attempts), end):
                    return None

    def _as_standby(self, attempt: Callable[[], MessageSession], since: float,
                    end: float | None) -> MessageSession | None:
        """Open or renew a session; while another listener owns the scale set (a conflict) this one
        is a standby that tries again every ``standby_interval`` and takes over when the owner
        leaves, for at most ``standby_timeout`` counted from ``since``. None when the run ends
        first; any other error is the caller's."""
        while not self._ending(end):
            try:
                session = attempt()
            except SessionConflictError as exc:
                self._standby = True
                timeout = self.config.standby_timeout
                if timeout is not None and self._clock.monotonic() - since >= timeout:
                    raise exc.recast(SessionConflictError,
                        f"scale set {self.config.scale_set_id} stayed owned by another listener for "
                        f"{timeout:.0f}s: {exc.message}") from exc
                log.info("scale set %d has an active session elsewhere; standing by", self.config.scale_set_id)
                if self._wait(self._standby_pause(), end):
                    return None
                continue
            self._standby = False
            return session
        return None

    def _cut(self, exc: ScalesetError, end: float | None) -> bool:
        """True when ``exc`` is a call ended by this run's own stop, cancellation or time limit."""
        return isinstance(exc, (CallCancelledError, DeadlineExceededError)) and self._ending(end)

    def _skip_if_known_down(self, end: float) -> None:
        """A bounded run whose service is known down past its end sends nothing at all."""
        now = self._clock.monotonic()
        for breaker in self._client.circuit_breakers.all():
            if breaker.operation_class not in ("long_poll", "session"):
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

    # -- waiting -----------------------------------------------------------------------------
    def _backoff(self, failures: int) -> float:
        cap = min(self.config.error_backoff_max, self.config.error_backoff * 2.0 ** min(failures - 1, 30))
        return cap * (0.5 + 0.5 * self._clock.random())  # never zero: the loop cannot spin

    def _wait_out_break(self, origin: str, seconds: float, end: float | None) -> None:
        """Wait out a break or a backoff; while the origin refuses connections, look with a bare
        TCP connect (no HTTP request) whenever the client's jittered schedule says a look is due,
        and end the wait as soon as it is back, or the run ends."""
        until = self._clock.monotonic() + seconds
        while True:
            left = until - self._clock.monotonic()
            if left <= 0 or self._wait(min(left, _BEAT_CHUNK), end):
                return
            # A look cannot be cancelled mid-connect: 1 s at most, so a stop still ends this wait soon.
            if until - self._clock.monotonic() > 0 and self._client.check_reachable(origin, 1.0, when_due=True):
                return

    def _standby_pause(self) -> float:
        return self.config.standby_interval * (0.8 + 0.4 * self._clock.random())

    def _wait(self, seconds: float, end: float | None) -> bool:
        """Sleep in short beats (liveness stays true); True when the run should end."""
        deadline = self._clock.monotonic() + seconds
        if end is not None:
            deadline = min(deadline, end)
        recoveries = self._client.recoveries
        while not self._ending(end):
            self._beat()
            left = deadline - self._clock.monotonic()
            if left <= 0 or self._client.recoveries != recoveries:
                break
            if self._clock.sleep(min(left, _BEAT_CHUNK), self._stop):
                return True
        return self._ending(end)

    def _beat(self) -> None:
        self._last_beat = self._clock.monotonic()
