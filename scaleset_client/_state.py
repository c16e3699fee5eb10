"""The state file: what a listener remembers across processes (cursor, session id, breakers).

Two files, both mode 0600, held under an advisory lock (``<file>.lock``, next to the *real* file
when the name is a symlink) for as long as a listener runs, so two processes never share them:

- ``<file>``: one small JSON document (binding, session id, pending acks, breaker states), written
  atomically (temp file, fsync, rename) and only when its content changed.
- ``<file>.cursor``: the delivery record (last handled message id, and how far the message in
  flight got), two checksummed fixed-size slots overwritten in place with ``pwrite``: it survives
  the process being killed at any point. It is synced (``fdatasync``) when it must also survive a
  power loss: when an ack fails (the message stays on the server) and when a run ends. Unsynced
  writes never touch the slot holding the last synced record, and a torn slot fails its checksum,
  so after a power loss the last synced record is read.

This module is the storage only. Within one process a file has one owner
(``_state_owner.StateOwner``), which holds this object and is the only code that writes the
document; between processes the lock keeps them apart: a listener ``acquire``s it for its run,
and an owner without a running listener takes it (``try_acquire``) for one read-modify-write of a
few milliseconds. A listener's ``acquire`` waits up to ``ACQUIRE_PATIENCE`` seconds so another
process's brief write never makes it fail.

Neither holds a token: only ids, counters and times. Every storage fault is a ``StateFileError``
with the path and the reason; content that does not fit (bad JSON, wrong types) is a warning and
a fresh start, never a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from ._errors import StateFileError, StateFileLockedError
from ._value_class import ValueClass

try:  # POSIX advisory locks; elsewhere the file is used without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CursorRecord", "StateFile"]

log = logging.getLogger(__name__)
SCHEMA = 1
SLOT = 512  # bytes per cursor slot: one sector, so a slot write is (almost always) atomic
_FDATASYNC = getattr(os, "fdatasync", os.fsync)
ACQUIRE_PATIENCE = 1.0  # seconds a listener waits for another process's brief write before "in use"
_LOCK_PAUSE = 0.02


def _lock_path(real_path: Path) -> Path:
    return real_path.with_name(real_path.name + ".lock")


def _flock_within(fd: int, patience: float) -> bool:
    """The exclusive lock on ``fd``, trying every 20 ms for up to ``patience`` seconds: a brief
    hold (one write by another process) ends within milliseconds, a running listener's does not."""
    assert fcntl is not None
    give_up = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= give_up:
                return False
            time.sleep(_LOCK_PAUSE)


class CursorRecord(ValueClass):
    """The delivery record: ``cursor`` is the last message handled (its events all handed over);
    ``message_id`` is the message in flight (0: none), of which the first ``started`` job-started
    and ``completed`` job-completed events were handed over; ``binding`` names the configuration
    the record belongs to; ``stats_message_id`` is no longer written (0) nor read: older versions kept
    the message whose statistics were last applied, and their records still read."""

    __slots__ = ()

    cursor: int = 0
    message_id: int = 0
    started: int = 0
    completed: int = 0
    binding: str = ""
    stats_message_id: int = 0

    def encode(self, seq: int) -> bytes:
        """One slot: ``<crc32 hex> <json>`` padded with newlines to ``SLOT`` bytes."""
        body = (f'{{"bind":{json.dumps(self.binding)},"completed":{self.completed:d},"cursor":{self.cursor:d},'
                f'"msg":{self.message_id:d},"seq":{seq:d},"started":{self.started:d},'
                f'"stats":{self.stats_message_id:d}}}').encode()
        line = b"%08x %s\n" % (zlib.crc32(body), body)
        if len(line) > SLOT:
            raise StateFileError(f"cursor record too large ({len(line)} bytes)")
        return line.ljust(SLOT, b"\n")

    @staticmethod
    def decode(raw: bytes) -> tuple[int, CursorRecord] | None:
        """(seq, record) from one slot, or None when it is empty, torn or not ours."""
        line = raw.split(b"\n", 1)[0]
        crc, _, body = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
            data = json.loads(body)
            values = [data[k] for k in ("seq", "cursor", "msg", "started", "completed", "stats")]
            binding = data["bind"]
        except (ValueError, KeyError, TypeError):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            return None
        if not isinstance(binding, str):
            return None
        seq, cursor, msg, started, completed, stats = values
        return seq, CursorRecord(cursor, msg, started, completed, binding, stats)


def _without_stamps(value: Any) -> Any:
    """``value`` without its ``saved_wall`` stamps: what decides whether the content changed."""
    if isinstance(value, dict):
        return {k: _without_stamps(v) for k, v in value.items() if k != "saved_wall"}
    if isinstance(value, list):
        return [_without_stamps(v) for v in value]
    return value


