"""The state file's lock, seen from outside: another holder (a second open file description, as
another process would have), the lock file on disk, and what acquire/try_acquire give back.

Waits are real (the lock's patience is wall time), but each test waits on a condition: the holder
lets go when told, and the patience is long enough (seconds) that a slow machine cannot flip it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client import _state as state_module
from scaleset_client._state import StateFile


@contextmanager
def held(path: Path) -> Iterator[int]:
    """Hold ``path``'s lock through an fd of our own, as another process would."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242", 0)
    try:
        yield fd
    finally:
        os.close(fd)


def try_lock(path: Path, patience: float = 0.1) -> StateFile | None:
    """A brief hold, as the file's owner takes it for one write when no listener runs here."""
    state = StateFile(path)
    return state if state.try_acquire(patience) else None


def test_a_brief_hold_creates_the_directory_and_a_private_lock_file_and_excludes_a_second_taker(
        tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.json"
    first = try_lock(path)
    assert first is not None and first.locked
    lock = path.with_name("state.json.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert try_lock(path, patience=0.05) is None  # held: refused within its patience
    with pytest.raises(sc.StateFileLockedError):
        StateFile(path).acquire()  # a listener is refused too (after its patience)
    first.release()
    assert not first.locked
    again = try_lock(path, patience=0.05)
    assert again is not None  # release let it go
    assert again.try_acquire(0.0)  # already held by this object: nothing to wait for
    again.release()


def test_a_brief_hold_gives_up_on_a_holder_and_waits_for_one_that_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with held(path):
        assert try_lock(path, patience=0.1) is None
    ready = threading.Event()

    def holder() -> None:
        with held(path):
            ready.set()
            threading.Event().wait(0.2)  # a brief hold, as another process's one write

    thread = threading.Thread(target=holder)
    thread.start()
    ready.wait(10)
    state = try_lock(path, patience=10.0)  # finds it held, waits, gets it
    thread.join()
    assert state is not None
    state.release()


def test_a_brief_hold_on_a_path_that_cannot_hold_a_lock_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert try_lock(blocker / "state.json") is None  # its directory is a file


def test_acquire_names_the_holder_and_a_holder_that_lets_go_in_time_is_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    with held(path):
        with pytest.raises(sc.StateFileLockedError) as info:
            StateFile(path).acquire()
        assert "(pid 4242)" in str(info.value)
    monkeypatch.setattr(state_module, "ACQUIRE_PATIENCE", 10.0)  # so a slow machine cannot flip the outcome
    ready = threading.Event()

    def holder() -> None:
        with held(path):
            ready.set()
            threading.Event().wait(0.2)  # a client's brief write

    thread = threading.Thread(target=holder)
    thread.start()
    ready.wait(10)
    state = StateFile(path)
    state.acquire()  # finds it held, waits, gets it
    thread.join()
    lock = path.with_name("state.json.lock")
    assert lock.read_text() == str(os.getpid())  # the holder's pid is ours now
    assert try_lock(path, patience=0.05) is None
    state.release()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts this process's open files")
def test_a_refused_brief_hold_leaves_no_file_open(tmp_path: Path) -> None:
    """The owner retries the brief hold on every write: a refusal must not leak a descriptor each time."""
    path = tmp_path / "state.json"
    with held(path):
        try_lock(path, patience=0.0)  # the lock file exists now
        before = len(list(Path("/proc/self/fd").iterdir()))
        for _ in range(5):
            assert try_lock(path, patience=0.0) is None
        assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_the_lock_file_names_the_holder_and_only_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "s.json.lock"
    lock.write_text("4194304999999")  # a longer pid left by an earlier run
    with StateFile(tmp_path / "s.json"):
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(sc.StateFileLockedError) as info:
            StateFile(tmp_path / "s.json").acquire()
    message = str(info.value)
    assert message == (f"state file {tmp_path / 's.json'} is in use by another process (pid {os.getpid()}): "
                       "another run of this listener is still active (each listener needs its own state file)")


def test_a_holder_that_wrote_no_pid_is_named_unknown(tmp_path: Path) -> None:
    lock = tmp_path / "s.json.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, but nothing written yet
        with pytest.raises(sc.StateFileLockedError, match=r"\(pid unknown\)"):
            StateFile(tmp_path / "s.json").acquire()
    finally:
        os.close(fd)
    with StateFile(tmp_path / "s.json"):  # released: the next one takes it
        pass


def test_a_lock_that_cannot_be_written_is_a_state_file_error_naming_both_paths(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "s.json.lock")  # opens and locks, but cannot be truncated
    with pytest.raises(sc.StateFileError) as info:
        StateFile(tmp_path / "s.json").acquire()
    assert not isinstance(info.value, sc.StateFileLockedError)
    assert str(info.value).startswith(f"cannot lock the state file {tmp_path / 's.json'} "
                                      f"({tmp_path / 's.json.lock'}): ")


def test_a_lock_path_that_cannot_be_opened_is_a_state_file_error(tmp_path: Path) -> None:
    (tmp_path / "s.json.lock").mkdir()
    with pytest.raises(sc.StateFileError, match="cannot open the state file lock"):
        StateFile(tmp_path / "s.json").acquire()


def test_a_lock_that_cannot_be_opened_names_the_lock_and_why(tmp_path: Path) -> None:
    (tmp_path / "s.json.lock").mkdir()
    with pytest.raises(sc.StateFileError) as info:
        StateFile(tmp_path / "s.json").acquire()
    assert str(info.value) == f"cannot open the state file lock {tmp_path / 's.json.lock'}: {os.strerror(errno.EISDIR)}"


def test_a_holder_named_with_stray_bytes_is_still_named(tmp_path: Path) -> None:
    import fcntl
    lock = tmp_path / "s.json.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\xff4242\xfe\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(sc.StateFileLockedError, match=r"\(pid 4242\)"):
            StateFile(tmp_path / "s.json").acquire()
    finally:
        os.close(fd)


def test_a_state_file_released_and_taken_again_is_locked_again(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "s.json")
    state.acquire()
    state.release()
    other = StateFile(tmp_path / "s.json")
    other.acquire()  # free while released
    other.release()
    state.acquire()
    try:
        with pytest.raises(sc.StateFileLockedError):
            StateFile(tmp_path / "s.json").acquire()
    finally:
        state.release()
    state.release()  # idempotent


def test_the_lock_belongs_to_the_real_file_not_to_a_name(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    alias = tmp_path / "alias.json"
    alias.symlink_to(real)
    with StateFile(real), pytest.raises(sc.StateFileLockedError):
        StateFile(alias).acquire()
    with StateFile(alias) as held:  # and the alias writes through to the real file
        held.save({"cursor": 3})
    assert alias.is_symlink() and json.loads(real.read_text())["cursor"] == 3
