"""A client's resilience state on disk, so a cron job's next process knows what this one learned.

``Client(state_file=...)`` builds one ``ResilienceStore``. What it keeps is the ``resilience`` key
of the state file's JSON document (breakers, rate-limit gates, retry budgets: ids, counters and
times, never a secret); any other key (a listener's cursor, session id) is left as it was found.

The design, and why:

- Read once, at construction, without a lock: writers replace the file atomically, so a reader
  sees the old or the new document, never half of one. A missing file is a fresh start; content
  that is not a state document is a warning and a fresh start (the next save overwrites it); a
  document bound to another configuration URL is a warning and is never read or written.
- Written when the state changes materially (a breaker transition, a gate armed) and on
  ``close()``. The request path only sets a flag and an event; a writer thread (started on the
  first change) does the I/O, at most once per ``MIN_INTERVAL`` seconds of real time: the first
  change of a quiet spell is written at once (a process killed right after a breaker opens still
  leaves it on disk), a storm of transitions becomes one trailing write. For a script that never
  calls ``close()``, an ``atexit`` hook does it (the writer thread is a daemon and would be cut
  off mid-write at exit). No lock of the client is held while
  the file is read or written.
- Each write is a read-modify-write under the state file's own lock (``state.try_lock``), held
  for milliseconds and never waited on for long: when a listener holds it (it does for its whole
  run), this client skips the write and leaves it to the listener, whose saves carry the same
  ``resilience`` section (``section()``). Two processes on one file therefore never interleave
  a write; the last writer's view of the service wins, which is the newest observation.
- ``restore`` is the one way a saved section comes back (the client at construction, a listener
  from its own file): a section for another configuration URL, or not newer than one already
  restored, is skipped; one that does not fit is a warning, never a crash.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._errors import ConfigError, StateFileError
from ._state import StateFile, try_lock, unlock

__all__ = ["ResilienceStore"]

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0  # seconds of real time between two writes by one client
LOCK_PATIENCE = 0.1  # seconds a write waits for another process's write to finish
CLOSE_JOIN = 5.0  # seconds close() waits for a write in progress
IDLE_EXIT = 60.0  # seconds without a change after which the writer thread ends

_live: weakref.WeakSet[ResilienceStore] = weakref.WeakSet()


class ResilienceStore:
    """Saves and restores one client's resilience state in a state file (``path`` None: off).

    ``export`` and ``restore_into`` are the client's ``export_resilience_state`` and
    ``import_resilience_state``; ``config_url`` binds the saved section to its configuration.
    """

    def __init__(self, path: str | os.PathLike[str] | None, config_url: str,
                 export: Callable[[], dict[str, Any]], restore_into: Callable[[Mapping[str, Any]], None],
                 logger: logging.Logger | None = None) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"state_file must be a path (str or os.PathLike), not {type(path).__name__}")
        if path is not None and not os.fspath(path):
            raise ConfigError("state_file must not be empty")
        self.path: Path | None = Path(path) if path is not None else None
        self._config_url = config_url
        self._export = export
        self._restore_into = restore_into
        self._log = logger or log
        self._lock = threading.Lock()  # guards the flags below; never held across I/O
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._closed = False
        self._last_write = -math.inf
        self._newest_restored = -math.inf
        self._quiet = threading.local()
        self._warned: set[str] = set()
        if self.path is not None:
            _live.add(self)

    # -- what is saved -----------------------------------------------------------------------
    def section(self) -> dict[str, Any]:
        """The ``resilience`` section to save: the client's state bound to its configuration URL."""
        return {**self._export(), "config_url": self._config_url}

    def restore(self, section: object, source: str | os.PathLike[str] | None = None) -> bool:
        """Bring a saved section back into the client; True if it was used.

        Skipped: not a mapping, another configuration URL (a warning), or not newer than a
        section restored before (the same file read twice, or an older file). A section whose
        values do not fit is a warning and leaves the state as it was."""
        where = source if source is not None else self.path
        if not isinstance(section, Mapping):
            return False
        bound = section.get("config_url")
        if bound is not None and bound != self._config_url:
            self._warn_once(f"foreign-section:{where}", "state file %s: the saved resilience state belongs to %r, "
                            "not %r; ignoring it", where, bound, self._config_url)
            return False
        saved = section.get("saved_wall")
        stamp = float(saved) if isinstance(saved, (int, float)) and not isinstance(saved, bool) else -math.inf
        if stamp != -math.inf and stamp <= self._newest_restored:
            return False
        self._quiet.on = True  # what was just read need not be written back
        try:
            self._restore_into(section)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            self._log.warning("state file %s: the saved breaker states do not fit (%s: %s); starting with closed "
                              "breakers", where, type(exc).__name__, exc)
            return False
        finally:
            self._quiet.on = False
        self._newest_restored = max(self._newest_restored, stamp)
        return True

    def load(self) -> None:
        """Read the file at construction (no lock: writes are atomic replaces) and restore it."""
        if self.path is None:
            return
        try:
            document = StateFile(self.path).load()  # bad content: a warning there and {}
        except StateFileError as exc:
            self._log.warning("%s; starting without saved resilience state", exc)
            return
        why = self._foreign(document)
        if why:
            self._warn_once(f"foreign:{self.path}", "state file %s belongs to %s, not to %s; this client neither "
                            "reads nor writes it", self.path, why, self._config_url)
            return
        self.restore(document.get("resilience"))

    def _foreign(self, document: Mapping[str, Any]) -> str:
        """Why ``document`` belongs to another configuration ("" when it is ours or unbound)."""
        binding = document.get("binding")
        if isinstance(binding, Mapping) and binding.get("config_url") not in (None, self._config_url):
            return f"configuration URL {binding.get('config_url')!r}"
        section = document.get("resilience")
        if isinstance(section, Mapping) and section.get("config_url") not in (None, self._config_url):
            return f"configuration URL {section.get('config_url')!r}"
        return ""

    # -- when it is saved --------------------------------------------------------------------
    def changed(self, *_: object) -> None:
        """A material change (breaker transition, gate armed): schedule a write. Cheap: the
        caller is on the request path, so this only sets a flag and wakes the writer."""
        if self.path is None or getattr(self._quiet, "on", False):
            return
        with self._lock:
            if self._closed:
                return
            self._dirty = True
            if self._thread is None or not self._thread.is_alive():  # not started, idle-ended, or lost in a fork
                self._thread = threading.Thread(target=self._writer, name="scaleset-state-writer", daemon=True)
                self._thread.start()
            self._wake.set()  # under the lock: the writer's idle exit cannot miss it

    def _writer(self) -> None:
        while True:
            if not self._wake.wait(IDLE_EXIT):
                with self._lock:
                    if not self._wake.is_set():
                        # Quiet for a while: end, so an unclosed client is not kept alive by its
                        # writer; the next change starts a new one.
                        self._thread = None
                        return
            pause = self._last_write + MIN_INTERVAL - time.monotonic()
            if pause > 0 and self._stop.wait(pause):
                return  # close() writes the final state itself
            if self._stop.is_set():
                return
            self._wake.clear()
            self._write_if_dirty()

    def _write_if_dirty(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
        if not self._write():
            with self._lock:
                self._dirty = True  # try again on the next change or at close

    def flush(self) -> bool:
        """Write now (from the calling thread); True when the file was written."""
        with self._lock:
            self._dirty = False
        written = self._write()
        if not written:
            with self._lock:
                self._dirty = True
        return written

    def close(self) -> None:
        """Stop the writer and write the final state (idempotent; never raises)."""
        if self.path is None:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_JOIN)
        self.flush()
        _live.discard(self)


    # -- the write ---------------------------------------------------------------------------
    def _write(self) -> bool:
        """One read-modify-write of the ``resilience`` key under the file's lock; False when it was
        not written (a listener holds the file, the file is another configuration's, or an OS
        error, which is a warning: persistence must never break the client)."""
        assert self.path is not None
        fd = try_lock(self.path, LOCK_PATIENCE)
        if fd is None:
            self._log.debug("state file %s is held by a listener or another writer; leaving the write to it",
                            self.path)
            return False
        try:
            state = StateFile(self.path)
            document = state.load()
            why = self._foreign(document)
            if why:
                self._warn_once(f"foreign:{self.path}", "state file %s belongs to %s, not to %s; this client neither "
                                "reads nor writes it", self.path, why, self._config_url)
                return False
            document.pop("version", None)
            document["resilience"] = self.section()
            state.save(document, force=True)
        except StateFileError as exc:
            self._warn_once(f"write:{exc}", "%s; the resilience state was not saved", exc)
            return False
        finally:
            unlock(fd)
        self._last_write = time.monotonic()
        return True

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self._log.warning(message, *args)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been copied held) and no writer."""
        self._lock = threading.Lock()
        self._thread = None

    def __repr__(self) -> str:
        return f"ResilienceStore({str(self.path) if self.path else None!r})"


@atexit.register
def _flush_at_exit() -> None:
    for store in list(_live):
        try:
            store.close()  # a script that never closed its client: wait for the writer, save the end state
        except Exception:  # exiting: never turn a clean exit into a traceback
            log.debug("saving the resilience state at exit failed", exc_info=True)


def _after_fork_in_child() -> None:
    """A forked child (cron wrappers, multiprocessing) has no writer thread and may have copied a
    held lock: give each store a fresh lock; the next change starts a writer of its own."""
    for store in list(_live):
        store.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
