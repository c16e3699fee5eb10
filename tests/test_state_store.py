"""``StateFile`` seen from outside: every file private to the owner, a save that writes changes and
skips repeats, what loading a missing, unusable or unreadable file does, and no file left open or
behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import CursorRecord, StateFile


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


def test_a_state_file_in_a_directory_not_made_yet_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.json"
    with StateFile(path) as state:
        state.save({"cursor": 1})
        state.write_cursor(CursorRecord(1), durable=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.json", "s.json.cursor", "s.json.lock"]


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
