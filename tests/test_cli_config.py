"""``scaleset-listen --config``: many scale sets in one process, as real processes against the fake.

One client (one admin token for all), one health port whose /readyz names the scale set that is
not ready, one /metrics labelled per scale set; a scale set that fails for good is reported and
the others go on; SIGTERM stops them all and deletes every session. The file is checked at start
(one line naming the key, exit 2). The systemd and Kubernetes examples of the multi form run or
validate as written. Also --min-runners, --recreate-deleted and the gha_* namespace label.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import scaleset_client as sc
from scaleset_client import _cli, _cli_config
from scaleset_client._health_server import Metrics
from scaleset_client.testing import FakeActionsService

from .helpers import free_port, http_get

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)
HOUR = 3600.0
EXIT_BOUND = 15.0  # what a test waits for after SIGTERM; the target (5 s) is printed, not asserted
RECORDER = """import json, sys
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(event) + "\\n")
if event["event"] == "desired_runner_count":
    print(event["count"])
"""


# -- helpers ---------------------------------------------------------------------------------------
def _wait(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _recorder(tmp_path: Path, name: str) -> tuple[str, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    return f"{sys.executable} {script} {tmp_path / name}", tmp_path / name


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _start(fake: FakeActionsService, config: Path, port: int, *args: str,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "scaleset_client", "--url", fake.config_url, "--config", str(config),
            "--health-port", str(port), "--health-address", "127.0.0.1", *args]
    return subprocess.Popen(argv, env={**os.environ, "GITHUB_TOKEN": fake.token, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sigterm(proc: subprocess.Popen[bytes]) -> tuple[int, str, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the process did not exit after SIGTERM") from None
    return proc.returncode, err.decode("utf-8", "replace"), time.monotonic() - started


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _by_label(family: Any, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in family.samples}


@pytest.fixture
def fake() -> Iterator[FakeActionsService]:
    with FakeActionsService(long_poll_hold=HOUR) as service:  # SIGTERM must cut hour-long polls
        yield service


# -- running ---------------------------------------------------------------------------------------
def test_two_scale_sets_share_a_client_a_health_port_and_metrics_and_sigterm_deletes_both_sessions(
        fake: FakeActionsService, tmp_path: Path) -> None:
    setup = sc.Client(fake.config_url, token=fake.token)
    existing = setup.create_runner_scale_set(sc.RunnerScaleSet(name="gpu"))
    setup.close()
    command, events = _recorder(tmp_path, "events.jsonl")
    config = tmp_path / "listeners.toml"
    config.write_text(f"""
[[scale_sets]]
name = "linux"
labels = ["linux", "x64"]
min_runners = 1
max_runners = 4
state_file = "state/linux.json"
exec = "{command}"

