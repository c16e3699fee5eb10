"""A hand-written circuit breaker, one per (origin, operation class).

States::

    CLOSED ──(failure_threshold consecutive failures, or ratio over the window)──► OPEN
    OPEN ──(break over; the next caller takes a probe lease)──► HALF_OPEN
    HALF_OPEN ──(success_threshold probe successes)──► CLOSED
    HALF_OPEN ──(a probe fails, or its lease expires)──► OPEN (break doubled, capped, jittered)

    operator states: FORCED_OPEN (refuse until reset or a deadline), DISABLED (never refuse,
    record nothing), METRICS_ONLY (record and report, never refuse)

Rules that make it safe under threads:

- The lock guards counters only; no I/O and no callback runs under it. Transition events are
  collected under the lock and delivered by the calling thread after release.
- Half-open admission hands out at most ``half_open_max_calls`` permits; each is a lease that
  expires, and an expired lease counts as a failed probe, so a hung probe cannot wedge it.
- Every transition bumps a generation; a result recorded with a permit from an earlier
  generation is discarded (a slow call admitted while CLOSED cannot close a newer OPEN).
- Time is the injected monotonic clock; ``snapshot``/``restore`` carry state across processes.

Callers held back return spread out (issue 28, the herd). Many threads share one client's
breaker (``--config``'s scale sets, a threaded runner): while it refuses, each refused thread
is remembered; when the origin is back (a probe succeeded, a forced break ran out), those
threads are given turns evenly over ``return_spread`` seconds instead of all calling in the
same second (100 sessions of one client came back as 100 polls within 0.9 s). A thread's turn
is a refusal until then, with ``retry_after`` saying when. A caller that was never refused, the
probe's own thread, and ``reset()``/``recover()`` (a caller asking for now) are not held.
Threads are the callers because this client is blocking: one listener, one thread.

``Permit`` and ``Transition`` are value classes (``_value_class.py``), not dataclasses: frozen
and compared the same, without the import and the per-class compile a cron run paid (issue
28); a permit is made on every call, so its ``__init__`` is written out.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ._clock import Clock
from ._config import CircuitBreakerConfig
from ._errors import CircuitOpenError
from ._jitter import around, exponential
from ._value_class import ValueClass, set_fields
from ._words import Word

__all__ = ["BreakerRegistry", "CircuitBreaker", "OperationClass", "Outcome", "Permit", "State", "Transition"]

log = logging.getLogger(__name__)


class OperationClass(Word):
    """The breaker partitions within one origin: a broker outage opens ``LONG_POLL`` and
    ``QUEUE_OPS`` without stopping ``ADMIN`` token renewals or ``SESSION`` refreshes. A ``str``,
    so the words stay what breaker keys, snapshots, ``states()`` and the state file show; the
    breakers store the plain word (``str(member)``)."""

    LONG_POLL = "long_poll"
    SESSION = "session"
    QUEUE_OPS = "queue_ops"
    ADMIN = "admin"
    GITHUB_API = "github_api"


class State(str, enum.Enum):
    """A circuit breaker's state: closed (calls pass), open (refused), half_open (one probe), forced_open (operator)."""
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"

    def __str__(self) -> str:
        return self.value


class Outcome(enum.Enum):
    """What one attempt says about the service's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # throttles, auth, 4xx, cancellation: nothing learned about health


class Permit(ValueClass):
    """Admission to send one attempt; give it back through ``record``."""

    __slots__ = ()

    generation: int
    probe_id: int = 0

    def __init__(self, generation: int, probe_id: int = 0) -> None:
        set_fields(self, (generation, probe_id))


class Transition(ValueClass):
    """A state change, delivered to listeners after the breaker's lock is released."""

    __slots__ = ()

    origin: str
    operation_class: str
    old: State
    new: State
    reason: str
    wall_time: float
    retry_after: float | None = None


TransitionListener = Callable[[Transition], None]

_HELD_MAX = 4096  # threads remembered per breaker while it refuses; more come back unpaced


