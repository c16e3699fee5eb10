"""``ListenerMemory``: what a listener keeps in its state file, and how it gets there.

A listener with ``ListenerConfig.state_file`` remembers, across a killed process: the last
handled message (the cursor), the messages handled but not yet acknowledged, how far the message
in flight got, its session and any re-creation of its scale set. The cursor record is written
per message, before the ack, without an fsync (it survives a killed process; it is synced when an
ack fails and when a run ends); the rest is a document handed to the file's one owner in this
process (``_state_owner``), which writes it only when its content changed. The layout and what a
restore accepts live in ``_listener_state``; this class holds the run's owner, its cursor record
and what was last saved, so the loop in ``__init__.py`` says *when* to remember, never *how*.
With no state file every method here is a no-op.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._client import Client
from .._listener_config import ListenerConfig
from .._listener_state import Restored, binding, binding_key, document, moved, restore
from .._resilience_store import section_of
from .healing import Healer
from .sessions import SessionKeeper

# The state file and its owner (``_state``, ``_state_owner``, with ``fcntl``) load with the first
# state file: a run that keeps none does not import them (issue 28).
if TYPE_CHECKING:
    from .._state_owner import StateOwner

__all__ = ["ListenerMemory"]

log = logging.getLogger(__name__)


class ListenerMemory:
    """The listener's state file for one run at a time: ``acquire`` at the start, ``release`` at
    the end. ``saved_pending`` and ``saved_session`` are what the file says now."""

    def __init__(self, client: Client, config: ListenerConfig, keeper: SessionKeeper, healer: Healer) -> None:
        self._client = client
        self._config = config
        self._keeper = keeper
        self._healer = healer
        self._owner: StateOwner | None = None  # the state file's one writer in this process
        self._saved: dict[str, Any] = {}  # the document the owner read when this run took the file
        self.saved_pending: frozenset[int] = frozenset()
        self.saved_session = ""  # the session id the state file names
        self._binding_digest = binding_key(client.config.config_url, config.scale_set_id)

    @property
    def active(self) -> bool:
        """A state file is held for this run."""
        return self._owner is not None

    def acquire(self) -> None:
        """Take the configured state file for this run (``StateFileLockedError`` when another
        process holds it)."""
        if self._config.state_file is not None:
            from .._state_owner import claim

            owner = claim(self._config.state_file)
            self._saved = owner.acquire()
            self._owner = owner

    def release(self) -> None:
        """Give the state file back at the end of a run."""
        owner = self._owner
        if owner is not None:
            # The client's section leaves first: a change landing between the two must not start
            # a writer on an owner the release may already have dropped from the registry.
            section_of(self._client).leave(owner)
            owner.release()
            self._owner = None

    def binding(self) -> dict[str, Any]:
        """What the state file is bound to: the configuration URL and the scale set served now."""
        return binding(self._client.config.config_url, self._keeper.scale_set_id, self._config.scale_set_name)

    def rebind(self, scale_set_id: int) -> None:
        """Serve ``scale_set_id`` from now on: the session, the state file's binding and cursor."""
        self._keeper.scale_set_id = scale_set_id
        self._binding_digest = binding_key(self._client.config.config_url, scale_set_id)

    def load(self, cursor: int) -> Restored | None:
        """Restore the cursor, pending acks, progress within a message and breaker states
        (``_listener_state.restore``); None with no state file.

        Resilience state and the client's ``state_file``: with no ``ListenerConfig.state_file``
        the client's file (if any) is the only one, written by the client. Otherwise the
        client's resilience section joins the state file's owner for the run
        (``_state_owner``), which writes it with this listener's keys: when both name the same
        file it is one file and one owner, the section already restored from it; when they
        differ, both files get the same section, and each restore keeps whichever was saved last."""
        owner = self._owner
        if owner is None:
            return None
        follow, self._healer.move = moved(self._saved, self.binding())
        if follow != self._keeper.scale_set_id:
            log.warning("scale set %d was created again as %d by an earlier run (state file %s); serving %d",
                        self._keeper.scale_set_id, follow, owner.path, follow)
            self.rebind(follow)
        restored = restore(owner.state, self._saved, self.binding(), self._binding_digest, cursor=cursor)
        if restored.foreign:
            owner.reset()  # another configuration's document: nothing of it is kept
        section_of(self._client).join(owner)  # restored from this file unless it is the client's own
        return restored

    def save(self, *, cursor: int, pending_acks: set[int], session_id: str) -> None:
        """Hand this listener's keys to the file's owner, which writes the document now if its
        content changed, with the client's resilience section (the cursor record is written per
        message)."""
        if self._owner is None:
            return
        self._owner.save(document(self.binding(), cursor=cursor, pending_acks=pending_acks,
                                  session_id=session_id, move=self._healer.move))
        self.saved_pending, self.saved_session = frozenset(pending_acks), session_id

    def write_cursor(self, cursor: int, in_flight: int = 0, started: int = 0, completed: int = 0, *,
                     durable: bool = False) -> None:
        """Write the cursor record: the last handled message, and how far the one in flight got."""
        if self._owner is not None:
            from .._state import CursorRecord

            self._owner.state.write_cursor(CursorRecord(cursor, in_flight, started, completed, self._binding_digest, 0),
                                     durable=durable)

    def sync_cursor(self) -> None:
        """Make the cursor record survive a power loss."""
        if self._owner is not None:
            self._owner.state.sync_cursor()
