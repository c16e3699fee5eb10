"""The cursor record (``<state>.cursor``) on disk: two fixed slots written in turn and synced, a
record that must fit its slot, a torn or foreign slot ignored, and errors that name the file.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import SLOT, CursorRecord, StateFile


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


def test_a_torn_cursor_slot_falls_back_to_the_last_synced_record(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with StateFile(state) as held:
        held.write_cursor(CursorRecord(cursor=41), durable=True)
        held.write_cursor(CursorRecord(cursor=41, message_id=42, started=1), durable=False)
        held.write_cursor(CursorRecord(cursor=41, message_id=42, started=2), durable=False)
    raw = bytearray((tmp_path / "state.json.cursor").read_bytes())
    assert len(raw) == 2 * SLOT
    with StateFile(state) as held:
        assert held.load_cursor() == CursorRecord(cursor=41, message_id=42, started=2)
    # A power loss tore the slot the unsynced writes went to: the synced one is intact.
    unsynced = 1 if raw[:SLOT].find(b'"started":0') != -1 else 0
    raw[unsynced * SLOT + 20:unsynced * SLOT + 30] = b"\x00" * 10
    (tmp_path / "state.json.cursor").write_bytes(bytes(raw))
    with StateFile(state) as held:
        assert held.load_cursor() == CursorRecord(cursor=41)
