"""The fake's admin API: scale sets, runner groups, runners and JIT configs.

A mixin of ``FakeActionsService``, like the GitHub and jobs sides: each ``_op_*`` answers one
operation of protocol.md §3 from the service's shared state, under its lock.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from typing import Any

from ._github_side import b64
from ._jobs_side import JobRecord
from ._servers import LoggedRequest

__all__ = ["ACTIONS_TYPE", "TASK_TYPE", "AdminSide"]

ACTIONS_TYPE = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"
TASK_TYPE = "GitHub.DistributedTask.WebApi.{}, GitHub.DistributedTask.WebApi"


class AdminSide:
    """Scale sets, runner groups and runners.

    ``list_page_size``: None (the default) answers a listing in one page, as the reference's
    test double does; a number splits it into pages of that many items, the next page named by
    a ``continuationToken`` in the body, to be sent back as the ``continuationToken`` query
    parameter. ASSUMPTION: whether and how the real service pages these listings is unknown.
    """

    list_page_size: int | None = None

    _lock: threading.RLock
    _scale_sets: dict[int, dict[str, Any]]
    _groups: dict[str, dict[str, Any]]
    _runners: dict[int, dict[str, Any]]
    _jobs: dict[int, JobRecord]
    _ids: itertools.count[int]
    _runner_ids: itertools.count[int]

    @property
    def actions_url(self) -> str:
        raise NotImplementedError  # the service's

    def delete_scale_set(self, scale_set_id: int) -> None:
        raise NotImplementedError  # the service's

    def statistics(self, scale_set_id: int) -> dict[str, int]:
        raise NotImplementedError  # the jobs side's

    def _stamped_statistics(self, scale_set_id: int) -> tuple[int, dict[str, int]]:
        raise NotImplementedError  # the jobs side's

    def _sent(self, scale_set_id: int, stamp: int, stats: dict[str, Any] | None, source: str) -> None:
        raise NotImplementedError  # the jobs side's

    def _scale_set_now(self, scale_set_id: int, source: str = "") -> dict[str, Any] | None:
        """The stored scale set as sent, with the statistics of this moment. ASSUMPTION: a scale set
        read carries current statistics (protocol §3.3 shows the field, optional, its freshness is
        unconfirmed); ``source`` logs the figure as sent to a client (``figures_sent``)."""
        with self._lock:
            stored = self._scale_sets.get(scale_set_id)
            if stored is None:
                return None
            stamp, stats = self._stamped_statistics(scale_set_id)
            if source:
                self._sent(scale_set_id, stamp, stats, source)
            return {**stored, "statistics": stats}

    @staticmethod
    def _error(status: int, type_name: str, message: str) -> tuple[int, Any]:
        return status, {"$id": "1", "innerException": None, "message": message, "typeName": type_name,
                        "typeKey": type_name.split(",")[0].rsplit(".", 1)[-1], "errorCode": 0, "eventId": 3000}

    # -- scale sets --------------------------------------------------------------------------
    def _op_get_runner_scale_set(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        name, group = req.query.get("name"), req.query.get("runnerGroupId")
        with self._lock:
            found = [self._scale_set_now(s["id"], "scale_set") for s in self._scale_sets.values()
                     if s["name"] == name and str(s["runnerGroupId"]) == str(group)]
        return 200, {"count": len(found), "value": found}

    def _op_create_runner_scale_set(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        body = req.json()  # its form was checked by _strict.form_problem
        with self._lock:
            group_id = body.get("runnerGroupId") or 1
            if any(s["name"] == body["name"] and s["runnerGroupId"] == group_id for s in self._scale_sets.values()):
                return self._error(409, ACTIONS_TYPE.format("RunnerScaleSetExistsException"),
                                   f"A runner scale set named {body['name']} already exists.")
            scale_set_id = next(self._ids)
            group = next((g for g in self._groups.values() if g["id"] == group_id), None)
            # ASSUMPTION: labels are stored as sent (the reference client always sends at least
            # the name as a label; what the service does with none is unknown).
            stored = {"id": scale_set_id, "name": body["name"], "runnerGroupId": group_id,
                      "runnerGroupName": group["name"] if group else "", "labels": body.get("labels", []),
                      "RunnerSetting": body.get("RunnerSetting", {}), "createdOn": "2026-05-05T16:27:43.517Z",
                      "runnerJitConfigUrl": f"{self.actions_url}_apis/runtime/runnerscalesets/{scale_set_id}"
                                            "/generatejitconfig",
                      "statistics": self.statistics(scale_set_id)}
            self._scale_sets[scale_set_id] = stored
            return 200, dict(stored)

    def _op_get_runner_scale_set_by_id(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        found = self._scale_set_now(int(params["id"]), "scale_set")
        if found is None:
            return self._error(404, ACTIONS_TYPE.format("RunnerScaleSetNotFoundException"),
                               f"Runner scale set {params['id']} not found.")
        return 200, found

    def _op_update_runner_scale_set(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        body = req.json() or {}
        with self._lock:
            found = self._scale_sets.get(int(params["id"]))
            if found is None:
                return self._error(404, ACTIONS_TYPE.format("RunnerScaleSetNotFoundException"), "not found")
            # A field the body leaves out keeps its value (the reference client omits unset
            # fields, so the service must); a field sent as empty is set empty.
            for key in ("name", "runnerGroupId", "labels", "RunnerSetting"):
                if key in body:
                    found[key] = body[key]
            if "runnerGroupId" in body:
                group = next((g for g in self._groups.values() if g["id"] == body["runnerGroupId"]), None)
                found["runnerGroupName"] = group["name"] if group else ""
            return 200, dict(found)

    def _op_delete_runner_scale_set(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        with self._lock:
            if int(params["id"]) not in self._scale_sets:
                # ASSUMPTION: 400 with a JSON message is the error shape the reference's test double
                # uses for this endpoint; whether the real service answers 400 or 404 is unknown.
                return 400, {"message": f"Runner scale set {params['id']} does not exist"}
            self.delete_scale_set(int(params["id"]))
        return 204, None

    def _page(self, items: list[dict[str, Any]], req: LoggedRequest) -> tuple[int, Any]:
        """``items`` as a ``{"count", "value"}`` listing, one page of ``list_page_size`` at a time."""
        size = self.list_page_size
        try:
            start = int(req.query.get("continuationToken") or 0)
        except ValueError:
            return 400, {"message": "invalid continuation token"}
        if not size:
            return 200, {"count": len(items), "value": items}
        page = items[start:start + size]
        answer: dict[str, Any] = {"count": len(page), "value": page}
        if start + size < len(items):
            answer["continuationToken"] = str(start + size)
        return 200, answer

    def _op_list_runner_scale_sets(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        group = req.query.get("runnerGroupId")
        with self._lock:
            # ASSUMPTION: without runnerGroupId every group's scale sets are listed (the reference
            # always sends it).
            found = [self._scale_set_now(s["id"], "scale_set") for s in sorted(
                self._scale_sets.values(), key=lambda s: s["id"]) if group is None or str(s["runnerGroupId"]) == group]
        return self._page([f for f in found if f is not None], req)

    def _op_list_runner_groups(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        with self._lock:
            groups = sorted((dict(g) for g in self._groups.values()), key=lambda g: g["id"])
        return self._page(groups, req)

    def _op_get_runner_group_by_name(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        with self._lock:
            group = self._groups.get((req.query.get("groupName") or "").lower())
        return 200, {"count": 1 if group else 0, "value": [group] if group else []}

    # -- runners -----------------------------------------------------------------------------
    def _op_generate_jit_runner_config(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        body = req.json() or {}
        name = body.get("name", "")
        with self._lock:
            if int(params["id"]) not in self._scale_sets:
                return self._error(404, ACTIONS_TYPE.format("RunnerScaleSetNotFoundException"), "scale set not found")
            if any(r["name"] == name for r in self._runners.values()):
                return self._error(409, TASK_TYPE.format("AgentExistsException"),
                                   f"Pool 0 already contains an agent with name {name}.")
            runner = {"id": next(self._runner_ids), "name": name, "runnerScaleSetId": int(params["id"])}
            self._runners[runner["id"]] = runner
        secret = b64(json.dumps({"runner": runner["id"], ".credentials": secrets.token_hex(16)}).encode())
        return 200, {"runner": runner, "encodedJITConfig": secret}

    def _op_get_runner(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        with self._lock:
            runner = self._runners.get(int(params["rid"]))
        if runner is None:
            return self._error(404, TASK_TYPE.format("AgentNotFoundException"), f"Agent {params['rid']} not found")
        return 200, runner

    def _op_get_runner_by_name(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        with self._lock:
            found = [r for r in self._runners.values() if r["name"] == req.query.get("agentName")]
        return 200, {"count": len(found), "value": found}

    def _op_remove_runner(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        rid = int(params["rid"])
        with self._lock:
            if rid not in self._runners:
                return self._error(404, TASK_TYPE.format("AgentNotFoundException"), f"Agent {rid} not found")
            if any(j.runner_id == rid and j.state == "running" for j in self._jobs.values()):
                return self._error(400, TASK_TYPE.format("JobStillRunningException"), "The agent is running a job")
            del self._runners[rid]
        return 204, None
