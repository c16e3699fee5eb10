"""The Actions-service admin operations (protocol §3.2, rows 1-10): scale sets, runner groups,
JIT runner configurations and runners. A mixin of ``Client``, which supplies ``_service``, the
call seam's ``ActionsCalls`` (tenant URL, ``api-version``, admin bearer, exact success status,
resilience).

Listing (``list_runner_scale_sets``, ``list_runner_groups``) reads the same endpoints as the
look-ups by name, without the name (the reference's ``ListRunnerScaleSets``, actions/scaleset
PR #92; the group listing is proposed upstream, PR #125, and unconfirmed). The reference reads
one answer; whether the service pages is unknown, so pages are followed the Azure DevOps way
the service's stack uses elsewhere: a continuation token in the ``X-MS-ContinuationToken``
header (or a ``continuationToken`` body field) is sent back as the ``continuationToken`` query
parameter until none comes. A token that repeats, or more than ``MAX_PAGES`` pages, is a
``ResponseError`` rather than a silent truncation or an endless loop.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, TypeVar

import requests

from . import _wire
from ._calls import ActionsCalls
from ._errors import (
    APIError,
    ConfigError,
    ResponseError,
    RunnerExistsError,
    RunnerGroupNotFoundError,
    RunnerNotFoundError,
    ScaleSetExistsError,
    ScaleSetNotFoundError,
)
from ._models import (
    JitRunnerConfig,
    JitRunnerSetting,
    Label,
    RunnerGroup,
    RunnerReference,
    RunnerScaleSet,
    parse,
)
from ._secrets import Secret, redact_url
from ._validate import check_id, check_name

__all__ = ["MAX_PAGES", "AdminAPI"]

MAX_PAGES = 1000  # a listing that has not ended by then is a service (or proxy) that never stops paging



class _Identified(Protocol):
    @property
    def id(self) -> int: ...


_Item = TypeVar("_Item", bound=_Identified)


def _once_each(items: list[_Item]) -> list[_Item]:
    """Items in order, one per id: a listing whose pages shifted while they were read may repeat
    one (an item without an id, 0, is kept as it came)."""
    seen: set[int] = set()
    kept: list[_Item] = []
    for item in items:
        if item.id and item.id in seen:
            continue
        seen.add(item.id)
        kept.append(item)
    return kept

class AdminAPI:
    """Scale sets, runner groups, JIT configs and runners."""

    _service: ActionsCalls
    _log: logging.Logger

    def _single(self, response: requests.Response, operation: str, what: str) -> Any:
        data = _wire.lower_keys(self._service.json(response, operation), operation)
        count = _wire.get_int(data, "count", operation)
        values = data.get("value") or []
        if count == 0:
            return None
        if count > 1:
            raise APIError(f"multiple {what} found", status=response.status_code, reason=response.reason or "",
                           activity_id=response.headers.get("ActivityId", ""),
                           github_request_id=response.headers.get("X-GitHub-Request-Id", ""),
                           method=response.request.method or "", url=redact_url(response.request.url or ""))
        if not isinstance(values, list) or not values:
            raise ResponseError(f"{operation}: count is 1 but value is empty", operation=operation)
        return values[0]

    def get_runner_scale_set(self, runner_group_id: int, name: str) -> RunnerScaleSet | None:
        """The scale set named ``name`` in the runner group, or None when there is none."""
        check_id("runner_group_id", runner_group_id)
        check_name("name", name)
        response = self._service.actions_call("get_runner_scale_set", "GET", "_apis/runtime/runnerscalesets",
                                              params={"runnerGroupId": runner_group_id, "name": name})
        item = self._single(response, "get_runner_scale_set", f"runner scale sets named {name!r}")
        return None if item is None else parse(RunnerScaleSet, item, "get_runner_scale_set")

    def _list_pages(self, operation: str, path: str, params: dict[str, object], what: str) -> list[Any]:
        """Every item of a ``{"count", "value"}`` listing, following continuation tokens."""
        items: list[Any] = []
        seen: set[str] = set()
        token = ""
        for _ in range(MAX_PAGES):
            query = {**params, "continuationToken": token} if token else params
            response = self._service.actions_call(operation, "GET", path, params=query)
            data = _wire.lower_keys(self._service.json(response, operation), operation)
            values = data.get("value")
            if values is None:
                values = []
            if not isinstance(values, list):
                raise ResponseError(f"{operation}: value is not a list of {what}", operation=operation)
            items.extend(values)
            token = (response.headers.get("X-MS-ContinuationToken")
                     or _wire.get_str(data, "continuationToken", operation)).strip()
            if not token:
                return items
            if token in seen:
                raise ResponseError(f"{operation}: the service sent the same continuation token twice; "
                                    f"the listing of {what} does not advance", operation=operation)
            seen.add(token)
        raise ResponseError(f"{operation}: more than {MAX_PAGES} pages of {what}", operation=operation)

    def list_runner_scale_sets(self, runner_group_id: int | None = None) -> list[RunnerScaleSet]:
        """Every scale set in the runner group (``None``: every group the credentials can see), in
        the service's order, every page followed. A scale set seen twice across pages (the listing
        shifted while it was read) is kept once."""
        params: dict[str, object] = {}
        if runner_group_id is not None:
            check_id("runner_group_id", runner_group_id)
            params["runnerGroupId"] = runner_group_id
        raw = self._list_pages("list_runner_scale_sets", "_apis/runtime/runnerscalesets", params,
                               "runner scale sets")
        return _once_each([parse(RunnerScaleSet, item, "list_runner_scale_sets") for item in raw])

    def list_runner_groups(self) -> list[RunnerGroup]:
        """Every runner group the credentials can see (the group named "Default" is id 1), every
        page followed. The endpoint is the by-name look-up without ``groupName`` (unconfirmed)."""
        raw = self._list_pages("list_runner_groups", "_apis/runtime/runnergroups/", {}, "runner groups")
        return _once_each([parse(RunnerGroup, item, "list_runner_groups") for item in raw])

    def get_runner_scale_set_by_id(self, scale_set_id: int) -> RunnerScaleSet | None:
        """The scale set, or None when the service answers ``null``; 404 raises ScaleSetNotFoundError."""
        check_id("scale_set_id", scale_set_id)
        try:
            response = self._service.actions_call("get_runner_scale_set_by_id", "GET",
                                                  f"_apis/runtime/runnerscalesets/{scale_set_id}")
        except APIError as exc:
            if exc.status == 404 and not isinstance(exc, ScaleSetNotFoundError):
                raise exc.recast(ScaleSetNotFoundError) from exc
            raise
        data = self._service.json(response, "get_runner_scale_set_by_id")
        return None if data is None else parse(RunnerScaleSet, data, "get_runner_scale_set_by_id")

    @staticmethod
    def _scale_set_body(scale_set: RunnerScaleSet, *, default_label: bool) -> dict[str, Any]:
        if not isinstance(scale_set, RunnerScaleSet):
            raise ConfigError(f"expected a RunnerScaleSet, got {type(scale_set).__name__}")
        labels = [Label(name=lb.name, type=lb.type or "System") for lb in scale_set.labels]
        for label in labels:
            check_name("label name", label.name)
        if default_label and not labels:
            if not scale_set.name:
                raise ConfigError("a scale set needs a name or at least one label")
            labels = [Label(name=scale_set.name)]
        body = RunnerScaleSet(**{**{f: getattr(scale_set, f) for f in scale_set.__match_args__},
                                 "labels": labels}).to_wire()
        return body

    def create_runner_scale_set(self, scale_set: RunnerScaleSet) -> RunnerScaleSet:
        """Create a scale set; labels default to its name, label types to "System".
        ``ScaleSetExistsError`` when the name is taken."""
        body = self._scale_set_body(scale_set, default_label=True)
        if scale_set.name:
            check_name("scale set name", scale_set.name)
        try:
            response = self._service.actions_call("create_runner_scale_set", "POST", "_apis/runtime/runnerscalesets",
                                                  body=body, idempotent=False)
        except APIError as exc:
            if exc.status == 409 and "RunnerScaleSetExistsException" in exc.type_name:
                raise exc.recast(ScaleSetExistsError) from exc
            raise
        return parse(RunnerScaleSet, self._service.json(response, "create_runner_scale_set"), "create_runner_scale_set")

    def update_runner_scale_set(self, scale_set_id: int, scale_set: RunnerScaleSet) -> RunnerScaleSet:
        """Update a scale set (PATCH) with only the fields ``scale_set`` sets.

        ``RunnerScaleSet(runner_group_id=2)`` moves the set and leaves its name, labels and
        settings alone; ``labels=[]`` (given, empty) is sent as an empty list. Empty label types
        become "System"; no label is added for you.
        """
        check_id("scale_set_id", scale_set_id)
        if not isinstance(scale_set, RunnerScaleSet):
            raise ConfigError(f"expected a RunnerScaleSet, got {type(scale_set).__name__}")
        body = scale_set.to_patch_wire()
        if "name" in body:
            check_name("scale set name", scale_set.name)
        if "labels" in body:
            for label in scale_set.labels:
                check_name("label name", label.name)
        if not body:
            raise ConfigError("update_runner_scale_set: the RunnerScaleSet sets no field to change "
                              "(pass name=, runner_group_id=, labels= or runner_setting=)")
        response = self._service.actions_call("update_runner_scale_set", "PATCH",
                                              f"_apis/runtime/runnerscalesets/{scale_set_id}", body=body,
                                              idempotent=True)  # sets absolute values: repeating it changes nothing
        return parse(RunnerScaleSet, self._service.json(response, "update_runner_scale_set"), "update_runner_scale_set")

    def delete_runner_scale_set(self, scale_set_id: int) -> None:
        """Delete a scale set; its runners and sessions go with it."""
        check_id("scale_set_id", scale_set_id)
        self._service.actions_call("delete_runner_scale_set", "DELETE", f"_apis/runtime/runnerscalesets/{scale_set_id}",
                                   expected=(204,))

    def get_runner_group_by_name(self, name: str) -> RunnerGroup:
        """The runner group named ``name``; ``RunnerGroupNotFoundError`` when there is none."""
        check_name("name", name)
        response = self._service.actions_call("get_runner_group_by_name", "GET", "_apis/runtime/runnergroups/",
                                              params={"groupName": name})
        item = self._single(response, "get_runner_group_by_name", f"runner groups named {name!r}")
        if item is None:
            raise RunnerGroupNotFoundError(
                f"no runner group found with name {name!r} (create it in the organization's or enterprise's settings, "
                "or use the default group)", status=response.status_code,
                           reason=response.reason or "", method="GET",
                           url=redact_url(response.request.url or ""),
                           activity_id=response.headers.get("ActivityId", ""))
        return parse(RunnerGroup, item, "get_runner_group_by_name")

    def generate_jit_runner_config(self, setting: JitRunnerSetting, scale_set_id: int, *,
                                   replace_existing: bool = False) -> JitRunnerConfig:
        """Register a just-in-time runner; its ``encoded_jit_config`` is a credential.

        ``replace_existing``: when a runner of that name exists already (a retry after a lost
        response, a crash after registering) and belongs to this scale set, remove it and
        register again; one that belongs elsewhere still raises ``RunnerExistsError``.
        """
        if not isinstance(setting, JitRunnerSetting):
            raise ConfigError(f"setting must be a JitRunnerSetting, got {type(setting).__name__}")
        check_name("runner name", setting.name)
        check_id("scale_set_id", scale_set_id)
        for attempt in (1, 2):
            try:
                response = self._service.actions_call("generate_jit_runner_config", "POST",
                                                      f"_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig",
                                                      body=setting.to_wire(), idempotent=False)
                break
            except RunnerExistsError as exc:
                if not replace_existing or attempt == 2:
                    raise
                existing = self.get_runner_by_name(setting.name)
                if existing is not None and existing.runner_scale_set_id != scale_set_id:
                    raise exc.recast(
                        RunnerExistsError,
                        f"runner {setting.name!r} exists and belongs to scale set {existing.runner_scale_set_id}, "
                        f"not {scale_set_id}; choose another name") from exc
                if existing is not None:
                    self._log.info("runner %s exists from an earlier attempt; removing it", setting.name)
                    try:
                        self.remove_runner(existing.id)
                    except RunnerNotFoundError:
                        pass
        config = parse(JitRunnerConfig, self._service.json(response, "generate_jit_runner_config"),
                       "generate_jit_runner_config")
        if config.encoded_jit_config:
            Secret(config.encoded_jit_config)
        return config

    def get_runner(self, runner_id: int) -> RunnerReference:
        """The runner with this id; ``RunnerNotFoundError`` when there is none."""
        check_id("runner_id", runner_id)
        response = self._service.actions_call("get_runner", "GET", f"_apis/distributedtask/pools/0/agents/{runner_id}")
        return parse(RunnerReference, self._service.json(response, "get_runner"), "get_runner")

    def get_runner_by_name(self, name: str) -> RunnerReference | None:
        """The runner with this name, or None when there is none."""
        check_name("name", name)
        response = self._service.actions_call("get_runner_by_name", "GET", "_apis/distributedtask/pools/0/agents",
                                              params={"agentName": name})
        item = self._single(response, "get_runner_by_name", f"runners named {name!r}")
        return None if item is None else parse(RunnerReference, item, "get_runner_by_name")

    def remove_runner(self, runner_id: int) -> None:
        """Remove a runner; ``JobStillRunningError`` means "later", ``RunnerNotFoundError`` "done"."""
        check_id("runner_id", runner_id)
        self._service.actions_call("remove_runner", "DELETE", f"_apis/distributedtask/pools/0/agents/{runner_id}",
                                   expected=(204,))
