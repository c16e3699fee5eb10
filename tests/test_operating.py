"""The operator's side, followed literally: the examples against the standalone fake, the metrics
through a real parser, CLI input errors, the control API, the pytest plugin, typed errors."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client._cli import options_markdown
from scaleset_client._errors import RunnerGroupNotFoundError, ScaleSetExistsError
from scaleset_client.testing import FakeActionsService

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)
RECORDER = """import json, sys
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(event) + "\\n")
if event["event"] == "desired_runner_count":
    print(event["count"])
"""


def call(base: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def standalone() -> Iterator[dict[str, Any]]:
    """``python -m scaleset_client.testing`` in its own process, as an operator would run it."""
    proc = subprocess.Popen([sys.executable, "-m", "scaleset_client.testing", "--long-poll-hold", "0.1",
                             "--scale-set", "linux-x64", "--strict"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode() if proc.stderr else ""
    info = json.loads(line)
    yield info
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()  # strict: no request the service would refuse


def recorder(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    return f"{sys.executable} {script} {tmp_path / 'events.jsonl'}", tmp_path / "events.jsonl"


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# -- item 1: the cron wrapper --------------------------------------------------------------------
def test_the_cron_wrapper_works_with_a_plain_env_file(standalone: dict[str, Any], tmp_path: Path) -> None:
    control, set_id = standalone["control_url"], standalone["scale_sets"]["linux-x64"]
    command, events = recorder(tmp_path)
    env_file = tmp_path / "env"
    env_file.write_text(f"GITHUB_TOKEN={standalone['token']}\nSCALESET_CONFIG_URL={standalone['config_url']}\n"
                        f"SCALESET_STATE_FILE={tmp_path / 'state.json'}\nSCALESET_EXEC='{command}'\n"
                        "SCALESET_START_JITTER=0\n")
    request_id = call(control, "POST", f"/scale-sets/{set_id}/jobs", {})["request_id"]
    call(control, "POST", f"/jobs/{request_id}/start", {"runner_name": "r1"})
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "SCALESET_ENV_FILE": str(env_file), "HOME": str(tmp_path)}
    run = subprocess.run(["sh", str(ROOT / "examples/cron/listen-once.sh")], env=env, capture_output=True,
                         timeout=90)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    started = [e for e in events_of(events) if e["event"] == "job_started"]
    assert [e["job"]["runner_request_id"] for e in started] == [request_id]
    assert started[0]["message_id"] > 0 and started[0]["event_index"] == 0
    assert call(control, "GET", f"/scale-sets/{set_id}/unacked") == {"unacked": []}
    assert standalone["token"] not in run.stderr.decode()


# -- the systemd unit ----------------------------------------------------------------------------
def _unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (ROOT / "examples/systemd/scaleset-listener@.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_systemd_unit_runs_as_written_and_stops_within_its_timeout(standalone: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    unit = _unit()
    assert float(unit["TimeoutStopSec"][0]) > 5 + 10  # the exit bound plus the default --exec-grace
    assert "2" in unit["RestartPreventExitStatus"][0].split() and unit["KillSignal"] == ["SIGTERM"]
    if shutil.which("systemd-analyze"):
        unit_file = tmp_path / "scaleset-listener@.service"
        text = (ROOT / "examples/systemd/scaleset-listener@.service").read_text()
        unit_file.write_text(text.replace("/usr/local/bin/scaleset-listen", f"{BIN}/scaleset-listen").replace(
            "/etc/scaleset/%i.env", str(tmp_path / "%i.env")))
        (tmp_path / "linux-x64.env").write_text("GITHUB_TOKEN=x\n")
        instance = tmp_path / "scaleset-listener@linux-x64.service"
        instance.symlink_to(unit_file)
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True,
                                timeout=60)
        problems = [x for x in verify.stderr.decode().splitlines() if "scaleset-listener" in x]
        assert problems == [], problems
    # Run ExecStart with the unit's environment, as systemd would, then stop it as systemd would.
    instance_name = "linux-x64"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "GITHUB_TOKEN": standalone["token"],
           "SCALESET_CONFIG_URL": standalone["config_url"]}
    for assignment in unit["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value.replace("%i", instance_name)
    env["SCALESET_STATE_FILE"] = str(tmp_path / "state" / "state.json")  # StateDirectory= in a test
    port = free_port()
    argv = unit["ExecStart"][0].split()
    argv[0] = f"{BIN}/scaleset-listen"
    proc = subprocess.Popen([*argv, "--health-port", str(port), "--health-address", "127.0.0.1"], env=env,
                            stderr=subprocess.PIPE)
    wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=float(unit["TimeoutStopSec"][0]))
    assert proc.returncode == 0, err.decode()[-2000:]
    assert time.monotonic() - started < float(unit["TimeoutStopSec"][0])


def _status(url: str) -> int:
    try:
        return get(url)[0]
    except OSError:
        return 0


# -- item 2: Kubernetes --------------------------------------------------------------------------
def test_the_kubernetes_manifests_pass_a_schema_validator_and_keep_the_rules() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = ROOT / "examples/kubernetes/listener.yaml"
    validator = shutil.which("kubernetes-validate") or f"{BIN}/kubernetes-validate"
    run = subprocess.run([validator, "--strict", str(manifest)], capture_output=True, timeout=120)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    (workload,) = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > 5 + 10
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("startupProbe", "livenessProbe"):  # a restart never follows from an outage
        assert container[probe]["httpGet"]["path"] == "/livez"
    assert "pip install" not in json.dumps(container)
    state = next(e["value"] for e in container["env"] if e["name"] == "SCALESET_STATE_FILE")
    mount = next(m for m in container["volumeMounts"] if state.startswith(m["mountPath"]))
    claims = [c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])]
    assert mount["name"] in claims  # persistent, not an emptyDir
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}" in dockerfile and "COPY scaleset_client" in dockerfile


# -- items 3, 4, 5: the CLI ----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--log-level", "verbose"], {}, "--log-level='verbose'"),
    ([], {"SCALESET_MAX_RUNNERS": "ten"}, "SCALESET_MAX_RUNNERS='ten'"),
    (["--exec", "/no/such/scale.sh"], {}, "does not exist"),
    (["--exec", __file__], {}, "is not executable"),
    (["--duration", "soon"], {}, "--duration='soon'"),
])
def test_input_errors_exit_2_with_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    run = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", "https://github.com/o", *args],
                         env={**os.environ, "GITHUB_TOKEN": "x", **env}, capture_output=True, timeout=30)
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and needle in lines[0], lines


def test_a_health_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", "https://github.com/o",
                              "--health-port", str(port), "--health-address", "127.0.0.1"],
                             env={**os.environ, "GITHUB_TOKEN": "x"}, capture_output=True, timeout=30)
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and f"--health-port {port}" in lines[0], lines


def test_help_and_the_docs_table_come_from_one_source() -> None:
    """``--help`` and the CLI page's table (docs/cli.md asks the docs hooks for
    ``options_markdown()``) are both generated from the CLI's one options table."""
    run = subprocess.run([sys.executable, "-m", "scaleset_client", "--help"], capture_output=True, timeout=30)
    text = run.stdout.decode()
    assert run.returncode == 0 and "``" not in text
    assert "<!-- generated: cli-options -->" in (ROOT / "docs" / "cli.md").read_text()
    table = options_markdown()
    for name in ("--token", "--standby-timeout", "GH_TOKEN", "GITHUB_CONFIG_URL", "SCALESET_NAME",
                 "SCALESET_STATE_FILE", "GITHUB_APP_PRIVATE_KEY", "SCALESET_ALLOW_HTTP", "--config"):
        assert name in text and name in table, name
    # every environment variable the CLI reads is in the table
    source = "".join(path.read_text() for path in (ROOT / "scaleset_client").glob("_cli*.py"))
    for name in set(re.findall(r'"((?:GITHUB|GH|SCALESET)_[A-Z_]+)"', source)):
        assert f"`{name}`" in table, name


