"""The service's admin objects: immutable, slotted value classes with snake_case fields.

Labels, scale sets, runner groups, sessions, JIT runner configurations, statistics and the
``SystemInfo`` user agent live here; the message queue's messages and their jobs live in
``_messages.py``, which builds on this module (never the other way round).

Each model reads its wire form leniently (``from_wire``: unknown keys ignored, any key casing,
missing optional keys defaulted, zero timestamps as None) and writes exactly what the service
wants (``to_wire``). Instances are immutable and safe to share between threads. Secrets (the
message queue token, JIT configs) are left out of ``repr``.

How they are built (issue 28): as value classes over one tuple of field values
(``_value_class.py``), which behave like the frozen dataclasses they were and cost a fraction to
build (a 16-field job cost ~1.5 µs as a dataclass); a field read costs ~40 ns more than a slot's.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from . import _wire as w
from ._errors import ResponseError
from ._value_class import ValueClass as _Model
from ._value_class import make as _make
from ._value_class import value_field as _field
from ._version import __version__

__all__ = [
    "JitRunnerConfig",
    "JitRunnerSetting",
    "Label",
    "RunnerGroup",
    "RunnerReference",
    "RunnerScaleSet",
    "RunnerScaleSetSession",
    "RunnerScaleSetStatistic",
    "RunnerSetting",
    "SystemInfo",
]

NIL_UUID = "00000000-0000-0000-0000-000000000000"
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
