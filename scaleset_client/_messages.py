"""The message queue's messages and their jobs: ``RunnerScaleSetMessage`` and the job messages
(``JobMessage``, ``JobAvailable``, ``JobAssigned``, ``JobStarted``, ``JobCompleted``), with the
readers that turn a message body into them.

Why apart from ``_models.py``: these are read on the listener's hot path, many per message, and
most of this module is the code that reads them fast (job by job, ``_parse_job``, and a column at
a time, ``_jobs_together``); the admin objects in ``_models.py`` are read once per call. The
models here are value classes like those (``_value_class.py``), immutable, lenient on the wire;
this module imports ``_models`` (for the statistics) and ``_models`` never imports it.

How a message's jobs are read (issue 28, measured with ``python -m bench.parsing``): past
``json.loads``, the cost was the Python code run for each job (~2.5 µs: key, type and range
checks, two timestamps, the model), not the model. So the usual message is read a column at a
time (``_jobs_together``): for all the jobs of a type at once, loops that run in C check every
key, type, range and timestamp shape and build the models, ~1.3 µs a job. The fields stay eager
rather than read from the parsed dict on first use: a malformed field fails the message when it
is parsed, as it always did, and checking a timestamp costs about what converting it does, so a
lazy field would only move the cost to the first read, which a scaler makes. A message with any
unusual job is read job by job (``_parse_job``), to the same models or the same first error.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, cast

from . import _wire as w
from ._errors import ResponseError
from ._models import RunnerScaleSetStatistic
from ._value_class import ValueClass as _Model
from ._value_class import make as _make
from ._value_class import value_field as _field

__all__ = [
    "JobAssigned",
    "JobAvailable",
    "JobCompleted",
    "JobMessage",
    "JobStarted",
    "RunnerScaleSetMessage",
]

JOB_MESSAGES_TYPE = "RunnerScaleSetJobMessages"


class JobMessage(_Model):
    """Fields every job message carries."""

    __slots__ = ()

    runner_request_id: int = 0
    repository_name: str = ""
    owner_name: str = ""
    job_id: str = ""
    job_workflow_ref: str = ""
    job_display_name: str = ""
    workflow_run_id: int = 0
    event_name: str = ""
    request_labels: list[str] = _field(default_factory=list)
    queue_time: datetime | None = None
    scale_set_assign_time: datetime | None = None
    runner_assign_time: datetime | None = None
    finish_time: datetime | None = None


class JobAvailable(JobMessage):
    """A job this scale set can acquire by ``runner_request_id``."""

    __slots__ = ()

    acquire_job_url: str = ""


class JobAssigned(JobMessage):
    """A job was assigned to this scale set."""

    __slots__ = ()


class JobStarted(JobMessage):
    """A runner of this scale set started the job."""

    __slots__ = ()

    runner_id: int = 0
    runner_name: str = ""


class JobCompleted(JobMessage):
    """The job finished, or its assignment was cancelled (``result`` "canceled")."""

    __slots__ = ()

    result: str = ""
    runner_id: int = 0
    runner_name: str = ""


# How job messages are read, fast (issue 14): keys are looked up as the service spells them, in
# the models' field order, and the whole object is lower-cased only when it carries one of these
# keys in another casing.
_INT64 = 2**63
_JOB_KEYS = frozenset([
    "messageType", "runnerRequestId", "repositoryName", "ownerName", "jobId", "jobWorkflowRef", "jobDisplayName",
    "workflowRunId", "eventName", "requestLabels", "queueTime", "scaleSetAssignTime", "runnerAssignTime",
    "finishTime", "acquireJobUrl", "runnerId", "runnerName", "result",
])
_JOB_KEYS_LOWER = frozenset(k.lower() for k in _JOB_KEYS)
_TIME_KEYS = ("queueTime", "scaleSetAssignTime", "runnerAssignTime", "finishTime")
_ZERO = w.ZERO_TIME
_parse_time = w.parse_time
_JOB_CLASSES: dict[str, type[JobMessage]] = {
    "JobAvailable": JobAvailable, "JobAssigned": JobAssigned, "JobStarted": JobStarted, "JobCompleted": JobCompleted,
}


def _job_view(item: Any) -> dict[str, Any]:
    """The job object keyed as the service spells its keys (case-insensitive reading)."""
    if item.__class__ is not dict:
        w.lower_keys(item, "job message")  # raises for anything but an object
    if _JOB_KEYS.issuperset(item):
        return item  # type: ignore[no-any-return]
    if any(str(k).lower() in _JOB_KEYS_LOWER for k in item.keys() - _JOB_KEYS):
        lowered = w.lower_keys(item, "job message")  # another casing: the last spelling wins
        return {key: lowered.get(key.lower()) for key in _JOB_KEYS}
    return item  # type: ignore[no-any-return]


def _parse_job_general(item: Any) -> JobMessage | None:
    """Any job object: every casing, every lenient conversion, every error in the old order."""
    d = _job_view(item)
    get = d.get
    kind = get("messageType")
    if kind.__class__ is not str:
        kind = w.as_str(kind, "job message", "messageType")
    what = kind or "job message"
    # Straight-line on purpose (this runs per job): the usual value types are taken as they
    # are, anything else goes through the lenient readers of ``_wire``, in the same order.
    s, i = w.as_str, w.as_int
    labels = get("requestLabels") or []
    if not isinstance(labels, list):
        raise ResponseError(f"{what}.requestLabels: expected a list of strings")
    for v in labels:
        if v.__class__ is not str and not isinstance(v, str):
            raise ResponseError(f"{what}.requestLabels: expected a list of strings")
    v = get("runnerRequestId")
    runner_request_id = v if v.__class__ is int and -_INT64 <= v < _INT64 else i(v, what, "runnerRequestId")
    v = get("repositoryName")
    repository_name = v if v.__class__ is str else s(v, what, "repositoryName")
    v = get("ownerName")
    owner_name = v if v.__class__ is str else s(v, what, "ownerName")
    v = get("jobId")
    job_id = v if v.__class__ is str else s(v, what, "jobId")
    v = get("jobWorkflowRef")
    job_workflow_ref = v if v.__class__ is str else s(v, what, "jobWorkflowRef")
    v = get("jobDisplayName")
    job_display_name = v if v.__class__ is str else s(v, what, "jobDisplayName")
    v = get("workflowRunId")
    workflow_run_id = v if v.__class__ is int and -_INT64 <= v < _INT64 else i(v, what, "workflowRunId")
    v = get("eventName")
    event_name = v if v.__class__ is str else s(v, what, "eventName")
    t1, t2, t3, t4 = get("queueTime"), get("scaleSetAssignTime"), get("runnerAssignTime"), get("finishTime")
    try:
        queue_time = None if t1 is None or t1 == _ZERO else _parse_time(t1)
        scale_set_assign_time = None if t2 is None or t2 == _ZERO else _parse_time(t2)
        runner_assign_time = None if t3 is None or t3 == _ZERO else _parse_time(t3)
        finish_time = None if t4 is None or t4 == _ZERO else _parse_time(t4)
    except (ValueError, AttributeError, TypeError):  # not a timestamp string: say which, and why
        queue_time, scale_set_assign_time, runner_assign_time, finish_time = [
            w.as_time(v, what, key) for v, key in zip((t1, t2, t3, t4), _TIME_KEYS, strict=True)]
    cls = _JOB_CLASSES.get(kind)
    if cls is None:
        return None  # unknown job message types are ignored, as the protocol says
    if cls is JobAssigned:
        extra: tuple[Any, ...] = ()
    elif cls is JobStarted:
        extra = (i(get("runnerId"), what, "runnerId"), s(get("runnerName"), what, "runnerName"))
    elif cls is JobCompleted:
        extra = (s(get("result"), what, "result"), i(get("runnerId"), what, "runnerId"),
                 s(get("runnerName"), what, "runnerName"))
    else:
        extra = (s(get("acquireJobUrl"), what, "acquireJobUrl"),)
    return _make(cls, (runner_request_id, repository_name, owner_name, job_id, job_workflow_ref, job_display_name,
                       workflow_run_id, event_name, list(labels), queue_time, scale_set_assign_time,
                       runner_assign_time, finish_time, *extra))


# The usual job object (issue 28): every key the model reads is present in the service's spelling
# with the usual type (checked at once: the tuple of value types against the expected one), no
# key in another casing. Then only the int64 ranges, the labels' items and the timestamps are
# looked at, and the model is built from one tuple; anything else takes the general path, which
# gives the same model or the same error.
_COMMON_KEYS = ("runnerRequestId", "repositoryName", "ownerName", "jobId", "jobWorkflowRef", "jobDisplayName",
                "workflowRunId", "eventName", "requestLabels", "queueTime", "scaleSetAssignTime",
                "runnerAssignTime", "finishTime")
_COMMON_TYPES = (int, str, str, str, str, str, int, str, list, str, str, str, str)
_FAST: dict[Any, tuple[type[JobMessage], Callable[[Any], tuple[Any, ...]], tuple[type, ...]]] = {
    kind: (cls, itemgetter(*_COMMON_KEYS, *extra_keys), (*_COMMON_TYPES, *extra_types))
    for kind, cls, extra_keys, extra_types in (
        ("JobAvailable", JobAvailable, ("acquireJobUrl",), (str,)),
        ("JobAssigned", JobAssigned, (), ()),
        ("JobStarted", JobStarted, ("runnerId", "runnerName"), (int, str)),
        ("JobCompleted", JobCompleted, ("result", "runnerId", "runnerName"), (str, int, str)),
    )
}
_MIN_INT64, _MAX_INT64 = -_INT64, _INT64 - 1
_fast_time = w.parse_time_fast


def _parse_job(item: Any) -> JobMessage | None:
    """One job object of a message body as its model; None for a job type this client does not know."""
    if item.__class__ is not dict or not _JOB_KEYS.issuperset(item):
        return _parse_job_general(item)
    kind = item.get("messageType")
    fast = _FAST.get(kind) if kind.__class__ is str else None
    if fast is None:
        return _parse_job_general(item)
    cls, read, types = fast
    try:
        values = read(item)
    except KeyError:  # a key left out: the general path gives its default
        return _parse_job_general(item)
    if tuple(map(type, values)) != types:
        return _parse_job_general(item)
    # the general path's order of checks: labels, the two ids, the timestamps, then the extras
    labels = values[8]
    for label in labels:
        if label.__class__ is not str:
            return _parse_job_general(item)
    if not (_MIN_INT64 <= values[0] <= _MAX_INT64 and _MIN_INT64 <= values[6] <= _MAX_INT64):
        return _parse_job_general(item)
    t1, t2, t3, t4 = values[9:13]
    t1 = None if t1 == _ZERO else _fast_time(t1)
    t2 = None if t2 == _ZERO else _fast_time(t2)
    t3 = None if t3 == _ZERO else _fast_time(t3)
    t4 = None if t4 == _ZERO else _fast_time(t4)
    if t1 is False or t2 is False or t3 is False or t4 is False:
        return _parse_job_general(item)  # an unusual timestamp: read (or refused) the general way
    if len(values) > 14 and not _MIN_INT64 <= values[-2] <= _MAX_INT64:  # runnerId of started, completed
        return _parse_job_general(item)
    return _make(cls, values[:8] + (list(labels), t1, t2, t3, t4) + values[13:])  # noqa: RUF005  (faster)


# A whole message at once (issue 28): the jobs are grouped by type, then each type's jobs are read
# and checked column by column (every job's runnerRequestId, then every job's repositoryName, ...)
# and built into models with loops that run in C (``map``, ``zip``, ``str.join``, ``bytes.
# translate``), so no Python code runs per job. Any job that is not the usual one (a key in
# another casing or left out, a key the models do not know, a value of another type, an int out
# of range, a timestamp of another shape, an unknown job type) sends the whole message to
# ``_parse_job``, job by job, which gives the same models or the same first error: this path
# answers only when there is nothing to tell.
_ALL_EXTRA_KEYS = ("acquireJobUrl", "runnerId", "runnerName", "result")
_read_all = itemgetter(*_COMMON_KEYS, *_ALL_EXTRA_KEYS)
_BATCH: dict[str, tuple[type[JobMessage], Callable[[Any], tuple[Any, ...]], int, tuple[int, ...],
                        tuple[int, ...], tuple[int, ...]]] = {
    kind: (cls, itemgetter(*_COMMON_KEYS, *extra_keys), 1 + len(_COMMON_KEYS) + len(extra_keys),
           tuple(len(_COMMON_KEYS) + _ALL_EXTRA_KEYS.index(k) for k in extra_keys),
           (1, 2, 3, 4, 5, 7, *str_extra), (0, 6, *int_extra))
    for kind, cls, extra_keys, str_extra, int_extra in (
        ("JobAvailable", JobAvailable, ("acquireJobUrl",), (13,), ()),
        ("JobAssigned", JobAssigned, (), (), ()),
        ("JobStarted", JobStarted, ("runnerId", "runnerName"), (14,), (13,)),
        ("JobCompleted", JobCompleted, ("result", "runnerId", "runnerName"), (13, 15), (14,)),
    )
}
_KINDS = tuple(_BATCH)
_kind_of = itemgetter("messageType")
_ZERO_AS_NONE = {_ZERO: None}.get
_fromisoformat = datetime.fromisoformat
# ``_wire.parse_time_fast``'s shape, which the column checks must answer exactly as it does (a
# test holds the two patterns equal)
_TIME_SHAPE = w.TIME_SHAPE
_checks: tuple[Callable[[str], Any], ...] = ()


def _compiled() -> tuple[Callable[[str], Any], ...]:
    """The column checks' regular expressions, compiled on first use (a message of jobs), not at
    import: ``parse_time_fast``'s shape repeated with a newline between, and an hour past 23
    after the ``T``."""
    global _checks
    if not _checks:
        import re

        one = _TIME_SHAPE
        _checks = (re.compile(f"(?:{one}\\n)*{one}", re.ASCII).fullmatch, re.compile("T(?:2[4-9]|[3-9])").search)
    return _checks


def _same_length_shapes(joined: str, length: int, count: int) -> bool:
    """Whether ``count`` strings of ``length`` characters, joined, each have ``parse_time_fast``'s
    shape, ``YYYY-MM-DDTHH:MM:SS[.digits]Z`` (ASCII digits, hours 00-23): the same answer as
    its regular expression, for the whole column at once and about three times as fast.

    Every separator is where the shape puts it in every string (``joined[4::length]`` is the
    fifth character of each); with the digits taken out, what is left is those separators and
    nothing else, so every other place holds an ASCII digit; the hours follow the one ``T``."""
    if (length != 20 and length < 22) or not joined.isascii():  # no fraction, or a dot and a digit or more
        return False
    fraction = length > 20
    return (joined[4::length] == joined[7::length] == "-" * count
            and joined[13::length] == joined[16::length] == ":" * count
            and joined[10::length] == "T" * count and joined[length - 1::length] == "Z" * count
            and (not fraction or joined[19::length] == "." * count)
            and joined.encode().translate(None, b"0123456789") == (b"--T::.Z" if fraction else b"--T::Z") * count
            and _compiled()[1](joined) is None)


def _times(column: tuple[str, ...]) -> list[datetime | None] | None:
    """A column of timestamp strings read as ``parse_time`` reads each (the zero time as None);
    None when one is not of ``parse_time_fast``'s shape, or is a year-1 time but the zero time
    (ValueError for a date that does not exist)."""
    count = len(column)
    zeros = column.count(_ZERO)
    if zeros == count:
        return [None] * count  # a time not reached yet is the zero time in every job
    lengths = set(map(len, column))
    if len(lengths) == 1:
        joined = "".join(column)
        if not _same_length_shapes(joined, lengths.pop(), count):
            return None
    else:
        # A string with a newline inside cannot pass: each piece would have to be a timestamp,
        # and ``fromisoformat`` refuses two of them in one string.
        joined = "\n".join(column)
        if _compiled()[0](joined) is None:
            return None
    # "0001-" starts a string and nowhere else in strings of that shape: the year-1 times
    if joined.count("0001-") != zeros:
        return None
    parsed: list[datetime | None] = list(map(_fromisoformat, column))
    if not zeros:
        return parsed
    return list(map(_ZERO_AS_NONE, column, parsed))


def _columns(kind: str, jobs: list[Any]) -> list[tuple[Any, ...]] | None:
    """The fields of a message's jobs of one type, a tuple per field in the model's order, or
    None if a job has a key besides the job keys (maybe another casing of one); KeyError if a
    job leaves one of its type's keys out."""
    _, read, width, extras, _, _ = _BATCH[kind]
    lengths = set(map(len, jobs))
    if lengths == {width}:  # the model's keys and no other
        return list(zip(*map(read, jobs), strict=True))
    if lengths == {len(_JOB_KEYS)}:  # every job key, as the service spells them, and no other
        columns = list(zip(*map(_read_all, jobs), strict=True))
        columns[13:] = [columns[i] for i in extras]
        return columns
    if not all(map(_JOB_KEYS.issuperset, jobs)):
        return None
    return list(zip(*map(read, jobs), strict=True))


