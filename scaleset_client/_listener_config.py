"""What a listener is given and what it reports: the ``Scaler`` and ``MetricsRecorder`` protocols
your code implements, ``ListenerConfig``, ``ListenerHealth``, ``EventRef`` (which event is being
handled, for de-duplication); ``RunSkippedError`` (defined in ``errors.py``) is importable from here
too. The loop itself is in ``listener.py``.

``EventRef``, ``ListenerConfig`` and ``ListenerHealth`` are frozen value classes
(``_value_class.py``), not dataclasses: the same fields, defaults, validation
(``__post_init__``), equality, ``repr``, pickling and ``dataclasses.fields``/``replace``, without
the ``dataclasses`` import and the per-class compile that every cron run paid (issue 28).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from ._errors import RunSkippedError as RunSkippedError  # its home before errors.py held every error
from ._messages import JobCompleted, JobStarted
from ._models import RunnerScaleSetStatistic
from ._validate import INT32_MAX, check_id, check_range
from ._value_class import ValueClass, value_field


class Scaler(Protocol):
    """What the listener calls. Return the number of runners you now have from the last one.

    Events come in message order; within a message, job-started events first, then job-completed,
    then the desired count. A handler that raises leaves the message unacknowledged (it comes
    again, without the events already handed over). After a crash the one event in flight may
    come again: ``Listener.current_event`` names it (message id, kind, index) for de-duplication.
    """

    def handle_job_started(self, job: JobStarted) -> None:
        """A job started on one of your runners (``job.runner_name``)."""

    def handle_job_completed(self, job: JobCompleted) -> None:
        """A job finished; its runner (ephemeral) goes away: clean up ``job.runner_name``."""

    def handle_desired_runner_count(self, count: int) -> int:
        """Have ``count`` runners (the jobs assigned to the scale set); return how many you have."""


class EventRef(ValueClass):
    """Which event the scaler is handling: ``kind`` is ``job_started``, ``job_completed`` or
    ``desired_runner_count``; ``index`` counts events of that kind within the message. The pair
    (``message_id``, ``kind``, ``index``) is unique, so a scaler can de-duplicate on it."""

    __slots__ = ()

    message_id: int
    kind: str
    index: int


class MetricsRecorder(Protocol):
    """Optional hooks; implement any subset (missing ones are skipped, errors are logged)."""

    def record_statistics(self, statistics: RunnerScaleSetStatistic) -> None:
        """Statistics were applied (only newer ones are)."""

    def record_job_started(self, job: JobStarted) -> None:
        """The scaler handled a job-started event."""

    def record_job_completed(self, job: JobCompleted) -> None:
        """The scaler handled a job-completed event."""

    def record_desired_runners(self, count: int) -> None:
        """The scaler applied a desired count and reported ``count`` runners."""

    def record_circuit_state(self, origin: str, state: str) -> None:
        """A circuit breaker for ``origin`` changed state."""

    def record_scaler_failure(self, message_id: int, error: BaseException) -> None:
        """The scaler raised on a message (it stays unacknowledged, or is set aside)."""

    def record_poisoned(self, message_id: int) -> None:
        """A message failed ``poison_after`` times and was set aside (acknowledged)."""

    def record_cursor_ahead(self, cursor: int, message_id: int) -> None:
        """The state file's cursor was ahead of what the service delivers; it was reset."""


class ListenerConfig(ValueClass):
    """How a listener runs.

    scale_set_id, max_runners
        The scale set, and the capacity advertised on every poll (0 to 2**31-1; change it while
        running with ``Listener.set_max_runners``).
    state_file
        Where the cursor, the session id and the breaker states survive the process (None:
        memory only). One file per listener; a second process using it gets ``StateFileError``.
    standby_interval, standby_timeout
        While another listener owns the scale set's session, try to take over every
        ``standby_interval`` seconds (±20 %), for at most ``standby_timeout`` seconds (None: for
        ever, which makes two replicas an active/standby pair).
    error_backoff, error_backoff_max
        The pause after a failed poll or a scaler error, doubling per failure in a row up to the
        maximum (1 s, 60 s).
    poison_after, on_poison
        A message that fails this many times (the scaler raises, or it cannot be read) is set
        aside: ``on_poison(message_id, error)`` is called (default: an ERROR log line), it is
        acked and the listener goes on (3).
    owner
        The session owner name (default: the host name).
    scale_set_name
        Written to the state file with the configuration URL and ``scale_set_id``; a state file
        saved for another URL, id or name is ignored with a warning (None: the name is not checked).
    min_runners
        The fewest runners the scaler should keep (0). The listener does not add it to the count
        it hands over (``handle_desired_runner_count`` gets the assigned jobs, as always): it is
        passed on, to ``--exec`` scalers in their JSON and to the ``gha_min_runners`` metric, as
        ARC's listener does. At most ``max_runners``.
    recreate_deleted, recreate_interval
        When the scale set is confirmed gone (a 404, and a second look finds it gone; never on a
        5xx), create it again with the same name, runner group, labels and runner settings
        (as the last session described it), open a new session and move the state file to the
        new id, instead of ending the run (False: end the run, the default). At most once per
        ``recreate_interval`` seconds (600), counted across restarts through the state file.
        Only for a listener that opens its own session (given a ``Client``).
    """

    __slots__ = ()

    scale_set_id: int
    max_runners: int
    state_file: str | os.PathLike[str] | None = None
    standby_interval: float = 30.0
    standby_timeout: float | None = None
    error_backoff: float = 1.0
    error_backoff_max: float = 60.0
    poison_after: int = 3
    on_poison: Callable[[int, BaseException], None] | None = value_field(default=None, compare=False)
    owner: str | None = None
    scale_set_name: str | None = None
    min_runners: int = 0
    recreate_deleted: bool = False
    recreate_interval: float = 600.0

    def __post_init__(self) -> None:
        check_id("scale_set_id", self.scale_set_id)
        check_range("max_runners", self.max_runners, 0, INT32_MAX, integer=True)
        check_range("standby_interval", self.standby_interval, 0.001)
        if self.standby_timeout is not None:
            check_range("standby_timeout", self.standby_timeout, 0.0)
        check_range("error_backoff", self.error_backoff, 0.001)
        check_range("error_backoff_max", self.error_backoff_max, self.error_backoff)
        check_range("poison_after", self.poison_after, 1, integer=True)
        check_range("min_runners", self.min_runners, 0, self.max_runners, integer=True)
        check_range("recreate_interval", self.recreate_interval, 0.0)


class ListenerHealth(ValueClass):
    """``live``: the loop is making progress (an outage never makes it false, so a supervisor does
    not restart us into a crash loop). ``ready``: a session is active and the broker's breaker is
    not open, and the scaler is not failing on every message (``scaler_failures``: scaler
    errors in a row; at ``poison_after`` or more, ``ready`` is false until a message succeeds)."""

    __slots__ = ()

    live: bool
    ready: bool
    reason: str
    last_message_id: int = 0
    last_poll_time: float | None = None
    session_id: str = ""
    standby: bool = False
    scaler_failures: int = 0
