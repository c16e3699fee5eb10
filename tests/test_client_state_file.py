"""``Client(state_file=...)``: resilience state that survives the process, as a cron job needs it.

Seen from outside: what a new process sends to the fake service after the last one found it
down, what lands on disk, and what a second writer (another client, a listener, a forked child)
leaves there; a file that cannot be read or written, or belongs to another configuration, is a
warning and a fresh start, never a crash. How one process's clients and listener share a file
through its one owner: ``test_state_owner.py``.
"""

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
from scaleset_client import _state_owner
from scaleset_client._http import origin_of
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, job, make_client, stats, wait_until

# One cron run: a fresh process, a Client with a state file, calls until the service says stop.
CRON_RUN = """
import json, sys
import scaleset_client as sc

url, token, state, shift, close = sys.argv[1:6]

class Later(sc.SystemClock):
    # This run happens ``shift`` seconds after the previous one (as far as the wall clock says).
    def wall(self):
        return super().wall() + float(shift)

resilience = sc.ResilienceConfig(
    retry=sc.RetryConfig(max_attempts=1),
    circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, open_duration=300.0, max_open_duration=600.0))
client = sc.Client(url, token=token, state_file=state, resilience=resilience, clock=Later(),
                   timeout=(2.0, 5.0))
outcomes = []
for _ in range(8):
    try:
        client.get_runner_group_by_name("default")
        outcomes.append("ok")
        break
    except sc.CircuitOpenError:
        outcomes.append("open")
        break
    except sc.RateLimitedError:
        outcomes.append("limited")
        break
    except sc.ScalesetError as exc:
        outcomes.append(type(exc).__name__)
if close == "close":
    client.close()
print(json.dumps(outcomes))
"""