def _models(kind: str, columns: list[tuple[Any, ...]]) -> list[Any] | None:
    """The models of one type's jobs from their columns, or None if a value is not the usual one:
    a type that is not the field's, an int out of the int64 range, a timestamp of another shape
    (TypeError or ValueError for some of them)."""
    cls, _, _, _, str_columns, int_columns = _BATCH[kind]
    if set(map(type, columns[8])) != {list}:
        return None
    for i in str_columns:
        "".join(columns[i])  # TypeError unless every value is a string (the cheapest check there is)
    "".join(chain.from_iterable(columns[8]))  # the labels, likewise
    for i in int_columns:
        column = columns[i]
        if set(map(type, column)) != {int} or min(column) < _MIN_INT64 or max(column) > _MAX_INT64:
            return None
    times = [_times(columns[i]) for i in (9, 10, 11, 12)]
    if None in times:
        return None
    # the parsed label lists are the models' own: nothing else holds this body's objects
    return list(map(_make, repeat(cls, len(columns[0])), zip(*columns[:9], *times, *columns[13:], strict=True)))


def _jobs_together(items: list[Any]) -> tuple[list[Any], ...] | None:
    """A message body's models by type, if every job is the usual one; None otherwise."""
    if not w.FAST_ISO or set(map(type, items)) != {dict}:  # the column path needs 3.11's fromisoformat
        return None
    by_kind: dict[Any, list[Any]] = {kind: [] for kind in _KINDS}
    try:
        # each job to its type's list, in order (KeyError: no type or an unknown one, which is
        # checked, then ignored, one job at a time; TypeError: a type that is not a string)
        deque(map(list.append, map(by_kind.__getitem__, map(_kind_of, items)), items), 0)
        # every type's keys first, so a key in another casing costs little before the slow way
        columns = [(kind, _columns(kind, jobs)) for kind, jobs in by_kind.items() if jobs]
        if any(found is None for _, found in columns):
            return None
        made = {kind: _models(kind, found) for kind, found in columns if found is not None}
    except (KeyError, TypeError, ValueError):  # also a date that does not exist
        return None
    if None in made.values():
        return None
    return tuple(cast(list[Any], made.get(kind, [])) for kind in _KINDS)


