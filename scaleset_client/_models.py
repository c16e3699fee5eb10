"""The protocol's objects: immutable, slotted value classes with snake_case fields.

Each model reads its wire form leniently (``from_wire``: unknown keys ignored, any key casing,
missing optional keys defaulted, zero timestamps as None) and writes exactly what the service
wants (``to_wire``). Instances are immutable and safe to share between threads. Secrets (the
message queue token, JIT configs) are left out of ``repr``.

How they are built (issue 28): as value classes over one tuple of field values
(``_value_class.py``), which behave like the frozen dataclasses they were and cost a fraction to
build (a 16-field job cost ~1.5 µs as a dataclass); a field read costs ~40 ns more than a slot's.

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
import sys
from collections import deque
from collections.abc import Callable
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, ClassVar, TypeVar, cast

from . import _wire as w
from ._errors import ResponseError
from ._value_class import ValueClass as _Model
from ._value_class import make as _make
from ._value_class import value_field as _field
from ._version import __version__

__all__ = [
    "JitRunnerConfig",
    "JitRunnerSetting",
    "JobAssigned",
    "JobAvailable",
    "JobCompleted",
    "JobMessage",
    "JobStarted",
    "Label",
    "RunnerGroup",
    "RunnerReference",
    "RunnerScaleSet",
    "RunnerScaleSetMessage",
    "RunnerScaleSetSession",
    "RunnerScaleSetStatistic",
    "RunnerSetting",
    "SystemInfo",
]

NIL_UUID = "00000000-0000-0000-0000-000000000000"
JOB_MESSAGES_TYPE = "RunnerScaleSetJobMessages"
_T = TypeVar("_T")


class Label(_Model):
    """A scale set label; ``type`` is "System" unless the service says otherwise."""

    __slots__ = ()

    name: str
    type: str = "System"

    @classmethod
    def from_wire(cls, data: Any) -> Label:
        d = w.lower_keys(data, "label")
        return cls(name=w.get_str(d, "name", "label"), type=w.get_str(d, "type", "label") or "System")

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type or "System", "name": self.name}


class RunnerSetting(_Model):
    """Sent as ``RunnerSetting`` (capital R) on the wire."""

    __slots__ = ()

    disable_update: bool = False

    @classmethod
    def from_wire(cls, data: Any) -> RunnerSetting:
        if data is None:
            return cls()
        d = w.lower_keys(data, "RunnerSetting")
        return cls(disable_update=w.get_bool(d, "disableUpdate", "RunnerSetting"))

    def to_wire(self) -> dict[str, Any]:
        return {"disableUpdate": True} if self.disable_update else {}


class RunnerScaleSetStatistic(_Model):
    """Job and runner counts; ``total_assigned_jobs`` is the scaling signal."""

    __slots__ = ()

    total_available_jobs: int = 0
    total_acquired_jobs: int = 0
    total_assigned_jobs: int = 0
    total_running_jobs: int = 0
    total_registered_runners: int = 0
    total_busy_runners: int = 0
    total_idle_runners: int = 0

    _WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("total_available_jobs", "totalAvailableJobs"),
        ("total_acquired_jobs", "totalAcquiredJobs"),
        ("total_assigned_jobs", "totalAssignedJobs"),
        ("total_running_jobs", "totalRunningJobs"),
        ("total_registered_runners", "totalRegisteredRunners"),
        ("total_busy_runners", "totalBusyRunners"),
        ("total_idle_runners", "totalIdleRunners"),
    )

    @classmethod
    def from_wire(cls, data: Any) -> RunnerScaleSetStatistic | None:
        if data is None:
            return None
        d = w.lower_keys(data, "statistics")
        return cls(**{attr: w.get_int(d, key, "statistics") for attr, key in cls._WIRE})

    def to_wire(self) -> dict[str, int]:
        return {key: getattr(self, attr) for attr, key in self._WIRE}


class _Unset:
    """Marks a request field the caller never gave: it reads as the empty value but is left out
    of a partial update, so "not given" differs from "given as empty" (``labels=[]``)."""

    __slots__ = ()


class _UnsetStr(_Unset, str):
    __slots__ = ()


class _UnsetInt(_Unset, int):
    __slots__ = ()


class _UnsetLabels(_Unset, list):  # type: ignore[type-arg]
    __slots__ = ()


class _UnsetRunnerSetting(_Unset, RunnerSetting):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunnerSetting) and other.disable_update == self.disable_update

    def __hash__(self) -> int:
        return hash((self.disable_update,))  # as RunnerSetting hashes: equal objects, equal hashes

    def __repr__(self) -> str:
        return f"RunnerSetting(disable_update={self.disable_update!r})"


_UNSET_STR = _UnsetStr("")
_UNSET_INT = _UnsetInt(0)


def _given(value: object) -> bool:
    """True when the caller set the field, or it holds something (an unset list appended to)."""
    if not isinstance(value, _Unset):
        return True
    return isinstance(value, list) and bool(value)


class RunnerScaleSet(_Model):
    """A runner scale set. ``id`` 0 means "not created yet" and is left out of request bodies.

    Fields the caller does not pass are *unset*: they read as empty (``""``, ``0``, ``[]``) but
    ``update_runner_scale_set`` leaves them out, so a partial update changes only what was given.
    ``fields_set()`` names them. Objects parsed from the service have every field set.
    """

    __slots__ = ()

    name: str = _UNSET_STR
    id: int = _UNSET_INT
    runner_group_id: int = _UNSET_INT
    runner_group_name: str = _UNSET_STR
    labels: list[Label] = _field(default_factory=_UnsetLabels)
    runner_setting: RunnerSetting = _field(default_factory=_UnsetRunnerSetting)
    created_on: datetime | None = None
    runner_jit_config_url: str = _UNSET_STR
    statistics: RunnerScaleSetStatistic | None = None

    @classmethod
    def from_wire(cls, data: Any) -> RunnerScaleSet:
        what = "runner scale set"
        d = w.lower_keys(data, what)
        labels_raw = d.get("labels") or []
        if not isinstance(labels_raw, list):
            raise ResponseError(f"{what}.labels: expected a list")
        return cls(
            name=w.get_str(d, "name", what),
            id=w.get_int(d, "id", what),
            runner_group_id=w.get_int(d, "runnerGroupId", what),
            runner_group_name=w.get_str(d, "runnerGroupName", what),
            labels=[Label.from_wire(x) for x in labels_raw],
            runner_setting=RunnerSetting.from_wire(d.get("runnersetting")),
            created_on=w.get_time(d, "createdOn", what),
            runner_jit_config_url=w.get_str(d, "runnerJitConfigUrl", what),
            statistics=RunnerScaleSetStatistic.from_wire(d.get("statistics")),
        )

    def fields_set(self) -> frozenset[str]:
        """The request fields the caller gave (even as empty), by attribute name."""
        names = ("name", "id", "runner_group_id", "runner_group_name", "labels", "runner_setting",
                 "runner_jit_config_url")
        found = {n for n in names if _given(getattr(self, n))}
        if self.created_on is not None:
            found.add("created_on")
        return frozenset(found)

    def to_wire(self) -> dict[str, Any]:
        """The full body of a create: unset and empty fields as the protocol wants them (§3.3)."""
        body: dict[str, Any] = {}
        if self.id:
            body["id"] = self.id
        body["name"] = self.name
        if self.runner_group_id:
            body["runnerGroupId"] = self.runner_group_id
        if self.runner_group_name:
            body["runnerGroupName"] = self.runner_group_name
        body["labels"] = [label.to_wire() for label in self.labels]
        body["RunnerSetting"] = self.runner_setting.to_wire()
        body["createdOn"] = w.format_time(self.created_on)
        if self.runner_jit_config_url:
            body["runnerJitConfigUrl"] = self.runner_jit_config_url
        return body

    def to_patch_wire(self) -> dict[str, Any]:
        """The body of a partial update: only the fields the caller set, even when empty.

        Unset fields are left out so the service keeps them (sending ``"labels": []`` for a
        field nobody set would strip the labels that route jobs). ``id``, ``createdOn``,
        ``runnerJitConfigUrl`` and ``statistics`` are the service's own and are never sent.
        """
        given = self.fields_set()
        body: dict[str, Any] = {}
        if "name" in given:
            body["name"] = self.name
        if "runner_group_id" in given:
            body["runnerGroupId"] = self.runner_group_id
        if "runner_group_name" in given and self.runner_group_name:
            body["runnerGroupName"] = self.runner_group_name
        if "labels" in given:
            body["labels"] = [label.to_wire() for label in self.labels]
        if "runner_setting" in given:
            body["RunnerSetting"] = self.runner_setting.to_wire()
        return body


class RunnerGroup(_Model):
    """A runner group; the group named "default" is id 1."""

    __slots__ = ()

    id: int = 0
    name: str = ""
    size: int = 0
    is_default_group: bool = False

    @classmethod
    def from_wire(cls, data: Any) -> RunnerGroup:
        d = w.lower_keys(data, "runner group")
        return cls(
            id=w.get_int(d, "id", "runner group"),
            name=w.get_str(d, "name", "runner group"),
            size=w.get_int(d, "size", "runner group"),
            is_default_group=w.get_bool(d, "isDefaultGroup", "runner group"),
        )


class RunnerScaleSetSession(_Model):
    """A message session. The queue token is a credential and stays out of ``repr``."""

    __slots__ = ()

    session_id: str = ""
    owner_name: str = ""
    runner_scale_set: RunnerScaleSet | None = None
    message_queue_url: str = ""
    message_queue_access_token: str = _field(default="", repr=False)
    statistics: RunnerScaleSetStatistic | None = None

    @classmethod
    def from_wire(cls, data: Any) -> RunnerScaleSetSession:
        what = "message session"
        d = w.lower_keys(data, what)
        scale_set = d.get("runnerscaleset")
        return cls(
            session_id=w.get_str(d, "sessionId", what),
            owner_name=w.get_str(d, "ownerName", what),
            runner_scale_set=RunnerScaleSet.from_wire(scale_set) if scale_set is not None else None,
            message_queue_url=w.get_str(d, "messageQueueUrl", what),
            message_queue_access_token=w.get_str(d, "messageQueueAccessToken", what),
            statistics=RunnerScaleSetStatistic.from_wire(d.get("statistics")),
        )

    def problems(self) -> list[str]:
        """What makes this session unusable: empty id, URL or token."""
        found = []
        if not self.session_id or self.session_id == NIL_UUID:
            found.append("sessionId is empty")
        if not self.message_queue_url.startswith(("http://", "https://")):
            found.append("messageQueueUrl is not an absolute http(s) URL")
        if not self.message_queue_access_token:
            found.append("messageQueueAccessToken is empty")
        return found


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
_FAST_ISO = sys.version_info >= (3, 11)  # as in _wire: fromisoformat reads "Z" and long fractions
_fromisoformat = datetime.fromisoformat
# ``_wire.parse_time_fast``'s shape, which the column checks must answer exactly as it does (a
# test holds the two patterns equal)
_TIME_SHAPE = r"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):\d\d:\d\d(?:\.\d+)?Z"
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
    if not _FAST_ISO or set(map(type, items)) != {dict}:
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


class JitRunnerSetting(_Model):
    """The request for a just-in-time runner configuration."""

    __slots__ = ()

    name: str
    work_folder: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "workFolder": self.work_folder}


class RunnerReference(_Model):
    """A runner as the Actions service knows it."""

    __slots__ = ()

    id: int = 0
    name: str = ""
    runner_scale_set_id: int = 0

    @classmethod
    def from_wire(cls, data: Any) -> RunnerReference:
        d = w.lower_keys(data, "runner")
        return cls(
            id=w.get_int(d, "id", "runner"),
            name=w.get_str(d, "name", "runner"),
            runner_scale_set_id=w.get_int(d, "runnerScaleSetId", "runner"),
        )


class JitRunnerConfig(_Model):
    """A registered runner and its JIT configuration, which is a runner credential.

    Pass ``encoded_jit_config`` to the runner (``ACTIONS_RUNNER_INPUT_JITCONFIG`` or
    ``run.sh --jitconfig``); never log it.
    """

    __slots__ = ()

    runner: RunnerReference = _field(default_factory=RunnerReference)
    encoded_jit_config: str = _field(default="", repr=False)

    @classmethod
    def from_wire(cls, data: Any) -> JitRunnerConfig:
        d = w.lower_keys(data, "JIT config")
        runner = d.get("runner")
        return cls(
            runner=RunnerReference.from_wire(runner) if runner is not None else RunnerReference(),
            encoded_jit_config=w.get_str(d, "encodedJITConfig", "JIT config"),
        )


class SystemInfo(_Model):
    """Who is calling: sent as the JSON User-Agent on every request.

    ``build_version`` and ``build_commit_sha`` name this library and default to its version.
    """

    __slots__ = ()

    system: str = ""
    version: str = ""
    commit_sha: str = "NA"
    scale_set_id: int = 0
    subsystem: str = ""
    build_version: str = __version__
    build_commit_sha: str = __version__

    def user_agent(self) -> str:
        """The compact JSON User-Agent, keys in protocol order."""
        return json.dumps(
            {
                "system": self.system,
                "version": self.version,
                "commit_sha": self.commit_sha,
                "scale_set_id": self.scale_set_id,
                "subsystem": self.subsystem,
                "build_version": self.build_version,
                "build_commit_sha": self.build_commit_sha,
                "kind": "scaleset",
            },
            separators=(",", ":"),
            ensure_ascii=True,
        )

    def with_scale_set(self, scale_set_id: int) -> SystemInfo:
        v = self._v
        return _make(SystemInfo, (*v[:3], scale_set_id, *v[4:]))


def parse(model: type[_T], data: Any, operation: str) -> _T:
    """Run ``model.from_wire`` and turn any stray exception into ``ResponseError``."""
    reader: Any = model
    try:
        return reader.from_wire(data)  # type: ignore[no-any-return]
    except ResponseError as exc:
        if not exc.operation:
            exc.operation = operation
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # defensive: never leak these
        raise ResponseError(f"{operation}: malformed response ({type(exc).__name__})", operation=operation) from exc
