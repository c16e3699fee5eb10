"""``Listener``: the poll loop that turns queue messages into scaler calls, and never dies of weather.

The listener is composed of parts, one concept each: ``pacing`` (every wait, and when the run
is over), ``sessions`` (opening, standby, renewal, a scale set confirmed gone), ``statistics``
(which figure the scaler should be on) and ``poll_errors`` (what a failed poll means, a pure
table), ``healing`` (a deleted scale set created again), ``memory`` (what the state file
keeps: cursor, pending acks, progress within a message) and ``failures`` (messages that keep
failing, set aside in the end). ``Listener`` keeps the loop and the delivery of each message.

Promises (the README and docs/listener.md say them to users):

- Statistics (``total_assigned_jobs``) drive the desired count, never message counts.
- A message is acknowledged only after the scaler handled it. The cursor (the last handled
  message id) is written to the state file *before* the ack, and a message at or below the
  cursor is acked and skipped, so a handled message is never handed to the scaler again, within
  a run or across a killed process. Within a message, progress is recorded after each event the
  scaler returns from, so a kill repeats at most the one event whose handler was running or had
  just returned (``Listener.current_event`` gives its message id, kind and index to de-duplicate
  on). A power loss or kernel crash may instead repeat the whole message in flight (being
  handled or being acknowledged), never an acknowledged one: the record is synced when an ack
  fails and when a run ends. A scaler exception leaves the message unacked; it comes again after
  a growing pause, and after ``poison_after`` failures it is set aside (``on_poison``) and acked.
- Scale on time: every figure the service sends reaches ``handle_desired_runner_count`` within
  about a second of its message's arrival (the scaler's own time aside), in every phase (first
  session, restart, session refresh or re-creation, standby takeover, after an outage or
  ``recover()``); the scaler is never left on a figure older than the newest the listener knows
  and never moved back to an older one. Statistics taken with a session are applied before the
  first poll; messages that were already queued then may carry older figures, which are held
  back, never waited for: ``statistics.py`` says how (at most one extra request, and one
  poll cut short, per session opened or renewed; none in steady state).
- Transient trouble (open breakers, 5xx, timeouts, rate limits, garbage) makes the loop wait,
  interruptibly, and go on; expired or evicted sessions are renewed in place; a session
  conflict makes it a standby that takes over when the owner leaves. Only permanent conditions
  end ``run()``: scale set deleted, credentials rejected, configuration wrong.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._breaker import OperationClass, State, Transition
from .._client import Client
from .._deadline import Deadline, detached
from .._errors import (
    ConfigError,
    DeadlineExceededError,
    ResponseError,
    RunSkippedError,
    ScalesetError,
    ScaleSetNotFoundError,
)
from .._http import origin_of
from .._jitter import around
from .._listener_config import EventRef, ListenerConfig, ListenerHealth, MetricsRecorder, Scaler
from .._messages import RunnerScaleSetMessage
from .._models import RunnerScaleSetStatistic
from .._session import MessageSession
from .._validate import INT32_MAX, check_range
from .failures import MessageFailures
from .healing import Healer
from .memory import ListenerMemory
from .pacing import Pacer
from .poll_errors import PERMANENT, PollAction, decide
from .sessions import SessionKeeper
from .statistics import CATCH_UP_LIMIT, CATCH_UP_PEEK, HELD_BY_SERVICE, StatisticsTracker

__all__ = ["EventRef", "Listener", "ListenerConfig", "ListenerHealth", "MetricsRecorder", "RunSkippedError",
           "Scaler"]

log = logging.getLogger(__name__)

MIN_POLL_INTERVAL = 1.0  # an empty or failed poll is followed by the next no sooner than this (±20 %)
DESIRED_REFRESH = 30.0  # an unchanged desired count is re-applied at most this often
CLEANUP_TIME = 1.5  # saving state and deleting the session after a run ends: bounded, never cancelled


class Delivery(enum.Enum):
    """How one message went: handed over (and acknowledged), skipped (handled before, acknowledged
    again) or failed (the scaler raised; the message stays unacknowledged)."""

    HANDLED = "handled"
    SKIPPED = "skipped"
    FAILED = "failed"


class Listener:
    """Runs the message loop for one scale set. ``session`` is a ``MessageSession`` you opened
    (and close), or a ``Client``, in which case the listener opens and closes its own session
    (with standby on conflict and clean-up of its own stale session from the state file).

    Scale on time: every figure the service sends reaches ``handle_desired_runner_count`` within
    about a second of its message's arrival (the scaler's own time aside), in every phase of a
    run, and the scaler is never moved back to an older figure; job events are handed over as
    they arrive. A scaler method may be called from ``run()``'s thread only, one at a time."""

    def __init__(self, session: MessageSession | Client, config: ListenerConfig,
                 metrics: MetricsRecorder | Any | None = None) -> None:
        if not isinstance(config, ListenerConfig):
            raise ConfigError("config must be a ListenerConfig")
        self._session: MessageSession | None
        if isinstance(session, MessageSession):
            if not isinstance(session.client, Client):
                raise ConfigError("Listener takes a MessageSession opened by a Client (client.message_session)")
            self._client, self._session = session.client, session
            if session.scale_set_id != config.scale_set_id:
                raise ConfigError(f"the session is for scale set {session.scale_set_id}, the config for "
                                  f"{config.scale_set_id}")
        elif isinstance(session, Client):
            self._client, self._session = session, None
        else:
            raise ConfigError("Listener takes a MessageSession or a Client")
        self.config = config
        self._metrics = metrics
        self._clock = self._client.clock
        self._pacer = Pacer(self._client, config, self._clock)
        self._keeper = SessionKeeper(self._client, config, self._clock, self._pacer)
        self._max_runners = config.max_runners
        self._stop_early = False
        self._run_thread: threading.Thread | None = None
        self._next_poll = -float("inf")
        self._applied: tuple[int, float] | None = None  # (desired count, when) last applied
        self._cursor = 0
        self._pending_acks: set[int] = set()
        self._statistics = StatisticsTracker()
        self._generation = -1  # the session generation whose statistics were taken (-1: none yet)
        self._after_a_hold = False  # the message in hand came after the service held its poll
        self._catching_up_since = 0.0  # real time catching up began (StatisticsTracker)
        self._partial: dict[int, set[tuple[str, int]]] = {}
        self._last_poll_wall: float | None = None
        self._running = False
        self._dirty = False
        self._owned = self._session is None  # this listener opens (and may re-create) its own session
        self._healer = Healer(config, self._clock, self._keeper, self._pacer)
        self._memory = ListenerMemory(self._client, config, self._keeper, self._healer)
        self._check_cursor = False  # the first poll after loading a cursor asks from 0 to verify it
        self._current: EventRef | None = None
        self._errors = 0  # polls (or desired-count applications) failed in a row
        self.handled_messages = 0
        self._failures = MessageFailures(config, self._record)
        self._client.circuit_breakers.add_listener(self._on_transition)

    # -- controls and health -----------------------------------------------------------------
    def stop(self) -> None:
        """End ``run()`` soon: an in-flight long poll or any wait is interrupted within about a
        second, the owned session is deleted (bounded, 1.5 s) and ``run()`` returns. A message
        the scaler has not finished is never acknowledged. Safe from any thread and from a
        signal handler; a stop before ``run()`` starts makes that run return at once."""
        if self._running and threading.current_thread() is self._run_thread:
            # A signal handler runs in run()'s own thread between two bytecodes, possibly while
            # that thread holds the stop event's lock (inside ``Event.wait``) or a scope's lock:
            # taking either here would deadlock. A fresh thread does the stopping.
            threading.Thread(target=self._stop_now, daemon=True, name="scaleset-stop").start()
        else:
            self._stop_now()

    def _stop_now(self) -> None:
        self._pacer.stop.set()
        scope = self._pacer.scope
        if scope is None:
            self._stop_early = not self._running
            return
        scope.cancel("Listener.stop()")

    def set_max_runners(self, count: int) -> None:
        """Change the advertised capacity; the next poll uses it. Safe from any thread."""
        check_range("max_runners", count, 0, INT32_MAX, integer=True)
        self._max_runners = int(count)

    @property
    def poisoned(self) -> list[int]:
        """Ids of the messages set aside after ``poison_after`` failures, in order."""
        return self._failures.set_aside

    @property
    def max_runners(self) -> int:
        """The capacity advertised on the next poll."""
        return self._max_runners

    @property
    def current_event(self) -> EventRef | None:
        """The event the scaler is being handed right now (None between calls): read it from a
        scaler method to de-duplicate the one event a crash may repeat."""
        return self._current

    @property
    def scale_set_id(self) -> int:
        """The scale set this listener serves: ``config.scale_set_id``, or the id it got when it
        created a deleted scale set again (``ListenerConfig.recreate_deleted``)."""
        return self._keeper.scale_set_id

    @property
    def cursor(self) -> int:
        """The id of the last message handled (0 before the first)."""
        return self._cursor

    def health(self) -> ListenerHealth:
        """Liveness and readiness with the reasons, from local state (no request is sent)."""
        window = self._client.long_poll_timeout + self._client.resilience.retry.deadline + 30.0
        silent = self._clock.monotonic() - self._pacer.last_beat
        live = not self._running or silent <= window
        reasons = [] if live else [f"no progress for {silent:.0f}s"]
        session = self._session
        standby = self._keeper.standby
        ready = self._running and session is not None and session.active and not standby
        if standby:
            reasons.append("standby: another listener owns the session")
        elif session is None or not session.active:
            reasons.append("no active session")
        else:
            origin = origin_of(session.session.message_queue_url)
            for b in self._client.circuit_breakers.all():
                if b.origin == origin and b.operation_class == OperationClass.LONG_POLL and b.state in (
                        State.OPEN, State.FORCED_OPEN):
                    ready = False
                    cause = f": {b.last_failure_reason}" if b.last_failure_reason else ""  # none if forced
                    reasons.append(f"broker circuit {b.state.value}{cause}")
        failing = self._failures.in_a_row
        if failing >= self.config.poison_after:
            ready = False
            reasons.append(f"scaler failing: {failing} errors in a row, messages are being set aside")
        return ListenerHealth(live, ready, "; ".join(reasons), self._cursor, self._last_poll_wall,
                              session.session.session_id if session is not None else "", standby,
                              failing)

    # -- the run -----------------------------------------------------------------------------
    def run(self, scaler: Scaler, stop: threading.Event | None = None, *, until_idle: bool = False,
            duration: float | None = None) -> None:
        """Run the message loop; raise only on a permanent condition.

        Returns when ``stop`` (a ``threading.Event``) is set or ``Listener.stop()`` is called
        (within about a second, even during a long poll, a rate-limit wait or an open breaker),
        when ``duration`` seconds have passed (within ``duration`` + 2 s, whatever the service
        does), when an enclosing ``client.deadline()`` scope ends or is cancelled, or, with
        ``until_idle``, when a poll comes back empty. Clean-up (state file, deleting an owned
        session) then takes at most 1.5 s and is not cut short by the stop it serves.
        Raises ``StateFileLockedError`` when another process runs with the same state file.
        """
        event = stop if stop is not None else self._pacer.stop if self._stop_early else threading.Event()
        if self._stop_early:
            event.set()
        self._stop_early = False
        self._pacer.stop = event  # from here on, stop() sets this run's event
        scope = Deadline(duration, cancel_on=stop, clock=self._clock, reason="listener run")
        owned = self._session is None
        self._memory.acquire()  # for this run: StateFileLockedError when another holds it
        self._running = True
        self._run_thread = threading.current_thread()
        try:
            with scope:
                self._pacer.begin(event, scope)
                if event.is_set():
                    scope.cancel("stopped before the run started")
                self._run_scoped(scaler, until_idle)
        finally:
            self._pacer.finish()
            self._running = False
            with detached(CLEANUP_TIME, clock=self._clock, reason="listener clean-up"):
                try:
                    self._ack_handled_on_the_way_out()
                    self._memory.sync_cursor()
                    self._save()
                finally:
                    if owned and self._session is not None:
                        self._session.close()
                        self._session = None
                    self._memory.release()

    def _run_scoped(self, scaler: Scaler, until_idle: bool) -> None:
        """Load the state, open the session unless one was given, then loop; a scale set deleted
        under the run is created again when the configuration asks for it (``_heal``)."""
        saved = self._load()
        self._pacer.skip_if_known_down()
        while True:
            try:
                if self._session is None:
                    self._session = self._keeper.open(saved.get("session_id"))
                    if self._session is None:
                        return
                self._dirty = True
                self._save()
                self._loop(scaler, until_idle)
                return
            except ScaleSetNotFoundError as exc:
                self._heal(exc)
                saved = {}

    def _heal(self, exc: ScaleSetNotFoundError) -> None:
        """The scale set answered 404: the run ends with it, unless the ``Healer`` created it again
        (``recreate_deleted``); then this listener serves the new one from a fresh start."""
        created = self._healer.heal(exc, own_session=self._owned)
        if created is None:
            return
        self._record("record_scale_set_recreated", self._keeper.scale_set_id, created.id)
        if self._session is not None:
            self._session.close()  # gone with its scale set; deleting it is quiet
            self._session = None
        self._memory.rebind(created.id)
        self._cursor, self._check_cursor = 0, False  # a new queue: the old cursor means nothing there
        self._pending_acks.clear()
        self._partial.clear()
        self._failures.forget_all()
        self._generation = -1
        self._statistics = StatisticsTracker()
        self._memory.write_cursor(0, durable=True)
        self._dirty = True

    def _loop(self, scaler: Scaler, until_idle: bool) -> None:
        session = self._session
        assert session is not None
        self._errors = 0
        while not self._pacer.ending():
            # Each empty poll comes back here (until_idle ends the run after one).
            if self._drain(session, scaler) or until_idle:
                return

    def _observe_session(self, session: MessageSession) -> None:
        """Take the statistics of a session opened or renewed since the last look (by this
        listener, by the client's own recovery on a 401 or 404, or by ``recover()``): they are
        current, and messages already queued may be older (``StatisticsTracker``)."""
        generation = session.generation
        if generation == self._generation:
            return
        self._generation = generation
        self._healer.described(session.session.runner_scale_set)
        before = self._statistics.current
        self._statistics.from_service(session.session.statistics)
        self._catching_up_since = time.monotonic()
        self._note_statistics(before)

    def _note_statistics(self, before: RunnerScaleSetStatistic | None) -> None:
        """Tell the metrics when the statistics the scaler should be on changed."""
        current = self._statistics.current
        if current is not None and current is not before:
            self._record("record_statistics", current)

    def _caught_up(self, session: MessageSession) -> None:
        """The queue was seen empty: when a figure held back still differs from the applied one,
        ask for the current statistics once (a session refresh: a session always carries them,
        docs/protocol.md §3.9). ASSUMPTION: a refreshed session's statistics are those of the moment of
        the refresh, as a new session's are; a failure applies the held figure instead."""
        if not self._statistics.drained():
            return
        before = self._statistics.current
        try:
            renewed = session.refresh()
        except ScalesetError as exc:
            log.info("could not ask for the current statistics (%s); applying the last message's",
                     type(exc).__name__)
            self._statistics.fetch_failed()
        else:
            self._generation = session.generation
            self._statistics.fetched(renewed.statistics)
        self._note_statistics(before)

    def _refresh_desired(self, scaler: Scaler) -> bool:
        """Apply the desired count when due. When the scaler cannot, pause, then poll anyway
        (messages still need handling, and the next statistics may be what it needs). True when
        the run should end."""
        stats = self._statistics.current
        if stats is None or not self._desired_due(stats) or self._desired(scaler, stats):
            return False
        self._errors += 1
        return self._pacer.wait(self._pacer.backoff(self._errors))

    def _drain(self, session: MessageSession, scaler: Scaler) -> bool:
        """Send the acks left pending, then poll and handle messages until a poll comes back empty
        (False) or the run should end (True)."""
        self._flush_acks(session)
        while not self._pacer.ending():
            if self._poll_once(session, scaler):
                return False
        return True

    def _poll_once(self, session: MessageSession, scaler: Scaler) -> bool:
        """One poll and the message it brings; True when the queue came back empty. Every wait
        here that ends early leaves the pacer ``ending``, which the caller checks before the next poll.
        The state file is brought up to date first, including a session the client renewed by
        itself (a 401 or 404 on an ack or a poll, answered by the session's own recovery)."""
        if self._dirty or (self._memory.active and session.session.session_id != self._memory.saved_session):
            self._save()
        # The scaler hears the current figure before the listener waits for anything.
        self._observe_session(session)
        if self._statistics.catching_up and time.monotonic() - self._catching_up_since >= CATCH_UP_LIMIT:
            self._caught_up(session)  # a queue that never paused: settle now, never hold a figure longer
        if self._refresh_desired(scaler):
            return False
        # However fast the service answers empty or fails, about one poll a second.
        if self._pacer.wait(self._next_poll - self._clock.monotonic()):
            return False
        self._pacer.beat()
        self._next_poll = self._clock.monotonic() + around(MIN_POLL_INTERVAL, 0.2, self._clock.random())
        peek = self._statistics.should_peek
        generation, sent = session.generation, time.monotonic()  # real time: how long the service held it
        try:
            if peek:
                with Deadline(CATCH_UP_PEEK, clock=self._clock, reason="catching up: is the queue drained?"):
                    message = self._poll(session)
            else:
                message = self._poll(session)
            # Held by the service, with no renewal in between: the message came after the poll did.
            self._after_a_hold = time.monotonic() - sent >= HELD_BY_SERVICE and session.generation == generation
            self._errors = 0
            self._last_poll_wall = self._clock.wall()
            self._check_cursor = False
            if message is None:
                self._drained(session, scaler)
                return True
            self._next_poll = -float("inf")  # a message: poll again at once, the queue may hold more
            outcome = self._handle(session, scaler, message)
        except ScalesetError as exc:
            if peek and isinstance(exc, DeadlineExceededError) and exc.delivered is None and not self._pacer.ending():
                # Cut while the service held it for CATCH_UP_PEEK seconds: no message was waiting.
                # (Cut between failed attempts, delivered is False: that is trouble, handled below.)
                self._peeked_empty(session, scaler)
                return False
            self._errors += 1
            self._on_poll_error(exc, self._errors)
            return False
        if outcome is Delivery.FAILED:
            self._errors += 1
            self._pacer.wait(self._pacer.backoff(max(1, self._failures.count(message.message_id))))
        return False

    def _poll(self, session: MessageSession) -> RunnerScaleSetMessage | None:
        return session.get_message(0 if self._check_cursor else self._cursor, self._max_runners)

    def _drained(self, session: MessageSession, scaler: Scaler) -> None:
        """An empty poll: settle any figure held back, and tell the scaler before the next wait."""
        self._caught_up(session)
        self._refresh_desired(scaler)

    def _peeked_empty(self, session: MessageSession, scaler: Scaler) -> None:
        """A peek went unanswered: the queue is drained, unless the session was renewed meanwhile
        (then its statistics start catching up again). The next poll goes out at once."""
        self._errors = 0
        self._next_poll = -float("inf")
        if session.generation == self._generation:
            self._drained(session, scaler)

    # -- one message -------------------------------------------------------------------------
    def _handle(self, session: MessageSession, scaler: Scaler, message: RunnerScaleSetMessage) -> Delivery:
        """Take one message to the scaler and acknowledge it (see ``Delivery``)."""
        mid = message.message_id
        if mid <= self._cursor:
            if mid == self._cursor or mid in self._pending_acks:
                log.info("message %d was handled before (cursor %d); acknowledging it again", mid, self._cursor)
                self._ack(session, mid)
                return Delivery.SKIPPED
            self._stale_cursor(mid)
        self._take(session, message)
        try:
            self._hand_over(scaler, message, self._statistics.current)
        except Exception as exc:  # the scaler is user code: any exception leaves the message unacked
            if not self._failures.scaler_failed(mid, exc):
                return Delivery.FAILED
        else:
            self._failures.scaler_succeeded()
        finally:
            self._current = None
        self._finish(session, mid)
        return Delivery.HANDLED

    def _take(self, session: MessageSession, message: RunnerScaleSetMessage) -> None:
        """Acquire the message's available jobs and offer its statistics."""
        mid = message.message_id
        ids = [job.runner_request_id for job in message.job_available_messages]
        if ids:
            acquired = session.acquire_jobs(ids)
            log.info("message %d: acquired %d of %d jobs", mid, len(acquired), len(ids))
        if message.statistics is None:
            log.warning("message %d has no statistics; keeping the last known ones", mid)
        else:
            before = self._statistics.current
            self._statistics.from_message(message.statistics, after_a_hold=self._after_a_hold)
            self._note_statistics(before)

    def _hand_over(self, scaler: Scaler, message: RunnerScaleSetMessage,
                   stats: RunnerScaleSetStatistic | None) -> None:
        """Hand the scaler each event a killed run did not already hand over, recording progress
        after each, then the desired count."""
        mid = message.message_id
        done = self._partial.setdefault(mid, set())
        events: list[tuple[str, list[Any], Callable[[Any], object]]] = [
            ("started", list(message.job_started_messages), scaler.handle_job_started),
            ("completed", list(message.job_completed_messages), scaler.handle_job_completed)]
        for kind, items, handler in events:
            for index, event in enumerate(items):
                if (kind, index) not in done:
                    self._current = EventRef(mid, f"job_{kind}", index)
                    handler(event)
                    done.add((kind, index))
                    self._progress(mid)
                    self._record(f"record_job_{kind}", event)
        if stats is not None:
            self._current = EventRef(mid, "desired_runner_count", 0)
            count = scaler.handle_desired_runner_count(stats.total_assigned_jobs)
            self._applied = (stats.total_assigned_jobs, self._clock.monotonic())
            self._record("record_desired_runners", count)

    def _stale_cursor(self, mid: int) -> None:
        """A message below the cursor that this listener never saw unacknowledged: the cursor
        came from another service (a restored server, a reused file). Warn, count, start afresh."""
        log.warning("the state file's cursor (%d) is ahead of what the service delivers (message %d, never "
                    "handled here): the state file is stale or from another service; starting afresh from "
                    "message %d", self._cursor, mid, mid)
        self._record("record_cursor_ahead", self._cursor, mid)
        self._cursor = mid - 1
        self._pending_acks = {m for m in self._pending_acks if m < mid}
        self._dirty = True

    def _progress(self, mid: int) -> None:
        """Record how far the message in flight got (no fsync: survives a killed process)."""
        if not self._memory.active:
            return
        done = self._partial.get(mid, set())
        started = sum(1 for kind, _ in done if kind == "started")
        completed = sum(1 for kind, _ in done if kind == "completed")
        self._memory.write_cursor(self._cursor, mid, started, completed)

    def _finish(self, session: MessageSession, mid: int) -> None:
        """Move the cursor to a handled (or set aside) message, then acknowledge it."""
        self._cursor = mid
        self._failures.forget(mid)
        self._partial.pop(mid, None)
        self.handled_messages += 1
        # The cursor is written before the ack: a killed process cannot repeat the message. A
        # successful ack deletes it on the server, so only a failed ack needs the record synced.
        self._memory.write_cursor(mid)
        self._ack(session, mid)

    def _ack(self, session: MessageSession, mid: int) -> None:
        self._pending_acks.add(mid)
        try:
            session.delete_message(mid)
        except ScalesetError as exc:
            if isinstance(exc, PERMANENT):
                raise
            log.warning("could not acknowledge message %d yet (%s); will retry", mid, type(exc).__name__)
            if self._memory.active:
                self._memory.sync_cursor()  # the message stays on the server: its cursor must survive a power loss
                if mid not in self._memory.saved_pending:
                    self._dirty = True
                    self._save()  # a message below the cursor left unacked must be known after a crash
            return
        self._pending_acks.discard(mid)
        if mid in self._memory.saved_pending:
            self._dirty = True

    def _ack_handled_on_the_way_out(self) -> None:
        """A stop may cut the ack of a message the scaler finished: send it now (the clean-up's
        time bounds it); one that still fails stays pending in the state file for the next run."""
        session = self._session
        if not self._pending_acks or session is None or session.closed:
            return
        try:
            self._flush_acks(session)
        except ScalesetError as exc:
            log.warning("could not acknowledge handled messages on the way out: %s", exc)

    def _flush_acks(self, session: MessageSession) -> None:
        for mid in sorted(self._pending_acks):
            self._ack(session, mid)

    def _desired_due(self, stats: RunnerScaleSetStatistic) -> bool:
        """Apply the count when it changed, after a failure, or every ``DESIRED_REFRESH`` seconds."""
        applied = self._applied
        return (applied is None or applied[0] != stats.total_assigned_jobs
                or self._clock.monotonic() - applied[1] >= DESIRED_REFRESH)

    def _desired(self, scaler: Scaler, stats: RunnerScaleSetStatistic) -> bool:
        try:
            count = scaler.handle_desired_runner_count(stats.total_assigned_jobs)
        except Exception as exc:  # user code
            self._applied = None
            log.warning("scaler failed to apply desired count %d: %s: %s", stats.total_assigned_jobs,
                        type(exc).__name__, exc)
            return False
        self._applied = (stats.total_assigned_jobs, self._clock.monotonic())
        self._record("record_desired_runners", count)
        return True

    # -- a failed poll ---------------------------------------------------------------------------
    def _on_poll_error(self, exc: ScalesetError, errors: int) -> None:
        """Carry out what ``poll_errors.decide`` says the error means. Nothing is returned: a wait
        that ends early leaves the pacer ``ending``, which the loop checks next."""
        session = self._session
        assert session is not None
        mid = exc.message_id if isinstance(exc, ResponseError) else None
        failures = self._failures.count(mid) + 1 if mid is not None else 0
        action = decide(exc, client_closed=self._client.closed, run_ending=self._pacer.ending(),
                        message_failures=failures, poison_after=self.config.poison_after,
                        recreate_sessions=self._client.resilience.auto_recover_session)
        if action is PollAction.NOTHING:
            if self._client.closed:
                log.info("the client was closed; the listener stops")
        elif action is PollAction.CONFIRM_GONE:
            assert isinstance(exc, ScaleSetNotFoundError)
            self._keeper.confirm_scale_set_gone(exc)
            self._pacer.wait(self._pacer.backoff(errors))
        elif action is PollAction.END:
            raise exc
        elif action in (PollAction.READ_AGAIN, PollAction.SET_ASIDE):
            assert mid is not None
            self._failures.unreadable(mid, failures, exc)
            if action is PollAction.SET_ASIDE:
                self._failures.put_aside(mid, exc)
                self._finish(session, mid)
            else:
                self._pacer.wait(self._pacer.backoff(failures))
        elif action is PollAction.RENEW:
            if self._keeper.renew(session):
                self._dirty = True
        else:
            self._pacer.wait_out(exc, errors, self._client.origin(session.session.message_queue_url))

    # -- state -------------------------------------------------------------------------------
    def _on_transition(self, transition: Transition) -> None:
        self._dirty = True
        self._record("record_circuit_state", transition.origin, transition.new.value)

    def _record(self, hook: str, *args: Any) -> None:
        fn = getattr(self._metrics, hook, None) if self._metrics is not None else None
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("metrics hook %s failed", hook)

    def _load(self) -> dict[str, Any]:
        """Restore the cursor, pending acks and progress within a message from the state file
        (``ListenerMemory.load``); returns the saved document."""
        restored = self._memory.load(self._cursor)
        if restored is None:
            return {}
        self._cursor = restored.cursor
        self._partial.update(restored.partial)
        self._pending_acks.update(restored.pending_acks)
        self._memory.saved_pending = frozenset(self._pending_acks)
        self._check_cursor = self._cursor > 0
        return restored.saved

    def _save(self) -> None:
        """Bring the state file's document up to date (``ListenerMemory.save``)."""
        self._dirty = False
        session = self._session
        session_id = session.session.session_id if session is not None and not session.closed else ""
        self._memory.save(cursor=self._cursor, pending_acks=self._pending_acks, session_id=session_id)