[[scale_sets]]
id = {existing.id}
max_runners = 2
state_file = "state/gpu.json"
exec = "{command}"
""")
    (tmp_path / "state").mkdir()
    fake.clear_log()
    port = free_port()
    proc = _start(fake, config, port, env={"POD_NAMESPACE": "ci"})
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: http_get(base + "/readyz")[0] == 200)
        created = next(i for i in range(1, 10) if (fake.scale_set(i) or {}).get("name") == "linux")
        assert [lb["name"] for lb in (fake.scale_set(created) or {})["labels"]] == ["linux", "x64"]
        assert http_get(base + "/readyz") == (200, f"linux: ok\n{existing.id}: ok\n")
        assert http_get(base + "/livez")[0] == 200
        for scale_set_id, request_id in ((created, 11), (existing.id, 22)):
            fake.push_message(scale_set_id, [{"messageType": "JobStarted", "runnerRequestId": request_id}],
                              statistics={"totalAssignedJobs": 1})
        _wait(lambda: _by_label(_families(http_get(base + "/metrics")[1])["scaleset_jobs_started"], "scale_set")
              == {"linux": 1, str(existing.id): 1})
        families = _families(http_get(base + "/metrics")[1])
    finally:
        code, err, took = _sigterm(proc)
    print(f"SIGTERM to exit: {took:.2f}s")
    assert code == 0, err[-3000:]
    assert fake.session_of(created) is None and fake.session_of(existing.id) is None
    assert fake.count("delete_session") == 2
    assert fake.count("registration_token") == 1  # one client: one admin token for both
    started = {e["scale_set_id"]: e for e in _events(events) if e["event"] == "job_started"}
    assert started[created]["job"]["runner_request_id"] == 11 and started[created]["scale_set_name"] == "linux"
    assert started[created]["min_runners"] == 1 and started[created]["max_runners"] == 4
    assert started[existing.id]["job"]["runner_request_id"] == 22 and started[existing.id]["max_runners"] == 2
    assert _by_label(families["scaleset_listener_ready"], "scale_set") == {"linux": 1, str(existing.id): 1}
    assert _by_label(families["scaleset_jobs_started"], "scale_set") == {"linux": 1, str(existing.id): 1}
    assert [s.labels for s in families["scaleset_http_requests"].samples] == [{}]  # the client's: shared
    max_runners = {s.labels["name"]: (s.value, s.labels["namespace"]) for s in families["gha_max_runners"].samples}
    assert max_runners == {"linux": (4, "ci"), str(existing.id): (2, "ci")}
    assert _by_label(families["gha_min_runners"], "name") == {"linux": 1, str(existing.id): 0}
    assert _by_label(families["gha_started_jobs"], "name") == {"linux": 1, str(existing.id): 1}
    assert "[linux]" in err  # log lines say which scale set
    assert fake.token not in err


def test_a_scale_set_that_fails_for_good_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    with FakeActionsService(long_poll_hold=0.2) as fake:  # polls end soon: the deletion is seen on the next
        _fails_and_heals(fake, tmp_path)


def _fails_and_heals(fake: FakeActionsService, tmp_path: Path) -> None:
    setup = sc.Client(fake.config_url, token=fake.token)
    healing = setup.create_runner_scale_set(sc.RunnerScaleSet(name="healing"))
    setup.close()
    config = tmp_path / "listeners.json"
    config.write_text(json.dumps({"scale_sets": [{"id": 999}, {"name": "healing", "recreate_deleted": True}]}))
    port = free_port()
    proc = _start(fake, config, port, "--recreate-interval", "0")
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: [line.split(":")[1].strip() for line in http_get(base + "/readyz")[1].splitlines()]
              == ["ended", "ok"])
        status, body = http_get(base + "/readyz")
        assert status == 503 and "ScaleSetNotFoundError" in body.splitlines()[0], body
        assert http_get(base + "/livez")[0] == 200  # a restart would not cure it, and would stop the others
        assert fake.session_of(healing.id) is not None
        fake.delete_scale_set(healing.id)  # deleted on the service: recreate_deleted creates it again
        _wait(lambda: any((fake.scale_set(i) or {}).get("name") == "healing" and fake.session_of(i) is not None
                          for i in range(healing.id + 1, healing.id + 5)))
        assert proc.poll() is None
    finally:
        code, err, _ = _sigterm(proc)
    assert code == 3, err[-3000:]  # the most severe of the scale sets' codes
    assert "scale set 999 ended" in err and "created it again" in err
    left = [i for i in range(1, healing.id + 5) if fake.session_of(i) is not None]
    assert not left, f"sessions left on scale sets {left}; stderr: {err[-3000:]}"


# -- the file, checked at start ------------------------------------------------------------------
def _load(tmp_path: Path, text: str, *flags: str, name: str = "listeners.toml",
          environ: dict[str, str] | None = None) -> list[Any]:
    path = tmp_path / name
    path.write_text(text)
    args = _cli.parse_args(["--url", "https://github.com/o", "--config", str(path), *flags], environ or {})
    return _cli.load_config(str(path), args)


@pytest.mark.parametrize(("text", "flags", "needle"), [
    ('[[scale_sets]]\nname = "a"\nmax_runner = 3\n', [], "scale_sets[0] (a).max_runner: unknown key"),
    ('[[scale_sets]]\nname = "a"\nmax_runners = "ten"\n', [], "scale_sets[0] (a).max_runners: must be a whole"),
    ('[[scale_sets]]\nname = "a"\nmin_runners = 5\nmax_runners = 2\n', [], "(a).min_runners: 5 is above max"),
    ('[[scale_sets]]\nname = "a"\n[[scale_sets]]\nname = "A"\n', [], "scale_sets[1] (A).name: 'a' is also"),
    ('[[scale_sets]]\nid = 3\nstate_file = "s.json"\n[[scale_sets]]\nid = 4\nstate_file = "s.json"\n', [],
     "scale_sets[1].state_file"),
    ('[[scale_sets]]\nrunner_group = "x"\n', [], "scale_sets[0]: needs 'name' or 'id'"),
    ('[[scale_sets]]\nid = 0\n', [], "scale_sets[0].id: must be a whole number above 0"),
    ('[[scale_sets]]\nname = "a"\nrecreate_deleted = "yes"\n', [], "(a).recreate_deleted: must be true or false"),
    ('[[scale_sets]]\nname = "a"\nlabels = [1]\n', [], "(a).labels: must be a list of label names"),
    ('[[scale_sets]]\nname = "a"\nexec = "/no/such/scale.sh"\n', [], "(a).exec: /no/such/scale.sh does not exist"),
    ('[[scale_set]]\nname = "a"\n', [], "scale_set: unknown key"),
    ("scale_sets = []\n", [], "scale_sets: must be a non-empty list"),
    ('[[scale_sets]\nname = "a"\n', [], "not valid TOML"),
    ('[[scale_sets]]\nname = "a"\n', ["--scale-set-name", "b"], "--scale-set-name names one scale set"),
    ('[[scale_sets]]\nname = "a"\n', ["--state-file", "x.json"], "--state-file names one scale set"),
])
def test_a_config_error_is_one_line_naming_the_key(tmp_path: Path, text: str, flags: list[str],
                                                   needle: str) -> None:
    with pytest.raises(_cli.UsageError) as caught:
        _load(tmp_path, text, *flags)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


def test_json_works_too_and_a_key_left_out_takes_its_flags_value(tmp_path: Path) -> None:
    text = json.dumps({"scale_sets": [{"name": "a", "labels": "x, y", "state_file": "a.json"},
                                      {"id": 7, "max_runners": 1, "min_runners": 0, "recreate_deleted": False}]})
    a, b = _load(tmp_path, text, "--max-runners", "5", "--min-runners", "2", "--recreate-deleted",
                 name="listeners.json", environ={"SCALESET_RUNNER_GROUP": "big"})
    assert (a.key, a.scale_set_name, a.labels, a.max_runners, a.min_runners, a.recreate_deleted, a.runner_group) \
        == ("a", "a", "x,y", 5, 2, True, "big")
    assert a.state_file == str(tmp_path / "a.json")  # relative to the file
    assert (b.key, b.scale_set_id, b.max_runners, b.min_runners, b.recreate_deleted, b.state_file) \
        == ("7", 7, 1, 0, False, None)
    with pytest.raises(_cli.UsageError, match="not valid JSON"):
        _load(tmp_path, "{", name="broken.json")


def test_without_a_toml_reader_the_error_says_to_write_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(_cli_config, "_toml_reader", lambda: None)  # Python 3.10 without tomli
    with pytest.raises(_cli.UsageError, match=r"needs Python 3\.11 or the tomli package.*write the file as JSON"):
        _load(tmp_path, '[[scale_sets]]\nname = "a"\n')
    assert _load(tmp_path, '{"scale_sets": [{"name": "a"}]}', name="listeners.conf")[0].key == "a"


def test_the_new_flags_and_their_environment(tmp_path: Path) -> None:
    args = _cli.parse_args(["--url", "u"], {"SCALESET_RECREATE_DELETED": "true", "SCALESET_MIN_RUNNERS": "3"})
    assert args.recreate_deleted is True and args.min_runners == 3 and args.recreate_interval == 600.0
    assert _cli.parse_args(["--url", "u"], {"SCALESET_RECREATE_DELETED": "0"}).recreate_deleted is False
    with pytest.raises(_cli.UsageError, match="SCALESET_RECREATE_DELETED='maybe'"):
        _cli.parse_args(["--url", "u"], {"SCALESET_RECREATE_DELETED": "maybe"})
    run = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", "https://github.com/o",
                          "--min-runners", "4", "--max-runners", "2"], env={**os.environ, "GITHUB_TOKEN": "x"},
                         capture_output=True, timeout=30)
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "--min-runners=4 is above --max-runners (2)" in lines[0]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[scale_sets]]\nname = "a"\nmax_runners = -1\n')
    run = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", "https://github.com/o",
                          "--config", str(bad)], env={**os.environ, "GITHUB_TOKEN": "x"},
                         capture_output=True, timeout=30)
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "scale_sets[0] (a).max_runners" in lines[0], lines


def test_one_metrics_renders_several_scale_sets_without_a_duplicate_series() -> None:
    client = sc.Client("https://github.com/octo", token="ghp_unused")
    try:
        metrics = Metrics(namespace="ns")
        for name, set_id in (("a", 1), ("b", 2)):
            recorder = metrics.add_scale_set(name)
            recorder.listener = sc.Listener(client, sc.ListenerConfig(set_id, set_id, scale_set_name=name),
                                            metrics=recorder)
        with pytest.raises(ValueError):
            metrics.add_scale_set("a")
        text = metrics.render(None, client)
    finally:
        client.close()
    series = [line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert len(series) == len(set(series))
    families = _families(text)  # the parser refuses a family split in two
    assert _by_label(families["gha_max_runners"], "name") == {"a": 1, "b": 2}
    assert _by_label(families["scaleset_listener_ready"], "scale_set") == {"a": 0, "b": 0}


# -- the examples ----------------------------------------------------------------------------------
def _toml() -> Any:
    reader = _cli_config._toml_reader()
    if reader is None:
        pytest.skip("no TOML reader (Python 3.10 without tomli): the examples are TOML")
    return reader


def _unit(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_systemd_example_runs_as_written_and_stops_every_scale_set(tmp_path: Path) -> None:
    unit_path = ROOT / "examples/systemd/scaleset-listeners.service"
    unit = _unit(unit_path)
    assert float(unit["TimeoutStopSec"][0]) > 5 + 10 and unit["KillSignal"] == ["SIGTERM"]
    assert "2" in unit["RestartPreventExitStatus"][0].split()
    if shutil.which("systemd-analyze"):
        copy = tmp_path / "scaleset-listeners.service"
        copy.write_text(unit_path.read_text().replace("/usr/local/bin/scaleset-listen", f"{BIN}/scaleset-listen")
                        .replace("/etc/scaleset/listeners.env", str(tmp_path / "listeners.env")))
        (tmp_path / "listeners.env").write_text("GITHUB_TOKEN=x\n")
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True,
                                timeout=60)
        problems = [x for x in verify.stderr.decode().splitlines() if "scaleset-listeners" in x]
        assert problems == [], problems
    # The example file, with its state files and scaler moved here; the rest as written.
    example = _toml().loads((ROOT / "examples/systemd/listeners.toml").read_text())
    command, events = _recorder(tmp_path, "events.jsonl")
    for entry in example["scale_sets"]:
        assert entry["state_file"].startswith("/var/lib/scaleset-listener/")  # the unit's StateDirectory
        entry["state_file"] = str(tmp_path / Path(entry["state_file"]).name)
        entry["exec"] = command
    config = tmp_path / "listeners.json"
    config.write_text(json.dumps(example))
    port = free_port()
    argv = unit["ExecStart"][0].split()
    argv[0] = f"{BIN}/scaleset-listen"
    argv[argv.index("--config") + 1] = str(config)
    argv[argv.index("--health-port") + 1] = str(port)
    with FakeActionsService(long_poll_hold=HOUR) as fake:
        proc = subprocess.Popen(argv, env={"PATH": f"{BIN}:/usr/bin:/bin", "GITHUB_TOKEN": fake.token,
                                           "SCALESET_CONFIG_URL": fake.config_url}, stderr=subprocess.PIPE)
        try:
            _wait(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
            names = {(fake.scale_set(i) or {}).get("name"): i for i in (1, 2)}
            assert set(names) == {"linux-x64", "linux-arm64"}
            _wait(lambda: {e["scale_set_name"] for e in _events(events)} == set(names))  # a first count each
        finally:
            code, err, _ = _sigterm(proc)
        assert code == 0, err[-3000:]
        assert all(fake.session_of(i) is None for i in names.values()) and fake.count("delete_session") == 2
    assert all(json.loads(line)["level"] for line in err.splitlines() if line.startswith("{"))


def test_the_kubernetes_example_validates_and_its_config_loads() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = ROOT / "examples/kubernetes/listeners.yaml"
    validator = shutil.which("kubernetes-validate") or f"{BIN}/kubernetes-validate"
    run = subprocess.run([validator, "--strict", str(manifest)], capture_output=True, timeout=120)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    (workload,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > 5 + 10
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    namespace = next(e for e in container["env"] if e["name"] == "POD_NAMESPACE")
    assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # --config names the mounted ConfigMap's file; every state file is on the claimed volume.
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(config_path.parent)])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    text = config_map["data"][config_path.name]
    claims = [c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]]
    toml = _toml()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cli, "check_exec", lambda command, what="--exec": None)  # the image's scaler
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        args = _cli.parse_args(["--url", "https://github.com/o", *container["args"]], env)
        fake_path = Path("/nonexistent") / config_path.name
        patch.setattr(_cli_config, "_read_config", lambda path: toml.loads(text))
        entries = _cli.load_config(str(fake_path), args)
    assert len(entries) >= 2
    for entry in entries:
        mount = next(m for m in mounts if entry.state_file.startswith(m + "/"))
        assert mounts[mount] in claims, entry.state_file  # persistent, not an emptyDir


def test_a_config_run_without_a_health_port_serves_every_scale_set_and_reports_one_that_ends(
        tmp_path: Path) -> None:
    """Without ``--health-port`` nothing reads metrics, so none are kept; the run is the same:
    the scale set that fails for good is reported in the log and the exit code, the other drains."""
    with FakeActionsService(long_poll_hold=0.05) as fake:
        config = tmp_path / "listeners.json"
        config.write_text(json.dumps({"scale_sets": [{"id": 999}, {"name": "quiet"}]}))
        done = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", fake.config_url, "--config",
                               str(config), "--once"], env={**os.environ, "GITHUB_TOKEN": fake.token},
                              capture_output=True, timeout=60)
        err = done.stderr.decode("utf-8", "replace")
        assert done.returncode == 3, err[-3000:]
        assert "scale set 999 ended" in err
        quiet = [i for i in range(1, 10) if (fake.scale_set(i) or {}).get("name") == "quiet"]
        assert len(quiet) == 1 and fake.count("get_message") >= 1
        assert fake.count("delete_session") == 1 and fake.session_of(quiet[0]) is None  # drained, session deleted