class RunnerScaleSetMessage(_Model):
    """One message from the queue: statistics plus the job messages of its body, in order."""

    __slots__ = ()

    message_id: int = 0
    message_type: str = JOB_MESSAGES_TYPE
    statistics: RunnerScaleSetStatistic | None = None
    job_available_messages: list[JobAvailable] = _field(default_factory=list)
    job_assigned_messages: list[JobAssigned] = _field(default_factory=list)
    job_started_messages: list[JobStarted] = _field(default_factory=list)
    job_completed_messages: list[JobCompleted] = _field(default_factory=list)
    body: str = _field(default="", repr=False)

    @classmethod
    def from_wire(cls, data: Any) -> RunnerScaleSetMessage:
        what = "message"
        d = w.lower_keys(data, what)
        message_id = w.get_int(d, "messageId", what)
        message_type = w.get_str(d, "messageType", what)
        if message_type != JOB_MESSAGES_TYPE:
            raise ResponseError(f"message {message_id}: unsupported message type {message_type[:80]!r}")
        body = w.get_str(d, "body", what)
        available: list[Any] = []
        assigned: list[Any] = []
        started: list[Any] = []
        completed: list[Any] = []
        if body and not body.isspace():  # as ``body.strip()``, without copying a large body
            try:
                items = json.loads(body)
            except (ValueError, RecursionError):
                raise ResponseError(f"message {message_id}: body is not a JSON array",
                                    body_excerpt=w.excerpt(body)) from None
            if items is not None and not isinstance(items, list):
                raise ResponseError(f"message {message_id}: body is a {type(items).__name__}, not an array")
            together = _jobs_together(items) if items else None
            if together is not None:
                available, assigned, started, completed = together
            else:
                buckets = {JobAvailable: available.append, JobAssigned: assigned.append,
                           JobStarted: started.append, JobCompleted: completed.append}
                parse_job = _parse_job
                for item in items or ():
                    job = parse_job(item)
                    if job is not None:
                        buckets[job.__class__](job)
        return _make(cls, (message_id, message_type, RunnerScaleSetStatistic.from_wire(d.get("statistics")),
                           available, assigned, started, completed, body))
