"""Branch coverage of the resilience store (issue 12), observed from outside: the state file's
bytes, the warnings logged, the client's breaker states, errors raised, and a cron-like process
that forks (the child's coverage is saved at its normal exit by the subprocess patch)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client import _resilience_store
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client, wait_until

ELSEWHERE = "https://api.example:443"


def _open_a_breaker(client: sc.Client, origin: str = ELSEWHERE) -> None:
    """A material change the store must save: a breaker forced open."""
    client.circuit_breakers.get(origin, "admin")
    client.circuit_breakers.force_open(origin)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _writers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "scaleset-state-writer" and t.is_alive()}


def test_an_empty_state_file_path_is_a_config_error(fake: FakeActionsService, clock: FakeClock) -> None:
    with pytest.raises(sc.ConfigError, match="state_file must not be empty"):
        make_client(fake, clock, state_file="")


def test_a_state_file_that_cannot_be_read_or_written_is_a_warning_never_a_crash(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A directory where the file should be: the start is a warning and a fresh start, the
    writer's and close's saves are one warning, and the client keeps working throughout."""
    state = tmp_path / "state.json"
    state.mkdir()
    with caplog.at_level(logging.WARNING):
        client = make_client(fake, clock, state_file=state)
        assert any("cannot read state file" in m and "starting without saved resilience state" in m
                   for m in _warnings(caplog))
        assert client.get_runner_group_by_name("default").name == "Default"
        _open_a_breaker(client)
        wait_until(lambda: any("the resilience state was not saved" in m for m in _warnings(caplog)))
        client.close()
    assert state.is_dir() and list(state.iterdir()) == []
    assert sum("the resilience state was not saved" in m for m in _warnings(caplog)) == 1  # warned once