def test_a_scaler_failing_on_every_message_shows_on_readyz_and_in_metrics(tmp_path: Path) -> None:
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho broken >&2\nexit 1\n")
    failing.chmod(0o755)
    with FakeActionsService(long_poll_hold=0.1) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="failing"))
        client.close()
        for i in range(2):
            fake.push_message(scale_set.id, [{"messageType": "JobStarted", "runnerRequestId": i + 1}],
                              statistics={"totalAssignedJobs": 1})
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "scaleset_client", "--url", fake.config_url,
                                 "--scale-set-id", str(scale_set.id), "--exec", str(failing),
                                 "--health-port", str(port), "--health-address", "127.0.0.1"],
                                env={**os.environ, "GITHUB_TOKEN": fake.token}, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: "scaler failing" in _body(f"http://127.0.0.1:{port}/readyz"), timeout=60)
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503
            metrics = _families(get(f"http://127.0.0.1:{port}/metrics")[1])
            assert metrics["scaleset_scaler_failures"] >= 3 and metrics["scaleset_messages_poisoned"] >= 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


def _body(url: str) -> str:
    try:
        return get(url)[1]
    except OSError:
        return ""


def _families(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: sum(s.value for s in f.samples) for f in text_string_to_metric_families(text)}


def test_metrics_parse_and_pass_promtool(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with FakeActionsService(long_poll_hold=0.1) as fake:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "scaleset_client", "--url", fake.config_url,
                                 "--scale-set-name", "metrics", "--health-port", str(port),
                                 "--health-address", "127.0.0.1"],
                                env={**os.environ, "GITHUB_TOKEN": fake.token}, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200)
            fake.inject("get_message", sc.testing.Fault.respond(503), times=2)
            wait_for(lambda: _families(get(f"http://127.0.0.1:{port}/metrics")[1])
                     .get("scaleset_http_retries", 0) >= 1)
            text = get(f"http://127.0.0.1:{port}/metrics")[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in families:
        assert f"# HELP {name if families[name].type != 'counter' else name + '_total'} " in text, name
    assert families["scaleset_build_info"].samples[0].labels["version"] == sc.__version__
    assert families["scaleset_http_requests"].type == "counter"
    states = families["scaleset_circuit_state"].samples
    assert states and all("state" not in s.labels and s.value in (0, 1, 2, 3) for s in states)
    lines = text.splitlines()
    metric_names = {re.split(r"[{ ]", x)[0] for x in lines if x and not x.startswith("#")}
    for name in metric_names:
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text, name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: checked with prometheus_client's parser and HELP/TYPE only")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()


def test_the_skip_message_shows_a_readable_time(tmp_path: Path) -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="down"))
        origin = client.origin(fake.queue_url)
        client.close()
        state = tmp_path / "state.json"
        state.write_text(json.dumps({"version": 1, "scale_set_id": scale_set.id, "cursor": 0, "resilience": {
            "version": 1, "saved_wall": time.time(), "gates": {}, "budget": {},
            "breakers": [{"origin": origin, "operation_class": "long_poll", "state": "open", "open_remaining": 50,
                          "saved_wall": time.time(), "reopen_count": 3, "window": []}]}}))
        run = subprocess.run([sys.executable, "-m", "scaleset_client", "--url", fake.config_url, "--scale-set-id",
                              str(scale_set.id), "--state-file", str(state), "--duration", "5"],
                             env={**os.environ, "GITHUB_TOKEN": fake.token}, capture_output=True, timeout=60)
    assert run.returncode == 4
    assert re.search(rb"next attempt at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+s\)", run.stderr), run.stderr


