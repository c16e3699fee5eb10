"""State-file promises the mutation run showed no test pinned, seen on disk: the cursor record's
layout (two 512-byte slots, readable by the next version), which slot an unsynced write may touch,
directories made on demand, and the exact words of the errors an operator reads."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import CursorRecord, StateFile

_SLOT = 512  # the on-disk slot size: a file written by one version must be read by the next


def _slots(path: Path) -> list[tuple[int, CursorRecord] | None]:
    raw = path.read_bytes()
    return [CursorRecord.decode(raw[i * _SLOT:(i + 1) * _SLOT]) for i in (0, 1)]


def test_the_cursor_record_is_two_512_byte_slots(tmp_path: Path) -> None:
    with StateFile(tmp_path / "s.json") as state:
        state.write_cursor(CursorRecord(7), durable=True)
        state.write_cursor(CursorRecord(8), durable=True)
    raw = (tmp_path / "s.json.cursor").read_bytes()
    assert len(raw) == 2 * _SLOT
    assert [(s[0], s[1].cursor) for s in _slots(tmp_path / "s.json.cursor") if s] == [(1, 7), (2, 8)]


def test_a_record_filling_its_slot_exactly_is_kept(tmp_path: Path) -> None:
    base = len(CursorRecord(1, binding="").encode(1).rstrip(b"\n")) + 1  # the line with its newline
    fitting = CursorRecord(1, binding="b" * (_SLOT - base))
    assert len(fitting.encode(1)) == _SLOT and fitting.encode(1).endswith(b"}\n")
    with pytest.raises(sc.StateFileError, match=r"^cursor record too large \(513 bytes\)$"):
        CursorRecord(1, binding="b" * (_SLOT - base + 1)).encode(1)
    with StateFile(tmp_path / "s.json") as state:
        state.write_cursor(fitting, durable=True)
    with StateFile(tmp_path / "s.json") as again:
        assert again.load_cursor() == fitting


def test_a_sync_with_nothing_written_leaves_the_synced_slot_alone(tmp_path: Path) -> None:
    """After loading, a sync before any write has nothing to make durable: the next (unsynced)
    write must still go to the slot that does not hold the last synced record."""
    path = tmp_path / "s.json"
    with StateFile(path) as state:
        state.write_cursor(CursorRecord(5), durable=True)
    with StateFile(path) as state:
        assert state.load_cursor() == CursorRecord(5)
        state.sync_cursor()
        state.write_cursor(CursorRecord(6), durable=False)
        state.write_cursor(CursorRecord(7), durable=False)
    assert [s[1].cursor for s in _slots(tmp_path / "s.json.cursor") if s] == [5, 7]


def test_a_state_file_in_a_directory_not_made_yet_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.json"
    with StateFile(path) as state:
        state.save({"cursor": 1})
        state.write_cursor(CursorRecord(1), durable=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.json", "s.json.cursor", "s.json.lock"]


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


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count open files")
def test_saving_and_refused_locks_leave_no_file_open(tmp_path: Path) -> None:
    """A listener saves on every change for days: each save, and each refused lock of a second
    process, must give back every descriptor it opened."""
    with StateFile(tmp_path / "s.json") as state:
        state.save({"cursor": 0})
        before = _open_fds()
        for n in range(1, 21):
            state.save({"cursor": n})
        for _ in range(5):
            with pytest.raises(sc.StateFileLockedError):
                StateFile(tmp_path / "s.json").acquire()
        assert _open_fds() == before


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


def test_an_unreadable_state_file_names_the_file_and_why(tmp_path: Path) -> None:
    (tmp_path / "s.json").mkdir()
    with StateFile(tmp_path / "s.json") as state, pytest.raises(sc.StateFileError) as info:
        state.load()
    assert str(info.value) == f"cannot read state file {tmp_path / 's.json'}: {os.strerror(errno.EISDIR)}"


def test_the_same_content_in_another_key_order_is_not_written_again(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with StateFile(path) as state:
        assert state.save({"a": 1, "b": {"x": 1, "y": 2}}) is True
        path.write_text("sentinel")
        assert state.save({"b": {"y": 2, "x": 1}, "a": 1}) is False
        assert path.read_text() == "sentinel"


def test_a_save_that_cannot_replace_the_file_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "s.json").mkdir()  # the temporary file is written, then cannot be renamed over a directory
    with StateFile(tmp_path / "s.json") as state, pytest.raises(sc.StateFileError) as info:
        state.save({"cursor": 1})
    assert str(info.value) == f"cannot write state file {tmp_path / 's.json'}: {os.strerror(errno.EISDIR)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.lock"]


def test_a_cursor_record_that_cannot_be_opened_names_it_and_why(tmp_path: Path) -> None:
    (tmp_path / "s.json.cursor").mkdir()
    with StateFile(tmp_path / "s.json") as state, pytest.raises(sc.StateFileError) as info:
        state.load_cursor()
    assert str(info.value) == (f"cannot open the cursor record {tmp_path / 's.json.cursor'}: "
                               f"{os.strerror(errno.EISDIR)}")


def test_a_second_sync_does_not_hand_the_synced_slot_to_the_next_write(tmp_path: Path) -> None:
    with StateFile(tmp_path / "s.json") as state:
        state.write_cursor(CursorRecord(5), durable=True)
        state.sync_cursor()  # nothing new since: a no-op
        state.write_cursor(CursorRecord(6), durable=False)
        state.write_cursor(CursorRecord(7), durable=False)
    assert sorted(s[1].cursor for s in _slots(tmp_path / "s.json.cursor") if s) == [5, 7]


def test_a_cursor_record_that_cannot_be_synced_names_it_and_why(tmp_path: Path) -> None:
    """/dev/null takes writes but refuses fdatasync (EINVAL): the error an operator would read."""
    if not os.path.exists("/dev/null"):
        pytest.skip("needs /dev/null")
    (tmp_path / "s.json.cursor").symlink_to("/dev/null")
    with StateFile(tmp_path / "s.json") as state, pytest.raises(sc.StateFileError) as info:
        state.write_cursor(CursorRecord(1), durable=True)
    assert str(info.value) == (f"cannot write the cursor record {tmp_path / 's.json.cursor'}: "
                               f"{os.strerror(errno.EINVAL)}")