def test_a_file_whose_resilience_section_names_another_configuration_is_left_alone(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No binding, but the saved section itself belongs to another configuration URL."""
    state = tmp_path / "state.json"
    theirs = {"origin": ELSEWHERE, "operation_class": "admin", "state": "forced_open", "open_remaining": None,
              "saved_wall": clock.wall()}
    state.write_text(json.dumps({"version": 1, "resilience": {
        "version": 1, "saved_wall": clock.wall(), "breakers": [theirs], "config_url": "https://github.com/theirs"}}))
    before = state.read_bytes()
    with caplog.at_level(logging.WARNING):
        client = make_client(fake, clock, state_file=state)
    assert any("https://github.com/theirs" in m for m in _warnings(caplog))
    assert client.circuit_breakers.states() == {}  # their forced-open breaker is not restored
    _open_a_breaker(client)
    client.close()
    assert state.read_bytes() == before


def test_a_section_of_another_configuration_handed_to_restore_is_ignored(
        client: sc.Client, caplog: pytest.LogCaptureFixture) -> None:
    """The listener's path: a section read from its own file, bound to another configuration."""
    section = {"version": 1, "saved_wall": 1.0, "config_url": "https://github.com/theirs",
               "breakers": [{"origin": ELSEWHERE, "operation_class": "admin", "state": "forced_open",
                             "open_remaining": None, "saved_wall": 1.0}]}
    with caplog.at_level(logging.WARNING):
        assert client.resilience_store.restore(section, source="listener.json") is False
    assert any("listener.json" in m and "https://github.com/theirs" in m for m in _warnings(caplog))
    assert client.circuit_breakers.states() == {}
    assert client.resilience_store.restore(["not", "a", "mapping"]) is False


def test_a_closed_store_neither_writes_again_nor_starts_a_writer(fake: FakeActionsService, clock: FakeClock,
                                                                  tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    _open_a_breaker(client)
    client.close()
    assert "forced_open" in state.read_text()
    state.unlink()
    before = _writers()
    client.resilience_store.changed()  # a late change after close: no writer thread is started
    assert not _writers() - before
    client.close()  # idempotent: the final state is not written a second time
    client.resilience_store.close()
    assert not state.exists()


def test_a_client_without_a_state_file_reads_and_writes_nothing(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    client = make_client(fake, clock)
    store = client.resilience_store
    assert store.path is None and repr(store) == "ResilienceStore(None)"
    store.load()
    _open_a_breaker(client)
    store.changed()
    client.close()
    assert list(tmp_path.iterdir()) == []


def test_the_store_repr_names_the_path_and_nothing_secret(fake: FakeActionsService, clock: FakeClock,
                                                          tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    try:
        assert repr(client.resilience_store) == f"ResilienceStore({str(state)!r})"
        assert fake.token not in repr(client.resilience_store)
    finally:
        client.close()


# A cron-like process that forks after its client has a pooled connection, an admin token and a
# running writer thread. The child uses the same Client, changes a breaker and closes it; the
# parent waits for the child, then uses and closes its own.
FORKING_RUN = """
import json, os, sys, threading
import scaleset_client as sc

url, token, state = sys.argv[1:4]
client = sc.Client(url, token=token, state_file=state, timeout=(2.0, 5.0))
client.get_runner_group_by_name("default")
client.circuit_breakers.get("https://parent.example:443", "admin")
client.circuit_breakers.force_open("https://parent.example:443")
pid = os.fork()
if pid == 0:
    group = client.get_runner_group_by_name("default").name
    client.circuit_breakers.get("https://child.example:443", "admin")
    client.circuit_breakers.force_open("https://child.example:443")
    client.close()
    with open(state + ".child", "w") as out:
        json.dump({"group": group, "writers": [t.name for t in threading.enumerate()
                                               if t.name == "scaleset-state-writer" and t.is_alive()]}, out)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
after_child = json.loads(open(state).read())
group = client.get_runner_group_by_name("default").name
client.close()
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "group": group,
                  "after_child": sorted(b["origin"] for b in after_child["resilience"]["breakers"])}))
"""


def test_a_forked_child_uses_its_client_and_saves_its_own_state(fake: FakeActionsService,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    script = tmp_path / "forking_run.py"
    script.write_text(FORKING_RUN)
    run = subprocess.run([sys.executable, str(script), fake.config_url, fake.token, str(state)],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    result = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert result["child_exit"] == 0 and result["group"] == "Default"
    child = json.loads((tmp_path / "state.json.child").read_text())
    assert child == {"group": "Default", "writers": []}  # the child's own writer ended at its close
    # The child's close saved its view: the parent's breaker (inherited) and its own.
    assert {"https://child.example:443", "https://parent.example:443"} <= set(result["after_child"])
    assert fake.count("get_runner_group_by_name") == 3  # the parent's two calls and the child's one
    final = json.loads(state.read_text())
    assert {b["origin"] for b in final["resilience"]["breakers"]} >= {"https://parent.example:443"}


def test_a_change_flushed_during_the_writers_pause_is_not_written_twice(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer waits out ``MIN_INTERVAL`` after a write; a ``flush()`` in that pause saves the
    change, so the writer, waking, finds nothing left to write and replaces the file no more."""
    monkeypatch.setattr(_resilience_store, "MIN_INTERVAL", 2.0)
    monkeypatch.setattr(_resilience_store, "IDLE_EXIT", 0.2)
    state = tmp_path / "state.json"
    replaced: list[str] = []
    real_replace = os.replace

    def counting_replace(src: Any, dst: Any) -> None:
        if os.fspath(dst) == os.path.realpath(state):
            replaced.append(os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    before = _writers()
    client = make_client(fake, clock, state_file=state)
    try:
        _open_a_breaker(client, "https://one.example:443")
        wait_until(lambda: len(replaced) == 1)  # the first change of a quiet spell: written at once
        _open_a_breaker(client, "https://two.example:443")  # the writer now pauses before writing it
        assert client.resilience_store.flush() is True
        assert len(replaced) == 2
        wait_until(lambda: not _writers() - before)  # the writer woke, found it saved, and went idle
        assert len(replaced) == 2
        saved = json.loads(state.read_text())["resilience"]["breakers"]
        assert {"https://one.example:443", "https://two.example:443"} <= {b["origin"] for b in saved}
    finally:
        client.close()
