"""One owner per state file and process: clients and a listener on one file hand it their parts.

Seen from outside: what is on disk while and after a listener runs next to a client on the same
file, what a client restores (never a rollback of its own unsaved change, always what another
process wrote meanwhile), and what other processes see: a second listener is refused, a cron
client neither blocks nor clobbers, a forked child does not write a file its parent's listener
holds. Real threads and real processes; the file's owner is asked for nothing but its flush.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client import _state_owner
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, Running, job, make_client, stats, wait_until

ELSEWHERE = "https://api.example:443"


def saved(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state.read_text())
    return data


def breaker_states(state: Path) -> dict[str, str]:
    return {f"{b['origin']} {b['operation_class']}": b["state"]
            for b in saved(state).get("resilience", {}).get("breakers", [])}


def force_open(client: sc.Client, origin: str = ELSEWHERE) -> None:
    client.circuit_breakers.get(origin, "admin")
    client.circuit_breakers.force_open(origin)


def replace_as_another_process(state: Path, document: dict[str, Any]) -> None:
    """What another process's write does to the file: an atomic replace."""
    tmp = state.with_name(".other-process.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, state)


@contextmanager
def running(client: sc.Client, scale_set_id: int, state: Path) -> Iterator[sc.Listener]:
    """A listener of this process on ``state``, running in a thread until the block ends."""
    listener = sc.Listener(client, sc.ListenerConfig(scale_set_id, 3, state_file=state))
    run = Running(listener, RecordingScaler())
    try:
        yield listener
    finally:
        run.finish()
    assert run.error is None, f"the listener's run ended with {run.error!r}"


def test_a_clients_change_reaches_the_file_its_listener_holds_during_the_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """Same client, same file: the client's change is written by the file's owner while the
    listener holds the file (no lock to wait for, no write left to the listener's next save)."""
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock, state_file=state)
    with running(client, scale_set.id, state) as listener:
        wait_until(lambda: listener.cursor == mid and state.exists())
        force_open(client)
        wait_until(lambda: breaker_states(state).get(f"{ELSEWHERE} admin") == "forced_open")
        assert saved(state)["binding"]["scale_set_id"] == scale_set.id  # the listener's keys are kept
    client.circuit_breakers.reset(ELSEWHERE)  # after the run: still the one owner, the listener's keys kept
    client.close()
    document = saved(state)
    assert document["cursor"] == mid and document["binding"]["scale_set_id"] == scale_set.id
    assert breaker_states(state)[f"{ELSEWHERE} admin"] == "closed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.cursor", "state.json.lock"]


