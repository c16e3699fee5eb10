"""One owner per state file and process: the only code that writes the JSON document.

Why: a state file carries two kinds of state, a client's ``resilience`` section (breakers,
rate-limit gates, retry budgets) and a running listener's keys (binding, cursor, session id,
pending acks). When each wrote the file itself, one process had two writers racing for the
file's lock, and the loser had to guess whether to wait, skip or write again. Here every
``Client(state_file=...)`` and every ``Listener`` on the same real file (``claim`` keys owners
by the resolved path, so a symlink alias is the same file) share one ``StateOwner``:

- Sections are handed to it, not written by their holders. A client's resilience section is a
  registered provider (``add``/``remove``), pulled at each write; a listener hands its own keys
  with ``save``, which writes at once from the listener's thread. One I/O mutex per owner
  serialises every read and write of the file in this process, so nothing in one process ever
  contends for the file's lock, waits for it, or skips a write because of it.
- One writer thread per owner, started on a client's change (``changed``), writes the first
  change of a quiet spell at once and then at most once per ``MIN_INTERVAL`` seconds (a storm
  of breaker transitions becomes one trailing write); it ends after ``IDLE_EXIT`` quiet seconds
  and the next change starts another. ``remove`` (a client's ``close()``) writes the final
  state; an ``atexit`` hook does it for a script that never closes its client (the writer is a
  daemon and would be cut off mid-write at exit).
- Processes stay apart by the advisory lock (``_state.StateFile``). A listener ``acquire``s it
  for its run (``StateFileLockedError`` when another process holds it); while held, the owner
  writes under it the document it holds (the one read at ``acquire``, with the listener's keys),
  skipping a write that would not change the content (not the run's first). Without a listener the owner does one
  read-modify-write under the lock taken for milliseconds (``LOCK_PATIENCE``), so another
  process's keys are kept and nothing interleaves; when that process is a running listener,
  the write is left to it, as its file is its own. Every write is an atomic replace.
- A section is handed the saved document once: when it is added (read then) or when a listener's
  ``acquire`` finds the file changed on disk since this owner last read or wrote it (another
  process wrote it). So nothing is restored twice from one read, and no stamp is needed to tell.
- Which client's resilience state a file holds: the running listener's client (``run=True``)
  while a listener holds it, else the client added last (two clients of one process on one file:
  the newer one's view, written at each change and close); a client dropped without ``close()``
  is kept alive by its section until its last change is written, then passed over.
- A forked child (cron wrappers, multiprocessing) starts without writer threads and with fresh
  locks, and forgets a listener run of the parent: the parent's thread is not in the child.

A document bound to another configuration is left alone by a client (``Section.refuses``); a
listener that finds one starts afresh (``reset``) and its first save replaces it.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ._errors import StateFileError, StateFileLockedError
from ._state import StateFile

__all__ = ["Section", "StateOwner", "claim", "owner_for"]

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0  # seconds of real time between two writes by the writer thread
LOCK_PATIENCE = 0.1  # seconds a write without a listener waits for another process's write
CLOSE_JOIN = 5.0  # seconds a final write waits for the writer's write in progress
IDLE_EXIT = 60.0  # seconds without a change after which the writer thread ends
SECTION_KEY = "resilience"  # the document key a provider's section is written under


class Section(Protocol):
    """What the owner needs of a client's resilience section (``_resilience_store``)."""

    def snapshot(self) -> dict[str, Any] | None:
        """The section to write now (None: nothing to write, the client is gone)."""

    def restore(self, document: Mapping[str, Any], source: Path) -> None:
        """Take the saved document's section back (warnings for what does not fit)."""

    def unreadable(self, error: StateFileError) -> None:
        """The file could not be read when the section was added."""

    def refuses(self, document: Mapping[str, Any]) -> str:
        """Why the section must not be written into ``document`` ("" when it may)."""

    def not_saved(self, key: str, message: str, *args: object) -> None:
        """Warn (once per key) that a write did not happen."""


