"""``Deadline``: one cancellation-and-deadline scope that every wait and every socket obeys.

The synchronous counterpart of Go's ``ctx``. A scope is entered with ``with`` and applies to
every call the same thread makes inside it, nested calls and recovery hooks included::

    with client.deadline(10):               # all of this finishes or raises within ~10 s
        scale_set = client.get_runner_scale_set(1, "linux")
        client.generate_jit_runner_config(setting, scale_set.id)

    scope = client.deadline()               # no time limit, but cancellable from elsewhere
    threading.Thread(target=lambda: (time.sleep(5), scope.cancel())).start()
    with scope:
        session.get_message(0, 10)          # ends within ~0.2 s of cancel()

Scopes nest: an inner scope can only shorten the time an outer one allows, and cancelling an
outer scope cancels every call inside it. A call that runs out of time raises
``DeadlineExceededError``; a cancelled one ``CallCancelledError`` (both ``TransportError``,
with ``delivered`` telling whether the request may have reached the server). Neither is ever
counted against a circuit breaker: the caller's deadline says nothing about the service.

How it is kept: waits (backoff, breaker breaks, rate-limit gates) sleep at most until the
deadline and wake on cancel; socket timeouts are capped at the time left; and one watchdog
thread per process shuts the socket of any attempt still in flight at its deadline or on
cancel, so a body dripped byte by byte, a hung server or a black-holed long poll all end on
time. ``cancel_on`` links a ``threading.Event`` (a listener's stop event, a signal handler's
flag): the watchdog notices it being set within ``POLL_INTERVAL`` seconds.

Scopes are carried in a ``contextvars.ContextVar``: they follow the thread that entered them
(and ``contextvars.copy_context().run`` if you hand work to another thread), never leak
into unrelated threads.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ._clock import Clock, SystemClock

__all__ = ["MIN_ATTEMPT_TIME", "POLL_INTERVAL", "Deadline", "current_scopes"]

POLL_INTERVAL = 0.2  # how often the watchdog looks at ``cancel_on`` events
MIN_ATTEMPT_TIME = 0.25  # seconds: with less left, an attempt could only time out, so none is sent
_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("scaleset_deadline", default=None)
_DEFAULT_CLOCK = SystemClock()


class Deadline:
    """A scope with an optional time limit (``seconds``) that can be cancelled from any thread.

    ``seconds=None`` means no limit of its own (an enclosing scope may still set one).
    ``cancel_on``: an event whose setting cancels the scope (noticed within 0.2 s).
    ``clock``: the clock that measures ``seconds`` (``Client.deadline`` passes the client's).
    """

    def __init__(self, seconds: float | None = None, *, cancel_on: threading.Event | None = None,
                 clock: Clock | None = None, reason: str = "") -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or math.isnan(seconds) or seconds < 0):
            from ._errors import ConfigError

            raise ConfigError(f"a deadline must be a number of seconds >= 0 or None, got {seconds!r}")
        self._clock = clock or _DEFAULT_CLOCK
        self._seconds = seconds
        self.expires_at = math.inf if seconds is None else self._clock.monotonic() + float(seconds)
        self._cancel_on = cancel_on
        self._lock = threading.Lock()
        self._cancelled = False
        self.reason = ""
        self._label = reason
        self._callbacks: dict[int, Callable[[str], None]] = {}
        self._ids = itertools.count()
        self._parent: Deadline | None = None
        self._detached = False
        self._tokens: dict[int, list[contextvars.Token[Deadline | None]]] = {}  # per thread
        self._watch: object | None = None

    # -- reading -----------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once this scope or an enclosing one was cancelled (or its ``cancel_on`` set)."""
        scope: Deadline | None = self
        while scope is not None:
            if scope._cancelled:
                return True
            if scope._cancel_on is not None and scope._cancel_on.is_set():
                scope.cancel("stop requested")
                return True
            scope = None if scope._detached else scope._parent
        return False

    def cancel_reason(self) -> str:
        """Why the innermost cancelled scope of the chain was cancelled ('' when none is)."""
        scope: Deadline | None = self
        while scope is not None:
            if scope._cancelled:
                return scope.reason
            scope = None if scope._detached else scope._parent
        return ""

    def effective_expiry(self) -> float:
        """The earliest expiry along the chain, in this scope's clock (``math.inf``: none)."""
        expiry = self.expires_at
        scope = None if self._detached else self._parent
        while scope is not None:
            expiry = min(expiry, scope.expires_at)
            scope = None if scope._detached else scope._parent
        return expiry

    def remaining(self) -> float:
        """Seconds left before the earliest deadline of the chain (``math.inf`` when none)."""
        return self.effective_expiry() - self._clock.monotonic()

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.remaining() <= 0

    # -- cancelling --------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the scope: every call inside it, in any thread, ends soon with ``CallCancelledError``.

        Safe from any thread; from a signal handler, prefer starting a thread that calls it (a
        handler runs between two bytecodes of the interrupted code, possibly inside our locks)."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self.reason = reason
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            callback(reason)

    def subscribe(self, callback: Callable[[str], None]) -> list[tuple[Deadline, int]]:
        """Call ``callback(reason)`` when this scope or an enclosing one is cancelled (at once if one
        already is). For transports: the adapter cuts a call in flight this way. Returns the handles
        to give ``unsubscribe`` when the call ends."""
        handles: list[tuple[Deadline, int]] = []
        scope: Deadline | None = self
        fire = ""
        while scope is not None:
            with scope._lock:
                ident = next(scope._ids)
                scope._callbacks[ident] = callback
                if scope._cancelled and not fire:
                    fire = scope.reason
            handles.append((scope, ident))
            scope = None if scope._detached else scope._parent
        if fire:
            callback(fire)
        return handles

    @staticmethod
    def unsubscribe(handles: list[tuple[Deadline, int]]) -> None:
        """Forget callbacks registered by ``subscribe`` (a transport, once its call ended)."""
        for scope, ident in handles:
            with scope._lock:
                scope._callbacks.pop(ident, None)

    # -- entering ----------------------------------------------------------------------------
    def __enter__(self) -> Deadline:
        """Make this the current scope of this thread. One scope may be entered by several
        threads (one deadline for a pool of workers); it takes the enclosing scope of the first."""
        parent = _current.get()
        token = _current.set(self)
        with self._lock:
            if self._parent is None and parent is not None and parent is not self and not self._detached:
                self._parent = parent
            self._tokens.setdefault(threading.get_ident(), []).append(token)
            watch = self._cancel_on is not None and self._watch is None
            if watch:
                self._watch = self
        if watch:
            WATCHDOG.watch_event(self)
        return self

    def __exit__(self, *exc: object) -> None:
        ident = threading.get_ident()
        with self._lock:
            tokens = self._tokens[ident]
            token = tokens.pop()
            if not tokens:
                del self._tokens[ident]
            unwatch = not self._tokens and self._watch is not None
            if unwatch:
                self._watch = None
        _current.reset(token)
        if unwatch:
            WATCHDOG.unwatch_event(self)

    def __repr__(self) -> str:
        left = self.remaining()
        shown = "none" if left == math.inf else f"{left:.3f}s left"
        state = f", cancelled ({self.reason})" if self._cancelled else ""
        return f"Deadline({shown}{state})"


def detached(seconds: float, clock: Clock | None = None, reason: str = "") -> Deadline:
    """A scope that ignores enclosing ones: for bounded clean-up after a cancellation (deleting
    the server session on stop must not be cancelled by the very stop it serves)."""
    scope = Deadline(seconds, clock=clock, reason=reason)
    scope._detached = True
    return scope


def current() -> Deadline | None:
    """The innermost scope entered in this context, or None."""
    return _current.get()


def current_scopes() -> Iterator[Deadline]:
    """The chain of active scopes, innermost first."""
    scope = _current.get()
    while scope is not None:
        yield scope
        scope = None if scope._detached else scope._parent


# -- the watchdog ------------------------------------------------------------------------------
class _Timer:
    __slots__ = ("__weakref__", "at", "callback", "done")

    def __init__(self, at: float, callback: Callable[[], None]) -> None:
        self.at = at
        self.callback = callback
        self.done = False


class _Watchdog:
    """One daemon thread per process: fires timers (attempt deadlines) and polls ``cancel_on``
    events. It starts on first use and sleeps until the earliest timer; a heap keeps timers in
    order, cancelled timers are skipped lazily and pruned when they outnumber live ones."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state (also in a forked child: the parent's thread and lock did not come along)."""
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._events: weakref.WeakSet[Deadline] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._live = 0

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="scaleset-watchdog", daemon=True)
            self._thread.start()

    def schedule(self, seconds: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback`` in the watchdog thread after ``seconds`` of real time, unless cancelled."""
        timer = _Timer(time.monotonic() + max(0.0, seconds), callback)
        with self._cond:
            earliest = self._heap[0][0] if self._heap else math.inf
            heapq.heappush(self._heap, (timer.at, next(self._seq), timer))
            self._live += 1
            self._ensure_thread()
            if timer.at < earliest:
                self._cond.notify()
        return timer

    def cancel(self, timer: _Timer) -> None:
        with self._cond:
            if not timer.done:
                timer.done = True
                self._live -= 1
                if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
                    self._heap = [entry for entry in self._heap if not entry[2].done]
                    heapq.heapify(self._heap)

    def watch_event(self, scope: Deadline) -> object:
        with self._cond:
            self._events.add(scope)
            self._ensure_thread()
            self._cond.notify()
        return scope

    def unwatch_event(self, handle: object) -> None:
        with self._cond:
            self._events.discard(handle)  # type: ignore[arg-type]

    def _run(self) -> None:
        while True:
            due: list[_Timer] = []
            with self._cond:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, timer = heapq.heappop(self._heap)
                    if not timer.done:
                        timer.done = True
                        self._live -= 1
                        due.append(timer)
                watched = list(self._events)
                if not due:
                    wait = self._heap[0][0] - now if self._heap else math.inf
                    if watched:
                        wait = min(wait, POLL_INTERVAL)
                    self._cond.wait(None if wait == math.inf else wait)
            for timer in due:
                _quietly(timer.callback)
            for scope in watched:
                if scope._cancel_on is not None and scope._cancel_on.is_set() and not scope._cancelled:
                    _quietly(lambda s=scope: s.cancel("stop requested"))  # type: ignore[misc]


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # a callback must never kill the watchdog
        import logging

        logging.getLogger(__name__).exception("watchdog callback failed")


WATCHDOG = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WATCHDOG._reset)
