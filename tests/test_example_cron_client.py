"""examples/cron/ensure_scale_set.py, run as cron runs it: a new process each time, against the fake.

What is observed: the script's exit code and output, the scale set as the fake holds it, and the
requests the fake counts (a run after an outage opened the breaker sends nothing to the service).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "cron" / "ensure_scale_set.py"


def cron_run(fake: FakeActionsService, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "GITHUB_TOKEN": fake.token, "SCALESET_CONFIG_URL": fake.config_url,
               "SCALESET_NAME": "linux-x64", "SCALESET_CLIENT_STATE": str(tmp_path / "client.json"), **env}
    return subprocess.run([sys.executable, str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60)


def test_it_creates_the_scale_set_then_leaves_it_then_mends_only_its_labels(tmp_path: Path) -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        first = cron_run(fake, tmp_path, SCALESET_LABELS="linux, x64")
        assert first.returncode == 0, first.stderr
        assert "created scale set 'linux-x64'" in first.stdout
        set_id = int(first.stdout.rsplit("(id ", 1)[1].split(")")[0])
        created = fake.scale_set(set_id)
        assert created is not None and sorted(label["name"] for label in created["labels"]) == ["linux", "x64"]
        with sc.Client(fake.config_url, token=fake.token) as operator:  # someone set a setting by hand
            operator.update_runner_scale_set(set_id, sc.RunnerScaleSet(
                runner_setting=sc.RunnerSetting(disable_update=True)))
        settings = fake.scale_set(set_id)["RunnerSetting"]  # type: ignore[index]
        assert settings == {"disableUpdate": True}

        second = cron_run(fake, tmp_path, SCALESET_LABELS="x64,linux")
        assert second.returncode == 0 and "is as it should be" in second.stdout
        assert fake.count("update_runner_scale_set") == 1 and fake.count("create_runner_scale_set") == 1

        third = cron_run(fake, tmp_path, SCALESET_LABELS="linux,x64,gpu")
        assert third.returncode == 0 and "updated the labels" in third.stdout
        updated = fake.scale_set(set_id)
        assert updated is not None and sorted(label["name"] for label in updated["labels"]) == ["gpu", "linux", "x64"]
        assert updated["RunnerSetting"] == settings  # a partial update: the setting survives
        assert fake.token not in first.stdout + first.stderr + third.stdout + third.stderr


def test_after_a_run_opened_the_breaker_the_next_run_skips_without_a_request(tmp_path: Path) -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        fake.inject_always("actions", Fault.error(503))
        down = cron_run(fake, tmp_path)
        assert down.returncode == 4, down.stderr
        reached = fake.count(server="actions")
        assert reached == 3  # three attempts, then the breaker opened (failure_threshold=3)

        skipped = cron_run(fake, tmp_path)
        assert skipped.returncode == 4 and "skipped" in skipped.stderr
        assert fake.count(server="actions") == reached  # the state file kept it off the down service

        elsewhere = cron_run(fake, tmp_path, SCALESET_CLIENT_STATE=str(tmp_path / "other.json"))
        assert elsewhere.returncode == 4
        assert fake.count(server="actions") > reached  # without that file a run goes to the service again