# -- item 6: the standalone fake and the pytest plugin --------------------------------------------
def test_the_control_api_drives_faults_servers_jobs_and_the_log(standalone: dict[str, Any]) -> None:
    control, set_id = standalone["control_url"], standalone["scale_sets"]["linux-x64"]
    client = sc.Client(standalone["config_url"], token=standalone["token"], long_poll_timeout=5.0,
                       timeout=(2.0, 5.0))
    try:
        call(control, "POST", "/faults", {"target": "get_runner_scale_set_by_id",
                                          "fault": {"kind": "respond", "status": 404}, "times": 1})
        with pytest.raises(sc.ScaleSetNotFoundError):
            client.get_runner_scale_set_by_id(set_id)
        assert client.get_runner_scale_set_by_id(set_id) is not None
        call(control, "POST", "/servers/github/stop")
        assert call(control, "GET", "/")["servers"]["github"].startswith("http://127.0.0.1:")
        call(control, "POST", "/servers/github/start")
        request_id = call(control, "POST", f"/scale-sets/{set_id}/jobs", {})["request_id"]
        call(control, "POST", f"/jobs/{request_id}/start", {"runner_name": "r"})
        call(control, "POST", f"/jobs/{request_id}/complete", {"result": "Failed"})
        assert len(call(control, "GET", f"/scale-sets/{set_id}/unacked")["unacked"]) == 3
        logged = call(control, "GET", "/requests?operation=get_runner_scale_set_by_id")["requests"]
        assert [r["fault"] for r in logged] == ["respond", ""]
    finally:
        client.close()