def cron_run(tmp_path: Path, fake: FakeActionsService, state: Path, *, shift: float = 0.0,
             close: bool = True) -> list[str]:
    """One run of the cron script in its own process; returns what its calls ended with."""
    script = tmp_path / "cron_run.py"
    script.write_text(CRON_RUN)
    run = subprocess.run([sys.executable, str(script), fake.config_url, fake.token, str(state), str(shift),
                          "close" if close else "exit"], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    outcomes: list[str] = json.loads(run.stdout.decode().strip().splitlines()[-1])
    return outcomes


def actions_requests(fake: FakeActionsService) -> int:
    return fake.count(server="actions")


def saved(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state.read_text())
    return data


def breaker_states(state: Path) -> dict[tuple[str, str], str]:
    section = saved(state).get("resilience", {})
    return {(b["origin"], b["operation_class"]): b["state"] for b in section.get("breakers", [])}


def origin(url: str) -> str:
    return origin_of(url)


def test_a_cron_run_that_opened_the_breaker_keeps_the_next_run_off_the_service(tmp_path: Path) -> None:
    state = tmp_path / "cron.json"
    with FakeActionsService(long_poll_hold=0.05) as fake:
        fake.inject_always("actions", Fault.error(503))
        first = cron_run(tmp_path, fake, state)
        sent_by_first = actions_requests(fake)
        assert first[-1] == "open" and len(first) == 4, first  # three 503s opened the breaker
        assert sent_by_first == 3
        assert breaker_states(state)[(origin(fake.actions_url), "admin")] == "open"

        second = cron_run(tmp_path, fake, state)
        assert second == ["open"]
        assert actions_requests(fake) == sent_by_first  # not one request while the restored break lasts

        fake.clear_faults()
        an_hour_later = cron_run(tmp_path, fake, state, shift=3600.0)
        assert an_hour_later == ["ok"]  # the break was restored with its time left, not for ever
        assert actions_requests(fake) > sent_by_first
        assert breaker_states(state)[(origin(fake.actions_url), "admin")] == "closed"


def test_a_cron_run_told_to_wait_by_a_429_keeps_the_next_run_waiting_too(tmp_path: Path) -> None:
    state = tmp_path / "cron.json"
    with FakeActionsService(long_poll_hold=0.05) as fake:
        fake.inject("actions", Fault.error(429, headers={"Retry-After": "600"}))
        # This run exits without close(): the gate still reaches the file.
        assert cron_run(tmp_path, fake, state, close=False) == ["limited"]
        sent_by_first = actions_requests(fake)
        assert sent_by_first == 1
        gates = saved(state)["resilience"]["gates"]
        assert origin(fake.actions_url) in gates

        assert cron_run(tmp_path, fake, state) == ["limited"]
        assert actions_requests(fake) == sent_by_first  # the restored Retry-After is honoured

        assert cron_run(tmp_path, fake, state, shift=3600.0) == ["ok"]
        assert actions_requests(fake) > sent_by_first


def test_overlapping_cron_runs_on_one_file_neither_block_nor_corrupt_it(tmp_path: Path) -> None:
    state = tmp_path / "shared.json"
    storm = tmp_path / "storm.py"
    storm.write_text(
        "import sys\nimport scaleset_client as sc\n"
        "url, token, state = sys.argv[1:4]\n"
        "client = sc.Client(url, token=token, state_file=state)\n"
        "for i in range(300):\n"
        "    client.circuit_breakers.get('https://api.example:443', 'admin')\n"
        "    client.circuit_breakers.force_open('https://api.example:443')\n"
        "    client.circuit_breakers.reset('https://api.example:443')\n"
        "client.circuit_breakers.force_open('https://api.example:443')\n"
        "client.close()\n")
    with FakeActionsService(long_poll_hold=0.05) as fake:
        runs = [subprocess.Popen([sys.executable, str(storm), fake.config_url, fake.token, str(state)],
                                 stderr=subprocess.PIPE) for _ in range(2)]
        errors = [p.communicate(timeout=60)[1].decode() for p in runs]
    assert [p.returncode for p in runs] == [0, 0], errors
    assert not any("Traceback" in e or "state file" in e for e in errors), errors
    assert breaker_states(state)[("https://api.example:443", "admin")] == "forced_open"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.json.lock", "storm.py"]


def test_a_corrupt_state_file_is_a_warning_and_a_fresh_start_then_replaced(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(b"\x00\xffnot json{")
    with caplog.at_level(logging.WARNING):
        client = make_client(fake, clock, state_file=state)
    assert any("not valid JSON" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert client.get_runner_group_by_name("default").name == "Default"
    client.close()
    section = saved(state)["resilience"]
    assert section["config_url"] == fake.config_url
    assert (origin(fake.actions_url), "admin") in breaker_states(state)


def test_a_state_file_of_another_configuration_is_neither_used_nor_overwritten(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state.json"
    theirs = {"origin": origin(fake.actions_url), "operation_class": "admin", "state": "forced_open",
              "open_remaining": None, "saved_wall": clock.wall()}
    state.write_text(json.dumps({
        "version": 1, "binding": {"config_url": "https://github.com/another-org", "scale_set_id": 7},
        "cursor": 42, "resilience": {"version": 1, "saved_wall": clock.wall(), "breakers": [theirs],
                                     "config_url": "https://github.com/another-org"}}))
    before = state.read_bytes()
    with caplog.at_level(logging.WARNING):
        client = make_client(fake, clock, state_file=state)
    assert any("another-org" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert client.get_runner_group_by_name("default").name == "Default"  # their open breaker is not ours
    assert actions_requests(fake) >= 1
    client.circuit_breakers.force_open(origin(fake.actions_url))
    client.close()
    assert state.read_bytes() == before


def test_a_missing_directory_and_a_bad_path_type(fake: FakeActionsService, clock: FakeClock,
                                                 tmp_path: Path) -> None:
    state = tmp_path / "new" / "dir" / "state.json"
    client = make_client(fake, clock, state_file=str(state))
    client.circuit_breakers.get("https://api.example:443", "admin")
    client.circuit_breakers.force_open("https://api.example:443")
    client.close()
    assert breaker_states(state)[("https://api.example:443", "admin")] == "forced_open"
    with pytest.raises(sc.ConfigError, match="state_file"):
        make_client(fake, clock, state_file=42)


def test_a_breaker_opening_reaches_the_file_before_close(fake: FakeActionsService, clock: FakeClock,
                                                         tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    client.circuit_breakers.get("https://api.example:443", "admin")
    client.circuit_breakers.force_open("https://api.example:443")
    wait_until(lambda: state.exists() and breaker_states(state).get(("https://api.example:443", "admin"))
               == "forced_open")
    client.close()


def test_a_storm_of_transitions_is_not_a_storm_of_writes(fake: FakeActionsService, clock: FakeClock,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state.json"
    monkeypatch.setattr(_state_owner, "MIN_INTERVAL", 3600.0)
    replaced: list[str] = []
    real_replace = os.replace

    def counting_replace(src: Any, dst: Any) -> None:
        if os.fspath(dst) == os.path.realpath(state):
            replaced.append(os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    client = make_client(fake, clock, state_file=state)
    breakers = client.circuit_breakers
    breakers.get("https://api.example:443", "admin")
    for _ in range(200):
        breakers.force_open("https://api.example:443")
        breakers.reset("https://api.example:443")
    breakers.force_open("https://api.example:443")
    client.close()
    assert 1 <= len(replaced) <= 2  # the first change at once, then the final state at close
    assert breaker_states(state)[("https://api.example:443", "admin")] == "forced_open"


def test_two_clients_on_one_file_the_last_to_close_wins_and_each_restores_it(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = make_client(fake, clock, state_file=state)
    second = make_client(fake, clock, state_file=state)
    first.circuit_breakers.get("https://one.example:443", "admin")
    first.circuit_breakers.force_open("https://one.example:443")
    second.circuit_breakers.get("https://two.example:443", "admin")
    second.circuit_breakers.force_open("https://two.example:443")
    first.close()
    second.close()
    assert set(breaker_states(state)) == {("https://two.example:443", "admin")}
    third = make_client(fake, clock, state_file=state)
    assert third.circuit_breakers.states() == {"https://two.example:443 admin": "forced_open"}
    third.close()


def test_a_client_on_a_running_listeners_file_neither_blocks_nor_clobbers_it(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    listener_client = make_client(fake, clock)
    stop = threading.Event()
    scaler = RecordingScaler()
    listener = sc.Listener(listener_client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    runner = threading.Thread(target=listener.run, args=(scaler,), kwargs={"stop": stop}, daemon=True)
    runner.start()
    wait_until(lambda: listener.cursor == mid and state.exists())
    cron = make_client(fake, clock, state_file=state)  # reads the listener's file; never waits for its lock
    cron.circuit_breakers.get("https://api.example:443", "admin")
    cron.circuit_breakers.force_open("https://api.example:443")
    cron.close()  # its write is skipped: the listener holds the file
    assert ("https://api.example:443", "admin") not in breaker_states(state)
    stop.set()
    runner.join(30)
    assert not runner.is_alive()
    document = saved(state)
    assert document["cursor"] == mid and document["binding"]["scale_set_id"] == scale_set.id
    assert ("https://api.example:443", "admin") not in breaker_states(state)
    listener_client.close()


class _StopWhenOpen:
    """A metrics recorder that stops the listener once the broker's long-poll breaker opens."""

    def __init__(self, client: sc.Client, broker: str) -> None:
        self.listener: sc.Listener | None = None
        self.client = client
        self.key = f"{broker} long_poll"

    def record_circuit_state(self, origin: str, state: str) -> None:
        if self.listener is not None and self.client.circuit_breakers.states().get(self.key) == "open":
            self.listener.stop()


def _run_into_a_broker_outage(fake: FakeActionsService, client: sc.Client, scale_set: sc.RunnerScaleSet,
                              listener_file: Path | None) -> int:
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    metrics = _StopWhenOpen(client, origin(fake.queue_url))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=listener_file), metrics=metrics)
    metrics.listener = listener
    scaler = RecordingScaler(hook=lambda *_: fake.inject_always("broker", Fault.error(503)))
    listener.run(scaler)
    assert scaler.started == [1]
    return mid


def test_a_listener_without_a_state_file_leaves_resilience_to_the_clients_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "client.json"
    client = make_client(fake, clock, state_file=state)
    _run_into_a_broker_outage(fake, client, scale_set, None)
    client.close()
    assert breaker_states(state)[(origin(fake.queue_url), "long_poll")] == "open"
    assert "cursor" not in saved(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.json", "client.json.lock"]


def test_a_listener_and_its_client_on_the_same_path_share_one_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    mid = _run_into_a_broker_outage(fake, client, scale_set, state)
    # The listener saved the breaker with its cursor, through the client's section.
    document = saved(state)
    assert document["cursor"] == mid and document["resilience"]["config_url"] == fake.config_url
    assert breaker_states(state)[(origin(fake.queue_url), "long_poll")] == "open"
    client.close()
    document = saved(state)
    assert document["cursor"] == mid and document["binding"]["scale_set_id"] == scale_set.id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.cursor", "state.json.lock"]
    fresh = make_client(fake, clock, state_file=state)
    assert fresh.circuit_breakers.states()[f"{origin(fake.queue_url)} long_poll"] == "open"
    fresh.close()


def test_a_listener_with_its_own_file_and_a_client_file_both_keep_the_state(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    client_file, listener_file = tmp_path / "client.json", tmp_path / "listener.json"
    client = make_client(fake, clock, state_file=client_file)
    _run_into_a_broker_outage(fake, client, scale_set, listener_file)
    client.close()
    key = (origin(fake.queue_url), "long_poll")
    assert breaker_states(client_file)[key] == "open" and breaker_states(listener_file)[key] == "open"
    assert "cursor" in saved(listener_file) and "cursor" not in saved(client_file)


def test_a_listener_restores_its_files_state_only_when_newer_than_the_clients(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    client_file, listener_file = tmp_path / "client.json", tmp_path / "listener.json"

    def write(path: Path, state: str, saved_wall: float) -> None:
        breaker = {"origin": "https://api.example:443", "operation_class": "admin", "state": state,
                   "open_remaining": None, "saved_wall": saved_wall}
        path.write_text(json.dumps({"version": 1, "resilience": {
            "version": 1, "saved_wall": saved_wall, "breakers": [breaker], "config_url": fake.config_url}}))

    write(client_file, "closed", clock.wall() - 10)
    write(listener_file, "forced_open", clock.wall() - 20)  # older than the client's: not applied
    client = make_client(fake, clock, state_file=client_file)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=listener_file))
    listener.run(RecordingScaler(), until_idle=True)
    assert client.circuit_breakers.states()["https://api.example:443 admin"] == "closed"
    write(listener_file, "forced_open", clock.wall() - 5)  # newer: applied
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=listener_file)).run(
        RecordingScaler(), until_idle=True)
    assert client.circuit_breakers.states()["https://api.example:443 admin"] == "forced_open"
    client.close()


def test_the_writer_thread_ends_when_quiet_and_comes_back_on_the_next_change(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state.json"
    monkeypatch.setattr(_state_owner, "IDLE_EXIT", 0.05)
    monkeypatch.setattr(_state_owner, "MIN_INTERVAL", 0.0)

    def writers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "scaleset-state-writer" and t.is_alive()}

    before = writers()
    client = make_client(fake, clock, state_file=state)
    breakers = client.circuit_breakers
    breakers.get("https://api.example:443", "admin")
    breakers.force_open("https://api.example:443")
    wait_until(lambda: state.exists() and breaker_states(state)[("https://api.example:443", "admin")] == "forced_open")
    wait_until(lambda: not writers() - before)  # quiet: no thread keeps an unclosed client alive
    breakers.reset("https://api.example:443")
    wait_until(lambda: breaker_states(state)[("https://api.example:443", "admin")] == "closed")
    client.close()


def test_saved_values_of_the_wrong_type_are_a_warning_and_closed_breakers(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state.json"
    breaker = {"origin": origin(fake.actions_url), "operation_class": "admin", "state": "open",
               "reopen_count": "many", "open_remaining": "soon", "saved_wall": clock.wall()}
    state.write_text(json.dumps({"version": 1, "resilience": {
        "version": 1, "saved_wall": clock.wall(), "breakers": [breaker], "gates": {"x": "y"}, "budget": [1]}}))
    with caplog.at_level(logging.WARNING):
        client = make_client(fake, clock, state_file=state)
    assert any("do not fit" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert client.get_runner_group_by_name("default").name == "Default"
    assert actions_requests(fake) >= 1
    client.close()


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


def test_a_listener_file_whose_section_names_another_configuration_is_not_restored_then_replaced(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The listener's path: its own file (no binding yet) carries a section of another
    configuration. It is a warning naming both, nothing of it is restored, and the listener's
    save replaces it with this client's section (the file is the listener's)."""
    state = tmp_path / "listener.json"
    theirs = {"origin": ELSEWHERE, "operation_class": "admin", "state": "forced_open", "open_remaining": None,
              "saved_wall": clock.wall()}
    state.write_text(json.dumps({"version": 1, "resilience": {
        "version": 1, "saved_wall": clock.wall(), "breakers": [theirs], "config_url": "https://github.com/theirs"}}))
    client = make_client(fake, clock)
    with caplog.at_level(logging.WARNING):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state)).run(
            RecordingScaler(), until_idle=True)
    assert any("listener.json" in m and "https://github.com/theirs" in m for m in _warnings(caplog))
    assert client.circuit_breakers.states().get(f"{ELSEWHERE} admin") is None
    assert saved(state)["resilience"]["config_url"] == fake.config_url
    client.close()


def test_a_closed_client_neither_writes_again_nor_starts_a_writer(fake: FakeActionsService, clock: FakeClock,
                                                                   tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    _open_a_breaker(client)
    client.close()
    assert "forced_open" in state.read_text()
    state.unlink()
    before = _writers()
    client.circuit_breakers.reset(ELSEWHERE)  # a late change after close: no writer thread is started
    _open_a_breaker(client, "https://late.example:443")
    assert not _writers() - before
    client.close()  # idempotent: the final state is not written a second time
    assert not state.exists()


def test_a_client_without_a_state_file_reads_and_writes_nothing(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = _writers()
    client = make_client(fake, clock)
    _open_a_breaker(client)
    assert client.get_runner_group_by_name("default").name == "Default"
    assert not _writers() - before
    client.close()
    assert list(tmp_path.iterdir()) == []


def test_the_state_file_holds_no_secret_and_the_client_shows_no_store(fake: FakeActionsService, clock: FakeClock,
                                                                      tmp_path: Path) -> None:
    """What the file keeps is ids, counters and times; how it is kept is not on the client's
    public face (``Client.resilience_store`` is gone: the state file is the interface)."""
    state = tmp_path / "state.json"
    client = make_client(fake, clock, state_file=state)
    try:
        assert client.get_runner_group_by_name("default").name == "Default"
        _open_a_breaker(client)
        assert not hasattr(client, "resilience_store")
        assert fake.token not in repr(client)
    finally:
        client.close()
    assert fake.token not in state.read_text()
    assert fake.token not in repr(_state_owner.owner_for(state))


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
    """The writer waits out ``MIN_INTERVAL`` after a write; a flush by the file's owner in that
    pause saves the change, so the writer, waking, finds nothing left to write and replaces the
    file no more."""
    monkeypatch.setattr(_state_owner, "MIN_INTERVAL", 2.0)
    monkeypatch.setattr(_state_owner, "IDLE_EXIT", 0.2)
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
        assert _state_owner.owner_for(state).flush() is True  # what close() and the atexit hook call
        assert len(replaced) == 2
        wait_until(lambda: not _writers() - before)  # the writer woke, found it saved, and went idle
        assert len(replaced) == 2
        saved = json.loads(state.read_text())["resilience"]["breakers"]
        assert {"https://one.example:443", "https://two.example:443"} <= {b["origin"] for b in saved}
    finally:
        client.close()
