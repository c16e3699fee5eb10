"""What a listener keeps in its state file, and how a starting listener reads it back.

The listener decides *when* to write (``_listener``); this module says *what*: its keys of the
JSON document (``document``: every key but the client's ``resilience`` section, which the file's
owner, ``_state_owner``, adds when it writes), and the restore of the cursor, the progress
within a message and the pending acks from the saved document and the cursor record.

What ties the file to one configuration: the configuration URL and scale set. A state file
copied to another host, or left behind after the listener was pointed at another scale set, must
not replay a foreign cursor. The JSON document carries the binding in full; the per-event cursor
record carries a short digest of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from ._value_class import ValueClass

if TYPE_CHECKING:  # the file itself (and its lock) loads with the first state file
    from ._state import StateFile

__all__ = ["Moved", "Restored", "binding", "binding_key", "document", "mismatch", "moved", "restore"]

log = logging.getLogger("scaleset_client._listener")  # the listener's own logger: these are its warnings

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


class Restored:
    """What a state file gives back: the cursor merged with what the listener had, the events
    handled within a message past the cursor, acks still owed, the saved document (for the stale
    session id; empty when it was another configuration's) and whether it was (``foreign``).
    A plain slotted record, filled in place (no ``dataclasses`` on a cron run)."""

    __slots__ = ("cursor", "foreign", "partial", "pending_acks", "saved")

    def __init__(self, cursor: int, partial: dict[int, set[tuple[str, int]]] | None = None,
                 pending_acks: set[int] | None = None, saved: dict[str, Any] | None = None,
                 foreign: bool = False) -> None:
        self.cursor = cursor
        self.partial = {} if partial is None else partial
        self.pending_acks = set() if pending_acks is None else pending_acks
        self.saved = {} if saved is None else saved
        self.foreign = foreign


def restore(state: StateFile, saved: dict[str, Any], ours: dict[str, Any], digest: str, *,
            cursor: int) -> Restored:
    """Read ``saved`` (the JSON document, as the file's owner read it) and the cursor record; a
    file of another configuration, or values of the wrong type, are a warning and a fresh start
    (never a foreign cursor)."""
    why = mismatch(saved, ours)
    if why:
        log.warning("state file %s belongs to %s, not to %s scale set %d%s; ignoring it and starting afresh",
                    state.path, why, ours["config_url"], ours["scale_set_id"],
                    f" ({ours['scale_set_name']})" if ours["scale_set_name"] else "")
        saved = {}
    found = saved.get("cursor")
    if isinstance(found, int) and not isinstance(found, bool) and found >= 0:
        cursor = max(cursor, found)
    out = Restored(cursor, saved=saved, foreign=bool(why))
    record = state.load_cursor()
    if record is not None and record.binding != digest:
        log.warning("cursor record %s belongs to another configuration URL or scale set; ignoring it",
                    state.cursor_path)
        record = None
    if record is not None and (saved or not why):
        out.cursor = max(out.cursor, record.cursor)
        if record.message_id > out.cursor:
            out.partial[record.message_id] = ({("started", i) for i in range(record.started)}
                                              | {("completed", i) for i in range(record.completed)})
    pending = saved.get("pending_acks")
    if isinstance(pending, list):
        out.pending_acks = {m for m in pending if isinstance(m, int) and not isinstance(m, bool)
                            and 0 < m <= out.cursor}
    return out


class Moved(ValueClass):
    """A scale set this listener created again after it was deleted: the ids it had before (oldest
    first) and when (wall time) it was last created again."""

    __slots__ = ()

    from_ids: tuple[int, ...] = ()
    at: float | None = None


def moved(saved: dict[str, Any], ours: dict[str, Any]) -> tuple[int, Moved]:
    """Follow a move saved in ``saved``: when the document is bound to the same configuration URL
    and names ``ours``' scale set id among the ones it was created again from, the id to use now
    (else ``ours``' own) and the move's record (read even without a move, for its time)."""
    found = saved.get("binding")
    raw_ids, raw_at = saved.get("recreated_from"), saved.get("recreated_at")
    ids = tuple(i for i in raw_ids if isinstance(i, int) and not isinstance(i, bool)) if isinstance(
        raw_ids, list) else ()
    at = float(raw_at) if isinstance(raw_at, (int, float)) and not isinstance(raw_at, bool) else None
    if not isinstance(found, dict) or found.get("config_url") != ours["config_url"]:
        return ours["scale_set_id"], Moved()
    record = Moved(ids, at)
    now_id = found.get("scale_set_id")
    if ours["scale_set_id"] in ids and isinstance(now_id, int) and not isinstance(now_id, bool):
        return now_id, record
    return ours["scale_set_id"], record if found.get("scale_set_id") == ours["scale_set_id"] else Moved()


def document(ours: dict[str, Any], *, cursor: int, pending_acks: set[int], session_id: str,
             move: Moved = Moved()) -> dict[str, Any]:  # noqa: B008  (a frozen value)
    """The listener's keys of the JSON document (the cursor record is written per message)."""
    extra: dict[str, Any] = {"recreated_from": list(move.from_ids), "recreated_at": move.at} if move.from_ids else {}
    return {
        "scale_set_id": ours["scale_set_id"],
        "binding": ours,
        "cursor": cursor,
        "pending_acks": sorted(pending_acks),
        "session_id": session_id,
        "writer_pid": os.getpid(),
        **extra,
    }