def test_a_rate_limit_met_during_the_run_reaches_the_listeners_file_when_the_client_has_none(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """A client without a state file of its own: its section is written to the running
    listener's file, at each change too (a gate armed mid-run is on disk before the run ends,
    so a process killed then still keeps the next one off the service)."""
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    actions = fake.actions_url.split("/", 3)
    actions_origin = f"{actions[0]}//{actions[2]}"
    with running(client, scale_set.id, state) as listener:
        wait_until(lambda: listener.cursor == mid and state.exists())
        fake.inject("actions", sc.testing.Fault.error(429, headers={"Retry-After": "600"}))
        with pytest.raises(sc.ScalesetError):
            client.get_runner_scale_set_by_id(scale_set.id)
        wait_until(lambda: any(o.startswith(actions_origin) for o in saved(state)["resilience"].get("gates", {})))
    client.close()


def test_a_listener_taking_its_clients_file_keeps_the_clients_unsaved_change(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is read once for the client: the listener's start does not hand the client its
    own older write again, which would undo a change the writer had not saved yet."""
    monkeypatch.setattr(_state_owner, "MIN_INTERVAL", 3600.0)  # after the first write, nothing until close
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    force_open(client)
    wait_until(lambda: state.exists() and breaker_states(state).get(f"{ELSEWHERE} admin") == "forced_open")
    clock.advance(10.0)
    client.circuit_breakers.reset(ELSEWHERE)  # not written yet: the writer waits out MIN_INTERVAL
    assert breaker_states(state)[f"{ELSEWHERE} admin"] == "forced_open"
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                   until_idle=True)
    assert client.circuit_breakers.states()[f"{ELSEWHERE} admin"] == "closed"
    assert breaker_states(state)[f"{ELSEWHERE} admin"] == "closed"  # the listener's saves carried it
    client.close()


def test_what_another_process_wrote_meanwhile_reaches_the_client_when_its_listener_takes_the_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    force_open(client)
    client.circuit_breakers.reset(ELSEWHERE)
    wait_until(lambda: state.exists() and breaker_states(state).get(f"{ELSEWHERE} admin") == "closed")
    clock.advance(5.0)
    theirs = {"origin": "https://other.example:443", "operation_class": "admin", "state": "forced_open",
              "open_remaining": None, "saved_wall": clock.wall()}
    replace_as_another_process(state, {"version": 1, "resilience": {
        "version": 1, "saved_wall": clock.wall(), "breakers": [theirs], "config_url": fake.config_url}})
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                   until_idle=True)
    assert client.circuit_breakers.states()["https://other.example:443 admin"] == "forced_open"
    client.close()


def test_two_clients_on_one_file_and_an_alias_share_its_owner(fake: FakeActionsService, clock: FakeClock,
                                                               tmp_path: Path) -> None:
    real, alias = tmp_path / "real.json", tmp_path / "alias.json"
    alias.symlink_to(real)
    first = make_client(fake, clock, state_file=real)
    second = make_client(fake, clock, state_file=alias)
    assert _state_owner.owner_for(alias) is _state_owner.owner_for(real)
    force_open(second, "https://two.example:443")
    wait_until(lambda: real.exists() and "https://two.example:443 admin" in breaker_states(real))
    second.close()
    first.close()  # the last to close wins
    assert alias.is_symlink() and "https://two.example:443 admin" not in breaker_states(real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.json", "real.json", "real.json.lock"]


def test_a_second_listener_of_this_process_on_the_file_is_refused(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first, second = make_client(fake, clock, state_file=state), make_client(fake, clock)
    with running(first, scale_set.id, state) as listener:
        wait_until(lambda: listener.health().ready)
        with pytest.raises(sc.StateFileLockedError, match=f"another listener of this process \\(pid {os.getpid()}\\)"):
            sc.Listener(second, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler())
    sc.Listener(second, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler(),
                                                                                   until_idle=True)  # free again
    first.close()
    second.close()


# Another process next to this one's running listener: a cron client that changes a breaker and
# closes, or a listener of its own. Neither waits for the file; the listener's file stays whole.
OTHER_PROCESS = """
import json, sys, time
import scaleset_client as sc

url, token, state, what, scale_set_id = sys.argv[1:6]
client = sc.Client(url, token=token, state_file=state if what == "cron" else None, timeout=(2.0, 5.0))
began = time.monotonic()
outcome = "ok"
if what == "cron":
    client.circuit_breakers.get("https://cron.example:443", "admin")
    client.circuit_breakers.force_open("https://cron.example:443")
else:
    try:
        sc.Listener(client, sc.ListenerConfig(int(scale_set_id), 3, state_file=state)).run(lambda *a: None)
    except sc.StateFileLockedError as exc:
        outcome = str(exc)
client.close()
print(json.dumps({"outcome": outcome, "took": time.monotonic() - began}))
"""


def other_process(tmp_path: Path, fake: FakeActionsService, state: Path, what: str,
                  scale_set_id: int) -> dict[str, Any]:
    script = tmp_path / "other_process.py"
    script.write_text(OTHER_PROCESS)
    run = subprocess.run([sys.executable, str(script), fake.config_url, fake.token, str(state), what,
                          str(scale_set_id)], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert b"Traceback" not in run.stderr, run.stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(run.stdout.decode().strip().splitlines()[-1])
    return result


def test_other_processes_next_to_a_running_listener_neither_wait_nor_clobber_its_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock, state_file=state)
    with running(client, scale_set.id, state) as listener:
        wait_until(lambda: listener.cursor == mid and state.exists())
        before = state.read_bytes()
        cron = other_process(tmp_path, fake, state, "cron", scale_set.id)
        assert cron["outcome"] == "ok" and cron["took"] < 10.0  # a few tries of 0.1 s, never the run's length
        assert state.read_bytes() == before  # the write was left to the listener holding the file
        second = other_process(tmp_path, fake, state, "listener", scale_set.id)
        assert "in use by another process" in second["outcome"] and f"(pid {os.getpid()})" in second["outcome"]
    client.close()
    document = saved(state)
    assert document["cursor"] == mid and document["binding"]["scale_set_id"] == scale_set.id
    assert "https://cron.example:443 admin" not in breaker_states(state)


# A process whose listener holds the file forks; the child changes a breaker and closes its copy
# of the client (the atexit hook would write too). The child must not write the parent's file:
# the parent's listener, not the child, holds it.
FORK_WHILE_HELD = """
import json, os, sys
import scaleset_client as sc
from scaleset_client import _state_owner

url, token, state = sys.argv[1:4]
client = sc.Client(url, token=token, state_file=state, timeout=(2.0, 5.0))
owner = _state_owner.owner_for(state)
owner.acquire()  # what a running listener holds
owner.save({"cursor": 5, "scale_set_id": 1})
before = open(state).read()
pid = os.fork()
if pid == 0:
    client.circuit_breakers.get("https://child.example:443", "admin")
    client.circuit_breakers.force_open("https://child.example:443")
    client.close()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
after_child = open(state).read()
owner.save({"cursor": 6, "scale_set_id": 1})
owner.release()
client.close()
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "untouched": after_child == before}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_write_the_file_its_parents_listener_holds(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    script = tmp_path / "fork_while_held.py"
    script.write_text(FORK_WHILE_HELD)
    with FakeActionsService(long_poll_hold=0.05) as fake:
        run = subprocess.run([sys.executable, str(script), fake.config_url, fake.token, str(state)],
                             capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert json.loads(run.stdout.decode().strip().splitlines()[-1]) == {"child_exit": 0, "untouched": True}
    document = saved(state)
    assert document["cursor"] == 6
    assert "https://child.example:443 admin" not in breaker_states(state)


def test_a_client_dropped_unclosed_is_kept_until_its_change_is_written_then_passed_over(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state_owner, "MIN_INTERVAL", 3600.0)  # after the first write, nothing until a flush
    state = tmp_path / "state.json"
    dropped = make_client(fake, clock, state_file=state)
    alive = weakref.ref(dropped)
    force_open(dropped, "https://one.example:443")
    wait_until(lambda: state.exists() and "https://one.example:443 admin" in breaker_states(state))
    force_open(dropped, "https://two.example:443")  # waits for the writer's next turn
    del dropped
    gc.collect()
    assert alive() is not None  # its change is not written yet
    owner = _state_owner.owner_for(state)
    assert owner.flush() is True  # what the atexit hook does
    assert "https://two.example:443 admin" in breaker_states(state)
    gc.collect()
    assert alive() is None  # written: nothing holds it any more
    assert owner.flush() is False  # nothing of it to write
    other = make_client(fake, clock, state_file=state)
    force_open(other, "https://three.example:443")
    other.close()
    assert "https://three.example:443 admin" in breaker_states(state)


def test_a_listener_whose_cursor_record_cannot_be_opened_fails_and_lets_the_file_go(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    (tmp_path / "state.json.cursor").mkdir()
    client = make_client(fake, clock)
    for _ in range(2):  # the second run is not refused as "in use": the first let the file go
        with pytest.raises(sc.StateFileError, match="cannot open the cursor record") as info:
            sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(RecordingScaler())
        assert not isinstance(info.value, sc.StateFileLockedError)
    assert saved(state)["binding"]["scale_set_id"] == scale_set.id  # its keys were saved on the way out
    client.close()


def writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "scaleset-state-writer"}


def test_closing_the_last_client_of_a_file_ends_its_writer_thread(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    """The writer started by a client's change does not outlive the file's last client."""
    state = tmp_path / "state.json"
    before = writer_threads()
    client = make_client(fake, clock, state_file=state)
    force_open(client)
    wait_until(lambda: state.exists() and breaker_states(state).get(f"{ELSEWHERE} admin") == "forced_open")
    assert writer_threads() - before  # the change started one
    client.close()
    assert not writer_threads() - before
    assert breaker_states(state)[f"{ELSEWHERE} admin"] == "forced_open"


class ASection:
    """A client's resilience section as the owner sees it: its state is ``value``, which the
    test changes (the file must end up holding the latest)."""

    def __init__(self) -> None:
        self.value = "first"

    def snapshot(self) -> dict[str, Any] | None:
        return {"state": self.value}

    def restore(self, document: Any, source: Path) -> None:
        pass

    def unreadable(self, error: sc.StateFileError) -> None:
        pass

    def refuses(self, document: Any) -> str:
        return ""

    def not_saved(self, key: str, message: str, *args: object) -> None:
        pass


class ChangedDuringItsWrite(ASection):
    """A section whose state changes while the writer takes its first snapshot (and that has
    nothing to write yet then): the change must be written by the writer, not left for the next
    change or the close."""

    def __init__(self, owner: _state_owner.StateOwner) -> None:
        super().__init__()
        self.owner = owner

    def snapshot(self) -> dict[str, Any] | None:
        if self.value == "first":
            self.value = "changed"
            self.owner.changed()  # another thread's change, landing mid-write
            return None
        return super().snapshot()


def test_a_change_landing_during_a_write_that_wrote_nothing_is_written_by_the_writer(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    owner = _state_owner.claim(state)
    section = ChangedDuringItsWrite(owner)
    owner.add(section)
    owner.changed()
    wait_until(lambda: state.exists() and saved(state).get("resilience") == {"state": "changed"})
    section.value = "final"
    owner.remove(section)
    assert saved(state)["resilience"] == {"state": "final"}  # the close's final write


def test_a_listeners_first_save_of_a_run_is_written_even_if_this_process_wrote_the_same_before(
        tmp_path: Path) -> None:
    """Another process replaced the file between two runs: the new run's first save puts the
    listener's keys back although this process wrote exactly them last; later saves that change
    nothing leave the file alone."""
    state = tmp_path / "state.json"
    owner = _state_owner.claim(state)
    owner.acquire()
    owner.save({"cursor": 5})
    owner.release()
    assert saved(state) == {"cursor": 5, "version": 1}
    replace_as_another_process(state, {"version": 1, "cursor": 9})
    owner = _state_owner.claim(state)
    assert owner.acquire()["cursor"] == 9
    assert owner.save({"cursor": 5}) is True
    assert saved(state) == {"cursor": 5, "version": 1}
    inode = state.stat().st_ino
    assert owner.save({"cursor": 5}) is False  # unchanged: not written again
    assert state.stat().st_ino == inode
    owner.release()


def test_the_final_write_of_a_close_comes_after_the_writer_thread_ended(tmp_path: Path) -> None:
    """``remove`` waits for the writer thread to end before its own write: when it returns, no
    writer of the file is left to run on past the close that stopped it."""
    state = tmp_path / "state.json"
    before = writer_threads()
    owner = _state_owner.claim(state)
    section = ASection()
    owner.add(section)
    owner.changed()
    wait_until(lambda: state.exists() and saved(state).get("resilience") == {"state": "first"})
    section.value = "final"
    owner.remove(section)
    assert not writer_threads() - before
    assert saved(state)["resilience"] == {"state": "final"}