class StateFile:
    """A JSON state file plus its cursor record, with an exclusive advisory lock.

    ``path`` is the name given; the lock, the atomic replace and the cursor record all use the
    real file behind it, so a symlink alias of the same file cannot take a second lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.real_path = Path(os.path.realpath(self.path))
        self.cursor_path = self.real_path.with_name(self.real_path.name + ".cursor")
        self._lock_fd: int | None = None
        self._cursor_fd: int | None = None
        self._seq = 0
        self._durable_slot = 1  # the slot holding the last synced record; the other takes the next write
        self._last_payload: bytes | None = None
        self._unsynced = False

    # -- lock --------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise ``StateFileLockedError`` naming the process that holds it."""
        if self._lock_fd is not None:
            return
        lock_path = _lock_path(self.real_path)
        try:
            self.real_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateFileError(f"cannot open the state file lock {lock_path}: {exc.strerror}") from exc
        try:
            if fcntl is not None and not _flock_within(fd, ACQUIRE_PATIENCE):
                holder = os.read(fd, 32).decode("ascii", "ignore").strip() or "unknown"
                raise StateFileLockedError(
                    f"state file {self.path} is in use by another process (pid {holder}): another run of "
                    "this listener is still active (each listener needs its own state file)") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except StateFileLockedError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise StateFileError(f"cannot lock the state file {self.path} ({lock_path}): {exc.strerror}") from exc
        self._lock_fd = fd

    def try_acquire(self, patience: float) -> bool:
        """Take the lock for one brief write, waiting at most ``patience`` seconds: False when
        another process holds it longer (a running listener) or it cannot be opened. The holder's
        pid is not recorded (the hold lasts milliseconds); ``release`` lets it go."""
        if self._lock_fd is not None:
            return True
        try:
            self.real_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(_lock_path(self.real_path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            if fcntl is None or _flock_within(fd, patience):
                self._lock_fd = fd
                return True
        except OSError:
            pass
        os.close(fd)
        return False

    @property
    def locked(self) -> bool:
        """True while this object holds the lock."""
        return self._lock_fd is not None

    def forget_after_fork(self) -> None:
        """In a forked child: close the descriptors inherited from the parent without unlocking
        (the parent still holds the lock through its own copy; closing ours does not release it)."""
        self.release()
        self._last_payload = None
        self._unsynced = False

    def release(self) -> None:
        """Drop the lock and close the cursor record (idempotent)."""
        for name in ("_cursor_fd", "_lock_fd"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- the JSON document -------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """The saved state, or {} when there is none or it cannot be used (a warning says why)."""
        try:
            raw = self.real_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateFileError(f"cannot read state file {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            log.warning("state file %s is not valid JSON; starting afresh", self.path)
            return {}
        if not isinstance(data, dict) or data.get("version") != SCHEMA:
            log.warning("state file %s has an unknown layout; starting afresh", self.path)
            return {}
        return data

    def save(self, data: dict[str, Any], *, force: bool = False) -> bool:
        """Replace the file atomically (a crash leaves the old or the new state, never half);
        skipped when ``data`` equals what this object last wrote, unless ``force``. True if written."""
        payload = json.dumps({**data, "version": SCHEMA}, separators=(",", ":"), sort_keys=True).encode()
        key = json.dumps(_without_stamps(data), sort_keys=True).encode()
        if key == self._last_payload and not force:
            return False
        # Per process and thread: two processes (or threads) writing at once never share a temp file.
        tmp = self.real_path.with_name(f".{self.real_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.real_path)
            with contextlib.suppress(OSError):
                dir_fd = os.open(self.real_path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StateFileError(f"cannot write state file {self.path}: {exc.strerror}") from exc
        self._last_payload = key
        return True

    # -- the cursor record -------------------------------------------------------------------
    def _cursor_file(self) -> int:
        if self._cursor_fd is None:
            try:
                self._cursor_fd = os.open(self.cursor_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StateFileError(f"cannot open the cursor record {self.cursor_path}: {exc.strerror}") from exc
        return self._cursor_fd

    def load_cursor(self) -> CursorRecord | None:
        """The newest intact slot of the cursor record, or None when there is none."""
        fd = self._cursor_file()
        try:
            raw = os.pread(fd, 2 * SLOT, 0)
        except OSError as exc:
            raise StateFileError(f"cannot read the cursor record {self.cursor_path}: {exc.strerror}") from exc
        best: tuple[int, int, CursorRecord] | None = None
        for slot in (0, 1):
            decoded = CursorRecord.decode(raw[slot * SLOT:(slot + 1) * SLOT])
            if decoded is not None and (best is None or decoded[0] > best[0]):
                best = (decoded[0], slot, decoded[1])
        if best is None:
            if raw.strip(b"\n\x00"):
                log.warning("cursor record %s is damaged; using the state file's cursor", self.cursor_path)
            return None
        self._seq, self._durable_slot = best[0], best[1]
        return best[2]

    def write_cursor(self, record: CursorRecord, *, durable: bool) -> None:
        """Write the record into the slot not holding the last synced one. ``durable``: synced to
        disk before returning (one ``fdatasync``); otherwise it survives the process being killed
        but maybe not a power loss, and ``sync_cursor()`` makes it durable later."""
        fd = self._cursor_file()
        self._seq += 1
        slot = 1 - self._durable_slot
        try:
            os.pwrite(fd, record.encode(self._seq), slot * SLOT)
        except OSError as exc:
            raise StateFileError(f"cannot write the cursor record {self.cursor_path}: {exc.strerror}") from exc
        self._unsynced = True
        if durable:
            self.sync_cursor()

    def sync_cursor(self) -> None:
        """Make the last written record durable (``fdatasync``); a no-op when nothing is unsynced."""
        if not self._unsynced or self._cursor_fd is None:
            return
        try:
            _FDATASYNC(self._cursor_fd)
        except OSError as exc:
            raise StateFileError(f"cannot write the cursor record {self.cursor_path}: {exc.strerror}") from exc
        self._unsynced = False
        self._durable_slot = 1 - self._durable_slot

    def __enter__(self) -> StateFile:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