class CircuitBreaker:
    """One partition's state machine. Thread-safe; see the module docstring."""

    def __init__(
        self,
        origin: str,
        operation_class: str,
        config: CircuitBreakerConfig,
        clock: Clock,
        notify: Callable[[list[Transition]], None] | None = None,
    ) -> None:
        self.origin = origin
        self.operation_class = str(operation_class)  # the plain word, in snapshots and keys
        self._config = config
        self._clock = clock
        self._notify = notify or (lambda events: None)
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._window: deque[bool] = deque(maxlen=config.window_size)
        self._open_until = 0.0
        self._reopen_count = 0
        self._closed_since = clock.monotonic()
        self._probes: dict[int, float] = {}
        self._probe_successes = 0
        self._next_probe_id = 1
        self.last_success_wall: float | None = None
        self.last_failure_wall: float | None = None
        self.last_failure_reason = ""
        self.rejected = 0
        # Threads, not their ids: an id is reused once its thread ended, and a new thread must not
        # inherit a dead one's place.
        self._held: dict[threading.Thread, None] = {}  # refused since the origin went, in order (an ordered set)
        self._turns: dict[threading.Thread, float] = {}  # after a return: each held thread's turn (monotonic)
        self._last_turn = 0.0
        self._holding = True  # False after recover() asked for a probe: nobody is held back then

    # -- reading ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state now, as the next call would find it; a pure read (no transition, no listener).

        An OPEN whose break is over reads as HALF_OPEN (the next call probes); a HALF_OPEN whose
        probe lease ran out reads as OPEN (the next call re-opens it). The transitions themselves
        happen only in ``acquire``, ``record`` and the operator calls."""
        with self._lock:
            return self._seen(self._clock.monotonic())
    @property
    def generation(self) -> int:
        """Bumped on every transition, so a caller can tell its admission is stale."""
        return self._generation

    def retry_after(self) -> float | None:
        """Seconds until a call of this thread may be admitted (its turn, after a return): 0 when
        it may go now, None when held by hand."""
        with self._lock:
            now = self._clock.monotonic()
            if self._state is State.FORCED_OPEN:
                return None if self._open_until == float("inf") else max(0.0, self._open_until - now)
            if self._state is State.OPEN:
                return max(0.0, self._open_until - now)
            if self._state is State.HALF_OPEN and len(self._probes) >= self._config.half_open_max_calls:
                return max(0.0, min(self._probes.values()) - now)
            if self._state is State.CLOSED and self._turns:
                return max(0.0, self._turns.get(threading.current_thread(), now) - now)
            return 0.0

    def probes_in_flight(self) -> int:
        """Half-open probes currently admitted (0 or 1)."""
        with self._lock:
            return len(self._probes)

    # -- the call path ---------------------------------------------------------------------
    def acquire(self, lease: float) -> Permit:
        """Admit one attempt or raise ``CircuitOpenError``. ``lease`` bounds a probe's permit."""
        events: list[Transition] = []
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now, events)
            permit = self._admit(now, lease)
            error = self._refusal(now) if permit is None else None
        self._notify(events)
        if error is not None:
            raise error
        assert permit is not None
        return permit

    def _advance(self, now: float, events: list[Transition]) -> None:
        """The transitions time alone makes: a hung probe re-opens, a forced break or a break ends."""
        self._expire_leases(now, events)
        if self._state is State.FORCED_OPEN and now >= self._open_until:
            self._move(State.CLOSED, "forced open period over", events, spread=True)
        elif self._state is State.OPEN and now >= self._open_until:
            self._move(State.HALF_OPEN, "break over; probing", events)

    def _admit(self, now: float, lease: float) -> Permit | None:
        """A permit (a probe's with its lease) when the state lets a call go, else None."""
        if self._turns and self._state is State.CLOSED:
            if now >= self._last_turn:
                self._turns.clear()
            else:
                me = threading.current_thread()
                turn = self._turns.get(me)
                if turn is not None:
                    if now < turn:
                        return None
                    del self._turns[me]
        if self._state in (State.CLOSED, State.DISABLED, State.METRICS_ONLY):
            return Permit(self._generation)
        if self._state is not State.HALF_OPEN or len(self._probes) >= self._config.half_open_max_calls:
            return None
        probe_id = self._next_probe_id
        self._next_probe_id += 1
        self._probes[probe_id] = now + max(lease, 0.001)
        return Permit(self._generation, probe_id)

    def _refusal(self, now: float) -> CircuitOpenError:
        """The error for a refused call: why, and when the next one may go."""
        self.rejected += 1
        state = self._state
        wait: float | None
        if state is State.CLOSED:  # a held thread before its turn (see "Callers held back" above)
            wait = self._turns[threading.current_thread()] - now
            why = (f"back after a break; the callers held during it return spread over "
                   f"{self._config.return_spread:g}s")
        elif state is State.HALF_OPEN:
            wait = max(0.0, min(self._probes.values()) - now)
            why = "a probe is in flight"
        elif state is State.FORCED_OPEN:
            wait = None if self._open_until == float("inf") else self._open_until - now
            why = "forced open by an operator"
        else:
            wait = self._open_until - now
            why = f"open after failures ({self.last_failure_reason or 'unknown'})"
        if state is not State.CLOSED and self._holding and len(self._held) < _HELD_MAX:
            self._held[threading.current_thread()] = None
        return CircuitOpenError(
            f"circuit for {self.origin} [{self.operation_class}] is {state}: {why}; "
            + ("reset it to retry" if wait is None else f"next attempt in {wait:.1f}s"),
            origin=self.origin,
            operation_class=self.operation_class,
            retry_after=wait,
            retry_at=None if wait is None else self._clock.wall() + wait,
        )

    def record(self, permit: Permit, outcome: Outcome, reason: str = "") -> None:
        """Record an attempt's outcome; a permit from an earlier generation is ignored."""
        events: list[Transition] = []
        with self._lock:
            now = self._clock.monotonic()
            self._expire_leases(now, events)
            if permit.generation == self._generation:
                self._probes.pop(permit.probe_id, None)
                if self._state is not State.DISABLED and outcome is not Outcome.NEUTRAL:
                    self._apply(now, outcome is Outcome.FAILURE, reason, events)
        self._notify(events)

    def _apply(self, now: float, failed: bool, reason: str, events: list[Transition]) -> None:
        wall = self._clock.wall()
        if failed:
            self.last_failure_wall = wall
            self.last_failure_reason = reason or "failure"
        else:
            self.last_success_wall = wall
        if self._state is State.HALF_OPEN:
            if not failed:
                self._probe_successes += 1
                if self._probe_successes >= self._config.success_threshold:
                    self._move(State.CLOSED, "probe succeeded", events, spread=True)
            else:
                self._reopen_count += 1
                self._trip(now, f"probe failed: {self.last_failure_reason}", events)
        elif self._state in (State.CLOSED, State.METRICS_ONLY):
            self._window.append(failed)
            self._consecutive_failures = self._consecutive_failures + 1 if failed else 0
            why = self._trip_reason() if failed else ""
            if why and self._state is State.CLOSED:
                if now - self._closed_since >= self._config.reset_after:
                    self._reopen_count = 0
                self._trip(now, why, events)
            elif why:
                log.info("circuit %s [%s] would open (metrics only): %s",
                         self.origin, self.operation_class, why)

    # -- operator controls -----------------------------------------------------------------
    def force_open(self, duration: float | None = None, reason: str = "forced open") -> None:
        """Refuse every call until ``reset()`` (an operator's switch)."""
        events: list[Transition] = []
        with self._lock:
            now = self._clock.monotonic()
            self._open_until = float("inf") if duration is None else now + duration
            self._move(State.FORCED_OPEN, reason, events)
        self._notify(events)

    def reset(self) -> None:
        """Back to CLOSED with clean counters (and the break doubling forgotten)."""
        events: list[Transition] = []
        with self._lock:
            self._reopen_count = 0
            self._move(State.CLOSED, "reset", events)
        self._notify(events)

    def disable(self) -> None:
        """Never refuse a call, and record nothing: outcomes are ignored until ``reset()`` (use
        ``metrics_only()`` to keep counting without refusing)."""
        events: list[Transition] = []
        with self._lock:
            self._move(State.DISABLED, "disabled", events)
        self._notify(events)

    def metrics_only(self) -> None:
        """Record outcomes and transitions without ever refusing a call."""
        events: list[Transition] = []
        with self._lock:
            self._move(State.METRICS_ONLY, "metrics only", events)
        self._notify(events)

    def probe_now(self, reason: str = "recover() asked for a probe", *, release_held: bool = True) -> None:
        """End an OPEN break early so the next call probes. ``Client.recover`` asks for now: the
        threads held back go at once (``release_held``); a reachability look that connected
        (``release_held=False``) leaves them to their turns once the probe brings the origin back."""
        events: list[Transition] = []
        with self._lock:
            if release_held:
                self._held.clear()
                self._turns.clear()
            if self._state is State.OPEN:
                self._open_until = self._clock.monotonic()
                self._move(State.HALF_OPEN, reason, events)
            if release_held and self._state in (State.OPEN, State.HALF_OPEN):
                self._holding = False  # until the break is over or a new one starts (``_move``)
        self._notify(events)

    # -- persistence -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state; times are stored as remaining seconds plus the wall time."""
        with self._lock:
            now = self._clock.monotonic()
            remaining = self._open_until - now if self._open_until != float("inf") else -1.0
            return {
                "origin": self.origin,
                "operation_class": self.operation_class,
                "state": self._state.value,
                "open_remaining": max(remaining, 0.0) if remaining != -1.0 else None,
                "reopen_count": self._reopen_count,
                "consecutive_failures": self._consecutive_failures,
                "window": [1 if f else 0 for f in self._window],
                "saved_wall": self._clock.wall(),
                "last_failure_reason": self.last_failure_reason,
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a ``snapshot``; elapsed wall time is subtracted and no break exceeds its cap."""
        events: list[Transition] = []
        with self._lock:
            now = self._clock.monotonic()
            elapsed = max(0.0, self._clock.wall() - float(data.get("saved_wall", self._clock.wall())))
            try:
                state = State(data.get("state", "closed"))
            except ValueError:
                return
            self._reopen_count = max(0, min(int(data.get("reopen_count", 0)), 32))
            consecutive = max(0, int(data.get("consecutive_failures", 0)))
            window = [bool(x) for x in list(data.get("window", []))[-self._config.window_size:]]
            self.last_failure_reason = str(data.get("last_failure_reason", ""))[:200]
            remaining = data.get("open_remaining")
            if state is State.HALF_OPEN:
                state, remaining = State.OPEN, 0.0
            if state in (State.OPEN, State.FORCED_OPEN):
                if remaining is None and state is State.FORCED_OPEN:
                    self._open_until = float("inf")
                else:
                    left = min(float(remaining or 0.0) - elapsed, self._config.max_open_duration * 2)
                    if state is State.OPEN:
                        left = min(left, self._config.max_open_duration)
                    self._open_until = now + max(0.0, left)
            self._move(state, "restored from a snapshot", events)
            # After the move, which clears the counts on entering CLOSED: a restart keeps them.
            self._consecutive_failures = consecutive
            self._window.clear()
            self._window.extend(window)
        self._notify(events)

    # -- internals (lock held) -------------------------------------------------------------
    def _seen(self, now: float) -> State:
        """What ``state`` reports: the state after the transitions time alone would make, without
        making them (no counters change, no event is emitted)."""
        state = self._state
        if state is State.HALF_OPEN and self._probes and min(self._probes.values()) <= now:
            return State.OPEN
        if state is State.OPEN and now >= self._open_until:
            return State.HALF_OPEN
        return state

    def _trip_reason(self) -> str:
        cfg = self._config
        if self._consecutive_failures >= cfg.failure_threshold:
            return f"{self._consecutive_failures} consecutive failures ({self.last_failure_reason})"
        if len(self._window) >= cfg.minimum_calls:
            ratio = sum(self._window) / len(self._window)
            if ratio >= cfg.failure_ratio and ratio > 0:
                return f"failure ratio {ratio:.0%} over {len(self._window)} calls ({self.last_failure_reason})"
        return ""

    def _trip(self, now: float, why: str, events: list[Transition]) -> None:
        cfg = self._config
        base = exponential(self._reopen_count + 1, cfg.open_duration, cfg.max_open_duration)
        self._open_until = now + min(cfg.max_open_duration, max(0.0, around(base, cfg.jitter, self._clock.random())))
        self._move(State.OPEN, why, events, retry_after=self._open_until - now)

    def _expire_leases(self, now: float, events: list[Transition]) -> None:
        if self._state is not State.HALF_OPEN or not self._probes:
            return
        expired_at = min(self._probes.values())
        if expired_at <= now:
            # The break counts from when the lease ran out, not from when someone noticed.
            self.last_failure_reason = "probe lease expired (the probe hung)"
            self.last_failure_wall = self._clock.wall()
            self._reopen_count += 1
            self._trip(expired_at, self.last_failure_reason, events)

    def _move(self, new: State, why: str, events: list[Transition], retry_after: float | None = None,
              spread: bool = False) -> None:
        """Change state; ``spread``: the origin is back, and the threads held meanwhile get turns."""
        old = self._state
        self._state = new
        self._generation += 1
        self._probes.clear()
        self._probe_successes = 0
        if new in (State.CLOSED, State.METRICS_ONLY, State.DISABLED):
            self._consecutive_failures = 0
            self._window.clear()
        if new is State.CLOSED:
            self._closed_since = self._clock.monotonic()
        self._turns.clear()  # a new break refuses everyone again; any other change ends the turns
        self._holding = True
        if new not in (State.OPEN, State.HALF_OPEN, State.FORCED_OPEN):  # the break is over
            if spread:
                self._give_turns()
            self._held.clear()
        if old is not new:
            events.append(Transition(self.origin, self.operation_class, old, new, why,
                                     self._clock.wall(), retry_after))

    def _give_turns(self) -> None:
        """The held threads' turns, evenly over ``return_spread`` from now in the order they were
        first refused (the first at once); the thread that brought the origin back is not held."""
        me = threading.current_thread()
        held = [thread for thread in self._held if thread is not me and thread.is_alive()]
        spread = self._config.return_spread
        if len(held) < 2 or spread <= 0:
            return
        now, step = self._clock.monotonic(), spread / len(held)
        self._turns = {thread: now + step * k for k, thread in enumerate(held)}
        self._last_turn = now + step * (len(held) - 1)


class BreakerRegistry:
    """All breakers of one client, created on first use; operator controls by origin.

    Read states with ``states()``; ``force_open``, ``reset``, ``disable`` and ``metrics_only``
    act on every partition of an origin (or of all origins when ``origin`` is None), including
    partitions created later.
    """

    def __init__(self, config: CircuitBreakerConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._listeners: list[TransitionListener] = []

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(transition)`` on every state change (outside any lock)."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def _deliver(self, events: list[Transition]) -> None:
        for event in events:
            log.log(logging.WARNING if event.new in (State.OPEN, State.FORCED_OPEN) else logging.INFO,
                    "circuit %s [%s]: %s -> %s (%s)", event.origin, event.operation_class,
                    event.old, event.new, event.reason)
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a broken listener must not break the breaker
                    log.exception("circuit listener %r failed", listener)

    def get(self, origin: str, operation_class: str) -> CircuitBreaker:
        """The breaker for ``origin`` and ``operation_class``, created on first use."""
        key = (origin, operation_class)
        breaker = self._breakers.get(key)
        if breaker is not None:
            return breaker
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(origin, operation_class, self._config, self._clock, self._deliver)
                self._breakers[key] = breaker
        return breaker

    def all(self) -> list[CircuitBreaker]:
        """Every breaker created so far."""
        with self._lock:
            return list(self._breakers.values())

    def _select(self, origin: str | None, operation_class: str | None) -> Iterable[CircuitBreaker]:
        return [b for b in self.all() if (origin is None or b.origin == origin.rstrip("/"))
                and (operation_class is None or b.operation_class == operation_class)]

    def states(self) -> dict[str, str]:
        """``{"<origin> <operation class>": state}`` for every partition used so far."""
        return {f"{b.origin} {b.operation_class}": b.state.value for b in self.all()}

    def force_open(self, origin: str | None = None, duration: float | None = None,
                   operation_class: str | None = None) -> None:
        """Force open the breakers matching ``origin`` (None: all) until reset."""
        for b in self._select(origin, operation_class):
            b.force_open(duration)

    def reset(self, origin: str | None = None, operation_class: str | None = None) -> None:
        """Close the breakers matching ``origin`` and ``operation_class`` (None: all), with clean counters."""
        for b in self._select(origin, operation_class):
            b.reset()

    def disable(self, origin: str | None = None, operation_class: str | None = None) -> None:
        """Stop the matching breakers from refusing calls; they ignore outcomes until ``reset``."""
        for b in self._select(origin, operation_class):
            b.disable()

    def metrics_only(self, origin: str | None = None, operation_class: str | None = None) -> None:
        """Put the matching breakers in metrics-only mode (record, never refuse)."""
        for b in self._select(origin, operation_class):
            b.metrics_only()

    def probe_now(self) -> None:
        """Let open breakers send a probe at once (used by ``client.recover()``)."""
        for b in self.all():
            b.probe_now()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every breaker's state as JSON-able data, for the state file."""
        return [b.snapshot() for b in self.all()]

    def restore(self, snapshots: list[dict[str, Any]]) -> None:
        """Load ``snapshot`` output; the partitions exist (and are reported) from now on."""
        for snap in snapshots:
            if not isinstance(snap, dict):
                continue
            origin, operation_class = snap.get("origin"), snap.get("operation_class")
            if isinstance(origin, str) and isinstance(operation_class, str) and origin and operation_class:
                self.get(origin, operation_class).restore(snap)
