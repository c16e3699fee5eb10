"""StateFile and CursorRecord seen from outside: what lands on disk, what a second process is told,
what is warned about. Fast, no service: these pin the state module for mutation testing."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import stat
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import SLOT, CursorRecord, StateFile


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_it_creates_is_private_to_the_owner(tmp_path: Path) -> None:
    old = os.umask(0)  # so the modes seen are the ones the code asked for
    try:
        with StateFile(tmp_path / "s.json") as state:
            state.save({"cursor": 1})
            state.write_cursor(CursorRecord(1), durable=True)
    finally:
        os.umask(old)
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {
        "s.json": 0o600, "s.json.lock": 0o600, "s.json.cursor": 0o600}


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


def test_save_writes_changes_skips_repeats_and_ignores_only_the_stamps(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with StateFile(path) as state:
        assert state.save({"cursor": 1, "nested": [{"a": 1, "saved_wall": 5.0}]}) is True
        assert json.loads(path.read_text()) == {"cursor": 1, "nested": [{"a": 1, "saved_wall": 5.0}], "version": 1}
        path.write_text("sentinel")  # so a skipped save is visible
        assert state.save({"cursor": 1, "nested": [{"a": 1, "saved_wall": 9.0}]}) is False
        assert path.read_text() == "sentinel"
        assert state.save({"cursor": 1, "nested": [{"a": 2, "saved_wall": 9.0}]}) is True  # a nested change
        assert json.loads(path.read_text())["nested"] == [{"a": 2, "saved_wall": 9.0}]
        assert state.save({"cursor": 2, "nested": [{"a": 2}]}) is True
        path.write_text("sentinel")
        assert state.save({"cursor": 2, "nested": [{"a": 2}]}, force=True) is True
        assert json.loads(path.read_text())["cursor"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("content", "why"), [
    (b"{not json", "is not valid JSON"), (b"\xff\xfe", "is not valid JSON"),
    (b'{"version": 99}', "has an unknown layout"), (b"[1, 2]", "has an unknown layout")])
def test_an_unusable_state_file_loads_empty_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           content: bytes, why: str) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, "scaleset_client._state"), StateFile(path) as state:
        assert state.load() == {}
    assert [r.getMessage() for r in caplog.records] == [f"state file {path} {why}; starting afresh"]


def test_a_missing_state_file_loads_empty_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "scaleset_client._state"), StateFile(tmp_path / "s.json") as state:
        assert state.load() == {}
        state.save({"cursor": 3})
        assert state.load() == {"cursor": 3, "version": 1}
    assert caplog.records == []


def test_an_unreadable_state_file_is_a_state_file_error(tmp_path: Path) -> None:
    (tmp_path / "s.json").mkdir()  # reading a directory fails with an OSError other than "not found"
    with StateFile(tmp_path / "s.json") as state, pytest.raises(sc.StateFileError, match="cannot read state file"):
        state.load()


def test_a_record_too_large_for_its_slot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sc.StateFileError, match=r"^cursor record too large \(\d+ bytes\)$"):
        CursorRecord(1, binding="x" * SLOT).encode(1)
    assert len(CursorRecord(1, binding="x" * 300).encode(1)) == SLOT


def test_records_are_values_and_default_to_nothing_handled() -> None:
    record = CursorRecord()
    assert dataclasses.astuple(record) == (0, 0, 0, 0, "", 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.cursor = 5  # type: ignore[misc]
    assert CursorRecord(3, 4) == CursorRecord(3, 4) and len({CursorRecord(3, 4), CursorRecord(3, 4)}) == 1


@pytest.mark.parametrize("body", [
    b'{"bind":"b","completed":0,"cursor":-1,"msg":0,"seq":1,"started":0,"stats":0}',
    b'{"bind":"b","completed":0,"cursor":true,"msg":0,"seq":1,"started":0,"stats":0}',
    b'{"bind":"b","completed":0,"cursor":"1","msg":0,"seq":1,"started":0,"stats":0}',
    b'{"bind":7,"completed":0,"cursor":1,"msg":0,"seq":1,"started":0,"stats":0}',
    b'{"completed":0,"cursor":1,"msg":0,"seq":1,"started":0,"stats":0}',
    b'[1]'])
def test_a_slot_with_a_valid_checksum_but_bad_fields_is_not_ours(body: bytes) -> None:
    import zlib
    assert CursorRecord.decode(b"%08x %s\n" % (zlib.crc32(body), body)) is None


def test_the_newest_of_the_two_slots_wins_and_writes_alternate(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.json"
    with StateFile(path) as state:
        assert state.load_cursor() is None
        state.write_cursor(CursorRecord(1), durable=True)
        state.write_cursor(CursorRecord(2), durable=True)
        state.write_cursor(CursorRecord(3), durable=False)  # not synced: lands in the slot after the synced one
        state.sync_cursor()
        state.sync_cursor()  # nothing new: changes nothing
    raw = (tmp_path / "s.json.cursor").read_bytes()
    slots = [CursorRecord.decode(raw[i * SLOT:(i + 1) * SLOT]) for i in (0, 1)]
    assert [(s[0], s[1].cursor) for s in slots if s] == [(3, 3), (2, 2)]
    with StateFile(path) as again:
        assert again.load_cursor() == CursorRecord(3)
        again.write_cursor(CursorRecord(4), durable=True)  # into the slot not holding record 3
    raw = (tmp_path / "s.json.cursor").read_bytes()
    assert [CursorRecord.decode(raw[i * SLOT:(i + 1) * SLOT])[1].cursor for i in (0, 1)] == [3, 4]  # type: ignore
    with StateFile(path) as third:
        assert third.load_cursor() == CursorRecord(4)  # the newer sequence number, though in slot 1
    (tmp_path / "s.json.cursor").write_bytes(b"garbage" * 10)
    with caplog.at_level(logging.WARNING, "scaleset_client._state"), StateFile(path) as damaged:
        assert damaged.load_cursor() is None
    assert [r.getMessage() for r in caplog.records] == [
        f"cursor record {tmp_path / 's.json.cursor'} is damaged; using the state file's cursor"]
    (tmp_path / "s.json.cursor").write_bytes(b"\n" * SLOT)  # empty slots: no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, "scaleset_client._state"), StateFile(path) as empty:
        assert empty.load_cursor() is None
    assert caplog.records == []


def test_a_cursor_record_that_cannot_be_read_or_written_is_a_state_file_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "s.json.cursor")  # opens, but has no positions to read or write at
    with StateFile(tmp_path / "s.json") as state:
        with pytest.raises(sc.StateFileError, match=r"^cannot read the cursor record .*s\.json\.cursor: "):
            state.load_cursor()
        with pytest.raises(sc.StateFileError, match=r"^cannot write the cursor record .*s\.json\.cursor: "):
            state.write_cursor(CursorRecord(1), durable=True)
    (tmp_path / "other.json.cursor").mkdir()
    with StateFile(tmp_path / "other.json") as state, pytest.raises(
            sc.StateFileError, match=r"^cannot open the cursor record"):
        state.load_cursor()
