"""Every Python example in README.md, CONTRIBUTING.md and docs/*.md runs against the fake service.

Each ```python block is one test. It runs in its own namespace, in a temporary working directory,
inside a ``Deadline`` (so a hang becomes an error, not a stuck suite), with a fresh
``FakeActionsService`` in strict mode (a request the real service would refuse fails the block)
and these names defined, as a reader who followed the getting-started page has them:

    sc          the scaleset_client module
    fake        the FakeActionsService;  url, token: its configuration URL and token
    client      a Client on the fake;    scale_set: a scale set "linux-x64" created there
    MyScaler    a scaler that records what it is handed (started, completed, counts)

The placeholders ``"https://github.com/my-org"`` and ``"ghp_..."`` in a block stand for the fake's
URL and token. A block that defines ``test_*`` functions has them called (fixture arguments
``scaleset_fake`` and ``scaleset_fake_client`` are the fake and the client). Markers on the line
before a block (see tools/check_docs.py): ``<!-- example: not run: REASON -->`` skips it;
``<!-- example: runs until stopped -->`` runs it in a 1 s scope, whose end must be what stops it.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_URL = '"https://github.com/my-org"'
PLACEHOLDER_TOKEN = '"ghp_..."'
RUN_BOUND = 12.0  # seconds any example may take
STOPPED_BOUND = 1.0  # the scope that ends a "runs until stopped" example


def _check_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "tools" / "check_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_docs", module)
    spec.loader.exec_module(module)
    return module


CHECK_DOCS = _check_docs()
BLOCKS, MARKER_PROBLEMS = CHECK_DOCS.all_blocks()


class MyScaler:
    """The scaler the examples assume: records what it is handed, keeps as many runners as asked."""

    def __init__(self) -> None:
        self.started: list[sc.JobStarted] = []
        self.completed: list[sc.JobCompleted] = []
        self.counts: list[int] = []

    def handle_job_started(self, job: sc.JobStarted) -> None:
        self.started.append(job)

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        self.completed.append(job)

    def handle_desired_runner_count(self, count: int) -> int:
        self.counts.append(count)
        return count


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_the_examples_are_found_and_markers_are_well_formed() -> None:
    assert MARKER_PROBLEMS == []
    paths = {b.path for b in BLOCKS}
    assert "README.md" in paths and any(p.startswith("docs/") for p in paths)
    assert all(b.reason for b in BLOCKS if b.mode == "skip")


def test_the_readme_keeps_the_demo_and_test_commands_first() -> None:
    """CI runs the README's test command: the first two shell commands stay the demo and the tests."""
    text = (ROOT / "README.md").read_text()
    commands = []
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() in ("```sh", "```bash", "```shell", "```console") if not inside else False
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    assert commands[:2] == [
        "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/python examples/demo.py",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest",
    ]


def _substitute(code: str, fake: FakeActionsService) -> str:
    return code.replace(PLACEHOLDER_URL, repr(fake.config_url)).replace(PLACEHOLDER_TOKEN, repr(fake.token))


def _run_tests_defined(namespace: dict[str, Any], fake: FakeActionsService, client: sc.Client) -> None:
    fixtures = {"scaleset_fake": fake, "scaleset_fake_client": client}
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            params = inspect.signature(value).parameters
            value(**{p: fixtures[p] for p in params})


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode != "skip"], ids=lambda b: b.name)
def test_example_runs_against_the_fake(block: Any, in_tmp: Path) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    threads_before = set(threading.enumerate())
    started = time.monotonic()
    with FakeActionsService(long_poll_hold=0.5, strict=True) as fake:
        client = sc.Client(fake.config_url, token=fake.token, long_poll_timeout=5.0)
        namespace: dict[str, Any] = {
            "__name__": "docs_example", "sc": sc, "fake": fake, "url": fake.config_url, "token": fake.token,
            "client": client, "MyScaler": MyScaler,
            "scale_set": client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1)),
        }
        code = compile(_substitute(block.code, fake), block.name, "exec")
        try:
            if block.mode == "until stopped":
                with sc.Deadline(STOPPED_BOUND):
                    try:
                        exec(code, namespace)
                    except (sc.DeadlineExceededError, sc.CallCancelledError):
                        pass  # the scope ended it, as it should
                assert time.monotonic() - started < STOPPED_BOUND + 5, "did not end with its scope"
            else:
                with sc.Deadline(RUN_BOUND):
                    exec(code, namespace)
                    _run_tests_defined(namespace, fake, client)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            client.close()
            for thread in set(threading.enumerate()) - threads_before:
                if not thread.daemon:
                    thread.join(timeout=5)
                    assert not thread.is_alive(), f"the example left thread {thread.name} running"
    assert time.monotonic() - started < RUN_BOUND + 5
