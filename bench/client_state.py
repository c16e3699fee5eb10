"""What ``Client(state_file=...)`` buys a cron script, and what it costs.

1. Cron runs of a plain script (a new process each) against an Actions service answering 503:
   requests that reach the service over ``--runs`` runs, without and with a state file. Each run
   calls until its breaker opens (3 failures, one attempt per call, a 300 s break).
2. A storm of breaker transitions from one thread for 3 s: how many times the file is replaced.
3. One write (read-modify-write under the lock, fsync, rename): median and max of 50.

    python -m bench.client_state            # 10 cron runs each way
    python -m bench.client_state --runs 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault

RUN = """
import sys
import scaleset_client as sc
url, token, state = sys.argv[1:4]
resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1),
                                 circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, open_duration=300.0,
                                                                         max_open_duration=600.0))
with sc.Client(url, token=token, resilience=resilience, state_file=state or None) as client:
    for _ in range(8):
        try:
            client.get_runner_group_by_name("default")
            break
        except sc.CircuitOpenError:
            break
        except sc.ScalesetError:
            pass
"""


def cron_requests(runs: int, with_state: bool) -> int:
    """Requests reaching the failing service over ``runs`` cron runs."""
    with tempfile.TemporaryDirectory() as tmp, FakeActionsService(long_poll_hold=0.05) as fake:
        script = Path(tmp) / "run.py"
        script.write_text(RUN)
        state = str(Path(tmp) / "state.json") if with_state else ""
        fake.inject_always("actions", Fault.error(503))
        for _ in range(runs):
            run = subprocess.run([sys.executable, str(script), fake.config_url, fake.token, state],
                                 capture_output=True, timeout=60)
            if run.returncode != 0:
                raise SystemExit(run.stderr.decode()[-2000:])
        return fake.count(server="actions")


def storm(path: str, seconds: float = 3.0) -> tuple[int, int]:
    """(transitions, file replacements) for ``seconds`` of transitions as fast as one thread goes."""
    replaced = [0]
    real_replace = os.replace

    def counting(src: str, dst: str) -> None:
        if os.fspath(dst) == os.path.realpath(path):
            replaced[0] += 1
        real_replace(src, dst)

    os.replace = counting  # type: ignore[assignment]
    try:
        client = sc.Client("https://github.com/org", token="ghp_bench", state_file=path)
        breakers = client.circuit_breakers
        breakers.get("https://api.example:443", "admin")
        count, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            breakers.force_open("https://api.example:443")
            breakers.reset("https://api.example:443")
            count += 2
        client.close()
    finally:
        os.replace = real_replace
    return count, replaced[0]


def write_times(path: str) -> list[float]:
    client = sc.Client("https://github.com/org", token="ghp_bench", state_file=path)
    for i in range(5):
        client.circuit_breakers.get(f"https://h{i}.example:443", "admin")
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        client.resilience_store.flush()
        samples.append(time.perf_counter() - start)
    client.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    without, with_state = cron_requests(args.runs, False), cron_requests(args.runs, True)
    with tempfile.TemporaryDirectory() as tmp:
        transitions, writes = storm(str(Path(tmp) / "storm.json"))
        samples = write_times(str(Path(tmp) / "write.json"))
    print(json.dumps({
        "cron_runs": args.runs, "requests_without_state_file": without, "requests_with_state_file": with_state,
        "storm_transitions": transitions, "storm_file_writes": writes,
        "write_ms_median": round(statistics.median(samples) * 1e3, 2), "write_ms_max": round(max(samples) * 1e3, 2),
    }))


if __name__ == "__main__":
    main()
