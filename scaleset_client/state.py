"""The state file: what a listener remembers across processes (cursor, session id, breakers).

One small JSON document, written atomically (temp file, fsync, rename) with mode 0600, and held
under an advisory lock for as long as a listener runs, so two processes never share it. It
never holds a token: only ids, counters and times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import StateFileError, StateFileLockedError

try:  # POSIX advisory locks; elsewhere the file is used without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StateFile"]

log = logging.getLogger(__name__)
SCHEMA = 1


class StateFile:
    """A JSON state file with an exclusive advisory lock (``path`` + ``.lock``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.writes = 0

    def acquire(self) -> None:
        """Take the lock or raise ``StateFileLockedError`` naming the process that holds it."""
        if self._lock_fd is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateFileError(f"cannot open the state file lock {lock_path}: {exc.strerror}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode("ascii", "ignore").strip() or "unknown"
                os.close(fd)
                raise StateFileLockedError(
                    f"state file {self.path} is in use by another process (pid {holder}): another run of "
                    "this listener is still active (each listener needs its own state file)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def load(self) -> dict[str, Any]:
        """The saved state, or {} when there is none or it cannot be read (a warning says why)."""
        try:
            raw = self.path.read_bytes()
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

    def save(self, data: dict[str, Any]) -> None:
        """Replace the file atomically: a crash leaves the old or the new state, never half."""
        payload = json.dumps({**data, "version": SCHEMA}, separators=(",", ":"), sort_keys=True).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            with contextlib.suppress(OSError):
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StateFileError(f"cannot write state file {self.path}: {exc.strerror}") from exc
        self.writes += 1

    def __enter__(self) -> StateFile:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
