"""Requests the service refuses for their form, whatever its state: the fake's request checks.

``form_problem`` returns ``(status, reason)`` for a request the service would refuse, or None.
The fake answers such a request with that refusal; in ``strict`` mode it also records it as a
*violation* that fails the test that sent it (``FakeActionsService.close`` raises).

Each check cites where the rule comes from: ``protocol`` (../shared/protocol.md, from the
reference client and observed service behaviour) or ``ASSUMPTION`` (inferred; what the real
service does is unknown). Assumptions are listed in docs/protocol-notes.md.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["form_problem"]

_BODY_OPERATIONS = {"create_runner_scale_set", "update_runner_scale_set", "generate_jit_runner_config",
                    "create_session", "acquire_jobs"}


def _json(body: bytes) -> tuple[bool, Any]:
    if not body:
        return True, None
    try:
        return True, json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return False, None


def _label_problem(labels: Any) -> str:
    if not isinstance(labels, list):
        return "labels must be an array"
    for label in labels:
        if not isinstance(label, dict) or not isinstance(label.get("name"), str) or not label["name"].strip():
            return "every label needs a non-empty name"
        if "type" in label and not isinstance(label["type"], str):
            return "a label type must be a string"
    return ""


def _scale_set_problem(body: Any, group_ids: set[int], *, create: bool) -> str:
    if not isinstance(body, dict):
        return "the body must be a runner scale set object"
    if create or "name" in body:
        name = body.get("name")
        # ASSUMPTION: the service refuses an empty or missing name (the reference client never
        # sends one on create; an update that omits it keeps the old name).
        if not isinstance(name, str) or not name.strip():
            return "a runner scale set name must not be empty"
    if "labels" in body:
        why = _label_problem(body["labels"])
        if why:
            return why
    if "runnerGroupId" in body:
        gid = body["runnerGroupId"]
        if isinstance(gid, bool) or not isinstance(gid, int):
            return "runnerGroupId must be an integer"
        if gid not in group_ids:  # ASSUMPTION: an unknown runner group is refused with 400
            return f"runner group {gid} does not exist"
    if "RunnerSetting" in body and not isinstance(body["RunnerSetting"], dict):
        return "RunnerSetting must be an object"
    return ""


def form_problem(server: str, operation: str, method: str, query: dict[str, str], headers: Any,
                 body: bytes, group_ids: set[int]) -> tuple[int, str] | None:
    """Why the service would refuse this request for its form; None when it would not."""
    if operation == "unknown":
        return 404, f"no endpoint {method} for this path"
    if server == "actions":
        if query.get("api-version") != "6.0-preview":  # docs/protocol.md §3.1
            return 400, "api-version=6.0-preview is required"
        if not headers.get("Authorization", "").startswith("Bearer "):  # docs/protocol.md §3.1
            return 401, "a bearer token is required"
        if operation in _BODY_OPERATIONS and "application/json" not in headers.get("Content-Type", ""):
            return 415, "Content-Type must be application/json"  # ASSUMPTION: 415 for other types
    if server == "broker" and not headers.get("Authorization", "").startswith("Bearer "):
        return 401, "a bearer token is required"
    ok, data = _json(body)
    if operation in _BODY_OPERATIONS and not ok:
        return 400, "the body is not JSON"
    if operation == "create_runner_scale_set":
        why = _scale_set_problem(data, group_ids, create=True)
    elif operation == "update_runner_scale_set":
        why = _scale_set_problem(data, group_ids, create=False)
    elif operation == "generate_jit_runner_config":  # docs/protocol.md §3.7: name and workFolder always sent
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
            why = "a JIT runner setting needs a non-empty name"
        elif not isinstance(data.get("workFolder"), str):
            why = "workFolder must be a string (empty when unset)"
        else:
            why = ""
    elif operation == "create_session":  # docs/protocol.md §3.9
        owner = data.get("ownerName") if isinstance(data, dict) else None
        why = "" if isinstance(owner, str) and owner else "a session needs an ownerName"
    elif operation == "acquire_jobs":  # docs/protocol.md §3.10: a bare JSON array of int64
        ids_ok = isinstance(data, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in data)
        why = "" if ids_ok else "the body must be an array of runner request ids"
    elif operation == "get_message":
        capacity = headers.get("X-ScaleSetMaxCapacity")  # docs/protocol.md §4.1: always sent, even 0
        # ASSUMPTION: the real service's answer to a missing or negative capacity is unconfirmed;
        # the reference's test double answers 400 text/plain.
        why = "" if capacity is not None and capacity.strip().isdigit() else \
            "capacity error: X-ScaleSetMaxCapacity must be a non-negative integer"
    else:
        why = ""
    return (400, why) if why else None
