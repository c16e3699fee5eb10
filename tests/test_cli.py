"""``scaleset-listen`` as a real process against the fake service: cron runs, SIGKILL, probes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

from .helpers import cli, env, free_port, http_get

RECORDER = """
import json, sys
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(event) + "\\n")
if event["event"] == "desired_runner_count":
    print(event["count"])
"""


@pytest.fixture
def live_fake() -> Iterator[FakeActionsService]:
    with FakeActionsService(long_poll_hold=0.1) as service:
        yield service


def recorder(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    events = tmp_path / "events.jsonl"
    return f"{sys.executable} {script} {events}", events


def started_ids(events: Path) -> list[int]:
    if not events.exists():
        return []
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [e["job"]["runner_request_id"] for e in lines if e["event"] == "job_started"]


def test_once_creates_the_scale_set_drains_the_queue_and_exits_zero(live_fake: FakeActionsService,
                                                                    tmp_path: Path) -> None:
    command, events = recorder(tmp_path)
    done = subprocess.run(cli(live_fake, "--scale-set-name", "cron-set", "--labels", "linux,x64", "--once",
                              "--exec", command), env=env(live_fake), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    scale_set = live_fake.scale_set(1)
    assert scale_set is not None and [lb["name"] for lb in scale_set["labels"]] == ["linux", "x64"]
    for i in range(3):
        live_fake.push_message(1, [{"messageType": "JobStarted", "runnerRequestId": 100 + i}],
                               statistics={"totalAssignedJobs": i})
    done = subprocess.run(cli(live_fake, "--scale-set-name", "cron-set", "--once", "--exec", command,
                              "--log-format", "json"), env=env(live_fake), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert started_ids(events) == [100, 101, 102] and live_fake.unacked(1) == []
    assert all(json.loads(line)["level"] for line in done.stderr.decode().splitlines() if line.startswith("{"))
    assert live_fake.token not in done.stderr.decode()


def test_exit_codes_for_usage_rejected_credentials_and_skipped_runs(live_fake: FakeActionsService,
                                                                     tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "scaleset_client"], capture_output=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k != "SCALESET_CONFIG_URL"})
    assert run.returncode == 2 and b"--url" in run.stderr
    run = subprocess.run(cli(live_fake, "--scale-set-name", "x", "--once"), env=env(live_fake, "ghp_wrong"),
                         capture_output=True, timeout=60)
    assert run.returncode == 3 and b"Bad credentials" in run.stderr and b"ghp_wrong" not in run.stderr
    # A state file that says the broker is down for another 50 s: a 5 s run sends nothing.
    client = sc.Client(live_fake.config_url, token=live_fake.token)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="down"))
    client.close()
    origin = client.origin(live_fake.queue_url)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0, "resilience": {
        "version": 1, "saved_wall": time.time(), "gates": {}, "budget": {},
        "breakers": [{"origin": origin, "operation_class": "long_poll", "state": "open", "open_remaining": 50,
                      "saved_wall": time.time(), "reopen_count": 3, "window": []}]}}))
    live_fake.clear_log()
    run = subprocess.run(cli(live_fake, "--scale-set-id", str(scale_set.id), "--state-file", str(state),
                             "--duration", "5"), env=env(live_fake), capture_output=True, timeout=60)
    assert run.returncode == 4 and b"skipped" in run.stderr
    assert live_fake.count(server="broker") == 0 and live_fake.count(server="actions") == 0


def test_sigkill_mid_stream_then_restart_loses_nothing(live_fake: FakeActionsService, tmp_path: Path) -> None:
    client = sc.Client(live_fake.config_url, token=live_fake.token)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="killed"))
    client.close()
    total = 30
    for i in range(1, total + 1):
        live_fake.push_message(scale_set.id, [{"messageType": "JobStarted", "runnerRequestId": i}],
                               statistics={"totalAssignedJobs": i})
    command, events = recorder(tmp_path)
    state = tmp_path / "state.json"
    args = ["--scale-set-id", str(scale_set.id), "--state-file", str(state), "--exec", command]
    proc = subprocess.Popen(cli(live_fake, *args), env=env(live_fake), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(started_ids(events)) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert 8 <= len(started_ids(events)) < total
    done = subprocess.run(cli(live_fake, *args, "--once"), env=env(live_fake), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    seen = started_ids(events)
    repeats = [i for i, n in Counter(seen).items() if n > 1]
    assert set(seen) == set(range(1, total + 1)) and len(repeats) <= 1
    assert live_fake.unacked(scale_set.id) == []


def test_health_endpoints_and_graceful_sigterm(live_fake: FakeActionsService) -> None:
    port = free_port()
    proc = subprocess.Popen(cli(live_fake, "--scale-set-name", "probed", "--health-port", str(port),
                                "--health-address", "127.0.0.1"), env=env(live_fake), stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline:
        try:
            status, _ = http_get(base + "/readyz")
        except OSError:
            status = 0
        if status == 200:
            break
        time.sleep(0.05)
    assert status == 200
    assert http_get(base + "/livez") == (200, "ok\n")
    code, metrics = http_get(base + "/metrics")
    assert code == 200 and "scaleset_listener_ready 1" in metrics and "# TYPE scaleset_circuit_open gauge" in metrics
    assert http_get(base + "/nope")[0] == 404
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert live_fake.session_of(1) is None  # the session was deleted on the way out
