"""What ties a listener's state file to one configuration: the configuration URL and scale set.

A state file copied to another host, or left behind after the listener was pointed at another
scale set, must not replay a foreign cursor. The JSON document carries the binding in full; the
per-event cursor record carries a short digest of it.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["binding", "binding_key", "mismatch"]


def binding(config_url: str, scale_set_id: int, scale_set_name: str | None) -> dict[str, Any]:
    """The binding saved in the state file's JSON document."""
    return {"config_url": config_url, "scale_set_id": scale_set_id, "scale_set_name": scale_set_name or ""}


def binding_key(config_url: str, scale_set_id: int) -> str:
    """A short digest of the configuration URL and scale set id, stamped on every cursor record."""
    return hashlib.sha256(f"{config_url}|{scale_set_id}".encode()).hexdigest()[:16]


def mismatch(saved: dict[str, Any], ours: dict[str, Any]) -> str:
    """Why ``saved`` belongs to another configuration than ``ours`` ("" when it is ours)."""
    if saved.get("scale_set_id") not in (None, ours["scale_set_id"]):
        return f"scale set id {saved.get('scale_set_id')!r}"
    found = saved.get("binding")
    if found is None:
        return ""  # written before bindings existed: the scale set id is all there is to check
    if not isinstance(found, dict):
        return "an unreadable binding"
    for key in ("config_url", "scale_set_id"):
        if found.get(key) != ours[key]:
            return f"{key.replace('_', ' ')} {found.get(key)!r}"
    if ours["scale_set_name"] and found.get("scale_set_name") not in ("", None, ours["scale_set_name"]):
        return f"scale set name {found.get('scale_set_name')!r}"
    return ""