def test_the_pytest_plugin_gives_users_a_fake(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "import scaleset_client as sc\n"
        "def test_mine(scaleset_fake, scaleset_fake_client):\n"
        "    made = scaleset_fake_client.create_runner_scale_set(sc.RunnerScaleSet(name='u'))\n"
        "    assert scaleset_fake.scale_set(made.id)['name'] == 'u'\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout.decode()[-2000:]


# -- item 10: typed errors, http, docstrings -----------------------------------------------------
def test_a_missing_runner_group_and_a_taken_name_have_their_own_errors(client: sc.Client) -> None:
    with pytest.raises(RunnerGroupNotFoundError) as missing:
        client.get_runner_group_by_name("nope")
    assert "status" not in str(missing.value) and "nope" in str(missing.value)
    client.create_runner_scale_set(sc.RunnerScaleSet(name="taken"))
    with pytest.raises(ScaleSetExistsError) as taken:
        client.create_runner_scale_set(sc.RunnerScaleSet(name="taken"))
    assert isinstance(taken.value, sc.APIError) and taken.value.status == 409


@pytest.mark.parametrize("url", ["http://github.com/org", "http://www.github.com/org", "http://acme.ghe.com/org"])
def test_plain_http_to_github_is_refused(url: str) -> None:
    with pytest.raises(sc.ConfigError, match="https"):
        sc.Client(url, token="ghp_x")


def test_plain_http_to_ghes_is_an_opt_in() -> None:
    from scaleset_client._urls import parse_config_url

    with pytest.raises(sc.ConfigError, match="SCALESET_ALLOW_HTTP"):
        parse_config_url("http://ghes.example/org", environ={})
    assert parse_config_url("http://ghes.example/org", environ={"SCALESET_ALLOW_HTTP": "1"}).scheme == "http"


def _public_defs(path: Path) -> Iterator[tuple[str, ast.AST]]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                        yield f"{node.name}.{item.name}", item


# models.py's wire methods are being rewritten on another branch (issue 14): their docstrings
# come with that rewrite. Only these exact names are excused; a new one fails the test.
_PENDING_ELSEWHERE = {f"scaleset_client/_models.py:{name}" for name in (
    "Label.from_wire", "Label.to_wire", "RunnerSetting.from_wire", "RunnerSetting.to_wire",
    "RunnerScaleSetStatistic.from_wire", "RunnerScaleSetStatistic.to_wire", "RunnerScaleSet.from_wire",
    "RunnerGroup.from_wire", "RunnerScaleSetSession.from_wire", "RunnerScaleSetMessage.from_wire",
    "JitRunnerSetting.to_wire", "RunnerReference.from_wire", "JitRunnerConfig.from_wire",
    "SystemInfo.with_scale_set")}


def test_every_public_name_has_a_docstring_and_no_internal_ids() -> None:
    missing = []
    for path in sorted((ROOT / "scaleset_client").rglob("*.py")):
        if path.name.startswith("_") and path.name not in ("__init__.py", "__main__.py"):
            continue
        for name, node in _public_defs(path):
            if not ast.get_docstring(node):  # type: ignore[arg-type]
                missing.append(f"{path.relative_to(ROOT)}:{name}")
    assert sorted(set(missing) - _PENDING_ELSEWHERE) == []
    for path in [*(ROOT / "scaleset_client").rglob("*.py"), ROOT / "CHANGELOG.md", ROOT / "README.md"]:
        assert not re.search(r"\bFM-\d+", path.read_text()), path
