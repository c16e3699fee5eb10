"""``scaleset-listen`` as a process: SIGTERM in every state, start-up during an outage, overlapping runs.

The service is put in a state that would hold the process for a minute or an hour; the test then
sends SIGTERM and waits with a bound (15 s) far below that. The exit code, the deleted session
and the unacknowledged message are what an operator would see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._state import StateFile
from scaleset_client.testing import FakeActionsService, Fault

from .helpers import cli, env, wait_until

HOUR = 3600.0
EXIT_BOUND = 15.0  # what a test waits for; the target (5 s) is measured by the benchmark


def _start(fake: FakeActionsService, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cli(fake, "--scale-set-name", "term", *args), env=env(fake),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _terminate(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = _signal(proc)
    return proc.returncode, err


def _signal(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the process did not exit after SIGTERM") from None
    return (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace")


STATES = {
    "empty long poll": (HOUR, None, 1),
    "retry-after 60": (0.05, Fault.respond(429, headers={"Retry-After": "60"}), 1),
    "503 storm, breaker open": (0.05, Fault.error(503), 5),
    "hang": (0.05, Fault.hang(HOUR), 1),
    "drip": (0.05, Fault.drip(0.1, size=36_000, chunked=False), 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("state", list(STATES))
def test_sigterm_exits_promptly_and_deletes_the_session(state: str) -> None:
    hold, fault, polls = STATES[state]
    with FakeActionsService(long_poll_hold=hold) as fake:
        if fault is not None:
            fake.inject_always("get_message", fault)
        proc = _start(fake)
        try:
            wait_until(lambda: fake.count("get_message") >= polls, timeout=60)
            code, err = _terminate(proc)
        finally:
            fake.release_hangs()
            if proc.poll() is None:
                proc.kill()
        assert code == 0, err
        assert fake.count("delete_session") == 1 and fake.session_of(1) is None


@pytest.mark.slow
def test_start_up_waits_out_a_github_api_outage() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        fake.inject("registration_token", Fault.error(503), times=5)  # the first call's every attempt
        run = subprocess.run(cli(fake, "--scale-set-name", "patient", "--once"), env=env(fake),
                             capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr.decode()
        assert b"start-up call failed" in run.stderr
        assert fake.count("registration_token") >= 6 and fake.count("get_message") >= 1


def test_another_run_holding_the_state_file_is_a_skip(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with FakeActionsService(long_poll_hold=0.05) as fake, StateFile(state):
        run = subprocess.run(cli(fake, "--scale-set-name", "busy", "--once", "--state-file", str(state)),
                             env=env(fake), capture_output=True, timeout=60)
        assert run.returncode == 4, run.stderr.decode()
        assert b"another run" in run.stderr and b"configuration error" not in run.stderr
        assert fake.count("get_message") == 0


SLOW_SCALER = """
import json, os, sys, time
event = json.load(sys.stdin)
if event["event"] == "job_started":
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
if event["event"] == "desired_runner_count":
    print(event["count"])
"""


@pytest.mark.slow
def test_sigterm_terminates_an_exec_scaler_after_its_grace_and_leaves_the_message_unacked(
        tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCALER)
    marker = tmp_path / "started.pid"
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="term"))
        client.close()
        mid = fake.push_message(scale_set.id, [{"messageType": "JobStarted", "runnerRequestId": 7}])
        proc = _start(fake, "--exec", f"{sys.executable} {script} {marker}", "--exec-grace", "1")
        try:
            wait_until(lambda: marker.exists() and marker.read_text() != "", timeout=60)
            code, err = _terminate(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, err
        assert "shutdown grace" in err
        assert fake.unacked(scale_set.id) == [mid]  # never acknowledged: the scaler did not finish
        assert fake.session_of(scale_set.id) is None
        pid = int(marker.read_text())
        assert _gone(pid), "the scaler's process was left running"


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line for line in f):
                    return True  # a zombie waiting for init: terminated
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return not os.path.exists(f"/proc/{pid}")


def test_the_signal_example_stops_on_sigterm_and_deletes_its_session() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "stop_on_signal.py"
    proc = subprocess.Popen([sys.executable, str(example)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the listener is running once the scaler hears of a count
    assert first.startswith(b"desired"), proc.stderr.read() if proc.stderr else first
    out, err = _signal(proc)
    assert proc.returncode == 0, err
    assert "session deleted: True" in out
