"""A client's resilience section of a state file, so a cron job's next process knows what this one learned.

Each ``Client`` has one ``ResilienceSection`` (``section_of``): the ``resilience`` key of a state
file's JSON document (breakers, rate-limit gates, retry budgets: ids, counters and times, never a
secret), bound to the client's configuration URL. The section does no I/O of its own: it is
handed to the file's owner (``_state_owner``), the one writer of that file in this process, which
pulls ``snapshot()`` when it writes and hands saved documents back through ``restore``.

- ``Client(state_file=...)`` adds the section to its file's owner (``open``); the client's
  breakers and gate report material changes (``changed``: a flag and a wake-up, on the request
  path) and ``close()`` has the owner write the final state.
- A ``Listener`` adds its client's section to the owner of its own state file for its run
  (``join``/``leave``), so that file carries the same state; when it is the client's file too,
  the section is already there and is not restored a second time.
- A document bound to another configuration URL (its listener binding or its section) is a
  warning; this client neither reads it nor writes into it (``refuses``).
- Newest wins between two files: a listener's file and its client's file may both carry this
  client's state, saved at different times, and a section older than one already restored is
  not applied over it. This is not deduplication (the owner never hands one read twice); it is
  which of two sources is the more recent view of the service.

The client is referred to weakly (its bound methods through ``WeakMethod``, the lookup through a
``WeakKeyDictionary``), so an owner holding a section never keeps an unclosed client alive.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigError, StateFileError

if TYPE_CHECKING:  # loaded by the first state file (open, or a listener's join): a run without one skips it
    from ._state_owner import StateOwner

__all__ = ["ResilienceSection", "section_of"]

log = logging.getLogger(__name__)


class _Config(Protocol):
    @property
    def config_url(self) -> str: ...


class _ClientLike(Protocol):
    @property
    def config(self) -> _Config: ...

    def export_resilience_state(self) -> dict[str, Any]: ...

    def import_resilience_state(self, state: Mapping[str, Any]) -> None: ...


class ResilienceSection:
    """One client's ``resilience`` section: what to write, and how a saved one comes back.

    ``export`` and ``restore_into`` are the client's ``export_resilience_state`` and
    ``import_resilience_state``; ``config_url`` binds the saved section to its configuration.
    """

    def __init__(self, config_url: str, export: Callable[[], dict[str, Any]],
                 restore_into: Callable[[Mapping[str, Any]], None], logger: logging.Logger | None = None) -> None:
        self._config_url = config_url
        self._export = weakref.WeakMethod(export)
        self._restore_into = weakref.WeakMethod(restore_into)
        self._log = logger or log
        self._lock = threading.Lock()  # guards the owners and the flags; never held across I/O
        self._owners: list[StateOwner] = []
        self._own: StateOwner | None = None  # the owner of the client's own state file
        self._closed = False
        self._newest_restored = -math.inf
        self._quiet = threading.local()
        self._warned: set[str] = set()
        self._keep: Callable[[], dict[str, Any]] | None = None  # the client, while a change waits to be written

    # -- the client's own file ---------------------------------------------------------------
    def open(self, path: str | os.PathLike[str]) -> None:
        """Use the state file ``path`` (``Client(state_file=...)``): read it now, write it on changes."""
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"state_file must be a path (str or os.PathLike), not {type(path).__name__}")
        if not os.fspath(path):
            raise ConfigError("state_file must not be empty")
        from ._state_owner import claim

        owner = claim(path)
        with self._lock:
            self._own = owner
            self._owners.append(owner)
        owner.add(self)

    def close(self) -> None:
        """The client closes: the owner writes the final state and forgets this section
        (idempotent; never raises)."""
        with self._lock:
            self._closed = True
            own, self._own = self._own, None
            self._owners = [o for o in self._owners if o is not own]
        if own is not None:
            own.remove(self)

    # -- a listener's file -------------------------------------------------------------------
    def join(self, owner: StateOwner) -> None:
        """A listener of this client holds ``owner``'s file for its run: its writes carry this
        section (restored from that file unless it is the client's own)."""
        with self._lock:
            if owner not in self._owners:
                self._owners.append(owner)
        owner.add(self, run=True)

    def leave(self, owner: StateOwner) -> None:
        """The listener's run on ``owner``'s file ends (before ``owner.release()``)."""
        with self._lock:
            if owner in self._owners and owner is not self._own:
                self._owners.remove(owner)

    # -- what the owner asks -----------------------------------------------------------------
    def changed(self, *_: object) -> None:
        """A material change (breaker transition, gate armed): the owners schedule a write. The
        client is held (``_keep``) until the change is written: one dropped unclosed right after
        a breaker opened still leaves it on disk, as the writer thread would have kept it."""
        if getattr(self._quiet, "on", False):
            return
        with self._lock:
            owners = [] if self._closed else list(self._owners)
            self._keep = self._export() if owners else None
        for owner in owners:
            owner.changed()

    def snapshot(self) -> dict[str, Any] | None:
        """The section to save: the client's state bound to its configuration URL (None once
        the client is gone)."""
        export = self._export()
        if export is None:
            return None
        self._keep = None  # written (or about to be): the client may go
        return {**export(), "config_url": self._config_url}

    def restore(self, document: Mapping[str, Any], source: Path) -> None:
        """Bring the section saved in ``document`` back into the client.

        Skipped: a document of another configuration (a warning), no section, or a section not
        newer than one restored before from another file. Values that do not fit are a warning
        and leave the state as it was."""
        why = self.refuses(document)
        if why:
            # One warning per file (the key is the owner's write refusal's too): for the client's
            # own file it will not be written either; a listener's file is the listener's.
            own = self._own is not None and self._own.path == source
            self.not_saved(f"foreign:{source}", "state file %s belongs to %s; this client neither reads nor "
                           "writes it" if own else "state file %s belongs to %s; ignoring its resilience state",
                           source, why)
            return
        section = document.get("resilience")
        restore_into = self._restore_into()
        if not isinstance(section, Mapping) or restore_into is None:
            return
        saved = section.get("saved_wall")
        stamp = float(saved) if isinstance(saved, (int, float)) and not isinstance(saved, bool) else -math.inf
        if stamp != -math.inf and stamp <= self._newest_restored:
            return
        self._quiet.on = True  # what was just read need not be written back
        try:
            restore_into(section)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            self._log.warning("state file %s: the saved breaker states do not fit (%s: %s); starting with closed "
                              "breakers", source, type(exc).__name__, exc)
            return
        finally:
            self._quiet.on = False
        self._newest_restored = max(self._newest_restored, stamp)

    def unreadable(self, error: StateFileError) -> None:
        self._log.warning("%s; starting without saved resilience state", error)

    def refuses(self, document: Mapping[str, Any]) -> str:
        """Why ``document`` belongs to another configuration ("" when it is ours or unbound)."""
        for found in (document.get("binding"), document.get("resilience")):
            if isinstance(found, Mapping) and found.get("config_url") not in (None, self._config_url):
                return f"configuration URL {found.get('config_url')!r}, not to {self._config_url}"
        return ""

    def not_saved(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self._log.warning(message, *args)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been copied held)."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResilienceSection({self._config_url!r})"


_sections: weakref.WeakKeyDictionary[Any, ResilienceSection] = weakref.WeakKeyDictionary()
_sections_lock = threading.Lock()


def section_of(client: _ClientLike, logger: logging.Logger | None = None) -> ResilienceSection:
    """The resilience section of ``client`` (made on first use: the client's own constructor)."""
    with _sections_lock:
        section = _sections.get(client)
        if section is None:
            section = _sections[client] = ResilienceSection(
                client.config.config_url, client.export_resilience_state, client.import_resilience_state, logger)
        return section


def _after_fork_in_child() -> None:
    global _sections_lock
    _sections_lock = threading.Lock()
    for section in list(_sections.values()):
        section.reset_after_fork()


# POSIX only (os.register_at_fork); elsewhere there is no fork to survive.
getattr(os, "register_at_fork", lambda **_: None)(after_in_child=_after_fork_in_child)