class StateOwner:
    """The document, the lock and the one writer of one state file in this process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.state = StateFile(path)
        self.path = self.state.path
        self._io = threading.Lock()  # every read and write of the file in this process; held across I/O
        self._lock = threading.Lock()  # the flags below; never held across I/O
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._last_write = -math.inf
        self._sections: list[Section] = []  # clients' sections, oldest first
        self._run_section: Section | None = None  # the running listener's client's
        self._held = False  # a listener of this process holds the lock for its run
        self._document: dict[str, Any] = {}  # while held: what is written (without "version")
        # The file as last read or written here (inode, mtime, size; None: no file), to tell at a
        # run's start whether another process wrote it since: its writes are atomic replaces, so
        # they always bring a new inode. Nothing is re-encoded to compare contents.
        self._looked = False
        self._seen: tuple[int, int, int] | None = None
        self.claims = 0  # clients with this file open and listeners running on it (``claim``)
        self._written = False  # this run wrote the file (its first write is never skipped as unchanged)

    # -- sections ----------------------------------------------------------------------------
    def add(self, section: Section, *, run: bool = False) -> None:
        """Register a client's section and hand it the saved document (only the first time it
        is added: a client's section added again for its listener's run is not restored twice).
        ``run``: the running listener's client, whose section the file holds until ``release``."""
        with self._lock:
            self._stop.clear()  # a writer stopped by the last client's close serves this one
        with self._io:
            known = section in self._sections or section is self._run_section
            if run:
                self._run_section = section
            if known:
                return
            if not run:
                self._sections.append(section)
            try:
                document = self._read()
            except StateFileError as exc:
                section.unreadable(exc)
                return
            section.restore(document, self.path)

    def remove(self, section: Section) -> None:
        """A client closes: write the final state, then forget its section (and this owner, when
        nothing is left of it)."""
        if self._sections == [section] and self._run_section is None and not self._held:
            self._stop_writer()  # the last one: its writer's write in progress ends first
        self.flush()
        with self._io:
            self._sections = [s for s in self._sections if s is not section]
        _unclaim(self)

    def _candidates(self) -> list[Section]:
        """Whose section the file holds, first choice first: the running listener's client, then
        the clients from the newest (a client dropped unclosed gives nothing and is passed over)."""
        run = [self._run_section] if self._run_section is not None else []
        return run + self._sections[::-1]

    def _snapshot(self) -> dict[str, Any] | None:
        for section in self._candidates():
            value = section.snapshot()
            if value is not None:
                return value
        return None

    # -- a listener's run --------------------------------------------------------------------
    def acquire(self) -> dict[str, Any]:
        """Take the file's lock for a listener's run and return the saved document (a copy).

        Raises ``StateFileLockedError`` when another process, or another listener of this one,
        holds it. A document another process wrote since this owner last read it is handed to
        the registered sections too: it is newer than what they restored."""
        try:
            return self._acquire()
        except BaseException:
            _unclaim(self)  # the run that claimed it does not start
            raise

    def _acquire(self) -> dict[str, Any]:
        with self._io:
            if self._held:
                raise StateFileLockedError(
                    f"state file {self.path} is in use by another listener of this process (pid {os.getpid()}): "
                    "each listener needs its own state file")
            self.state.acquire()
            try:
                identity = self._identity()  # before the read: a replace in between is seen next time
                fresh = self.state.load()
            except StateFileError:
                self.state.release()
                raise
            if self._looked and identity != self._seen:
                for section in self._sections:
                    section.restore(fresh, self.path)
            self._held, self._written = True, False
            self._looked, self._seen = True, identity
            self._document = {k: v for k, v in fresh.items() if k != "version"}
            return dict(self._document)

    def reset(self) -> None:
        """The listener found another configuration's document: start from an empty one (the
        listener's first save replaces the file)."""
        with self._io:
            self._document = {}

    def save(self, values: Mapping[str, Any]) -> bool:
        """The listener's document: every key but the client's ``resilience`` section is the
        listener's, so ``values`` replaces them all (one left out is removed); written now, with
        the resilience section of the moment; skipped when the content did not change. True if
        written. Raises ``StateFileError``."""
        with self._io:
            assert self._held, "save() is for the listener holding the file"
            kept = self._document.get(SECTION_KEY)
            self._document = dict(values)
            if kept is not None:
                self._document[SECTION_KEY] = kept
            return self._write_locked()

    def release(self) -> None:
        """The listener's run ended (after its last ``save``): let go of the lock and of its
        client's section (kept when the client registered it itself)."""
        with self._io:
            self._held = False
            self._run_section = None
            self._document = {}
            self.state.release()
        _unclaim(self)

    # -- writing -----------------------------------------------------------------------------
    def changed(self) -> None:
        """A client's material change: schedule a write. Cheap (the caller is on the request
        path): sets a flag and wakes the writer, starting it if there is none."""
        with self._lock:
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
                return  # the final write is the closer's
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                if not self._dirty:
                    continue
                self._dirty = False
            if not self.flush(clear=False):
                with self._lock:
                    self._dirty = True  # try again on the next change or at close

    def flush(self, *, clear: bool = True) -> bool:
        """Write now, from the calling thread; True when the file was written. Never raises: a
        fault is a warning (persistence must never break a client)."""
        if clear:
            with self._lock:
                self._dirty = False
        with self._io:
            try:
                written = self._write_locked() if self._held else self._write_brief()
            except StateFileError as exc:
                for section in self._candidates()[:1]:  # the client whose state was not saved
                    section.not_saved(f"write:{exc}", "%s; the resilience state was not saved", exc)
                written = False
        if written:
            self._last_write = time.monotonic()
        elif clear:
            with self._lock:
                self._dirty = True
        return written

    def _write_locked(self) -> bool:
        """Under ``_io`` with the run lock held: the held document with the section of the moment."""
        value = self._snapshot()
        if value is not None:  # None: the listener's client has not joined yet (or is gone)
            self._document[SECTION_KEY] = value
        written = self.state.save(self._document, force=not self._written)
        self._written = True
        self._looked = True
        if written:  # a save skipped as unchanged left the file, and so its identity, as it was
            self._seen = self._identity()
        return written

    def _write_brief(self) -> bool:
        """Under ``_io``, no listener here: one read-modify-write of the section under the file's
        lock held for milliseconds; False when another process holds it (its listener writes the
        file) or the document belongs to another configuration."""
        candidates = self._candidates()
        if not candidates:
            return False
        if not self.state.try_acquire(LOCK_PATIENCE):
            log.debug("state file %s is held by another process; leaving the write to it", self.path)
            return False
        try:
            document = self.state.load()
            # The section written is the one checked against the document: the first candidate
            # still there (one dropped unclosed gives nothing and is passed over).
            found = next(((s, v) for s in candidates if (v := s.snapshot()) is not None), None)
            if found is None:
                return False
            section, value = found
            why = section.refuses(document)
            if why:
                section.not_saved(f"foreign:{self.path}", "state file %s belongs to %s; this client neither "
                                  "reads nor writes it", self.path, why)
                return False
            document.pop("version", None)
            document[SECTION_KEY] = value
            self.state.save(document, force=True)
            self._looked, self._seen = True, self._identity()
            return True
        finally:
            self.state.release()

    def _read(self) -> dict[str, Any]:
        """Under ``_io``: the saved document (the held one while a listener runs)."""
        if self._held:
            return dict(self._document)
        identity = self._identity()  # before the read: a replace in between is seen next time
        document = self.state.load()
        self._looked, self._seen = True, identity
        return document

    def _identity(self) -> tuple[int, int, int] | None:
        """The file as it is on disk now (inode, mtime, size); None when there is none."""
        try:
            found = os.stat(self.state.real_path)
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    # -- process events ----------------------------------------------------------------------
    def shutdown(self) -> None:
        """At exit: stop the writer and write the final state (a script that never closed)."""
        self._stop_writer()
        self.flush()

    def _stop_writer(self) -> None:
        """End the writer thread, waiting (``CLOSE_JOIN`` at most) for a write in progress."""
        with self._lock:
            thread = self._thread
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_JOIN)

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and events, no writer, and no listener run (the
        parent's listener thread is not here; its lock stays the parent's)."""
        self._io = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self.state.forget_after_fork()  # a brief write's lock too, if one was under way
        if self._held:
            self._held = False
            self._run_section = None
            self._document = {}
            self._looked, self._seen = False, None

    def __repr__(self) -> str:
        return f"StateOwner({str(self.path)!r}, held={self._held})"



_owners: dict[str, StateOwner] = {}
_owners_lock = threading.Lock()


def claim(path: str | os.PathLike[str]) -> StateOwner:
    """This process's owner of the file ``path`` names (keyed by real path), made on first use and
    kept until every claim ended: a client's ``remove`` (its ``close``), a listener's ``release``
    (or its failed ``acquire``). Counted under the registry's lock, so a closing client never
    drops an owner another is taking."""
    with _owners_lock:
        owner = _lookup(path)
        owner.claims += 1
        return owner


def owner_for(path: str | os.PathLike[str]) -> StateOwner:
    """The owner of ``path`` without claiming it (a look at the one in use; made if there is none)."""
    with _owners_lock:
        return _lookup(path)


def _lookup(path: str | os.PathLike[str]) -> StateOwner:
    real = os.path.realpath(path)
    owner = _owners.get(real)
    if owner is None:
        owner = _owners[real] = StateOwner(path)
    return owner


def _unclaim(owner: StateOwner) -> None:
    with _owners_lock:
        owner.claims -= 1
        real = os.fspath(owner.state.real_path)
        if owner.claims <= 0 and _owners.get(real) is owner:
            del _owners[real]


@atexit.register
def _flush_at_exit() -> None:
    with _owners_lock:
        owners = list(_owners.values())
    for owner in owners:
        try:
            owner.shutdown()
        except Exception:  # exiting: never turn a clean exit into a traceback
            log.debug("saving the state file %s at exit failed", owner.path, exc_info=True)


def _after_fork_in_child() -> None:
    global _owners_lock
    _owners_lock = threading.Lock()
    for owner in list(_owners.values()):
        owner.reset_after_fork()


# POSIX only (os.register_at_fork); elsewhere there is no fork to survive.
getattr(os, "register_at_fork", lambda **_: None)(after_in_child=_after_fork_in_child)
