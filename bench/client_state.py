"""What ``Client(state_file=...)`` buys a cron script, and what it costs.

1. Cron runs of a plain script (a new process each) against an Actions service answering 503:
   requests that reach the service over ``--runs`` runs, without and with a state file. Each run
   calls until its breaker opens (3 failures, one attempt per call, a 300 s break).
2. A storm of breaker transitions from one thread for 3 s: how many times the file is replaced.
3. One write (read-modify-write under the lock, fsync, rename): median [min–max] of 50.

    python -m bench.client_state            # 10 cron runs each way
    python -m bench.client_state --quick    # 3 runs each way, a 1 s storm
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scaleset_client as sc
from scaleset_client._state_owner import owner_for
from scaleset_client.testing import FakeActionsService, Fault

from ._util import Row, bench_main, ratio, spread

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


def write_times(path: str, count: int = 50) -> list[float]:
    client = sc.Client("https://github.com/org", token="ghp_bench", state_file=path)
    owner = owner_for(path)  # the file's one writer in this process, which the client's section joined
    for i in range(5):
        client.circuit_breakers.get(f"https://h{i}.example:443", "admin")
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        owner.flush()  # one whole read-modify-write of the file, as the writer thread does
        samples.append(time.perf_counter() - start)
    client.close()
    return samples


def run(quick: bool = False) -> list[Row]:
    """The bench's rows: cron requests with a state file against the same script without one (the
    fairest baseline: same client, same settings, only the file differs), then the writer's cost."""
    runs, seconds, writes = (3, 1.0, 20) if quick else (10, 3.0, 50)
    logging.disable(logging.WARNING)
    try:
        without, with_state = cron_requests(runs, False), cron_requests(runs, True)
        with tempfile.TemporaryDirectory() as tmp:
            transitions, replaced = storm(str(Path(tmp) / "storm.json"), seconds)
            samples = write_times(str(Path(tmp) / "write.json"), writes)
    finally:
        logging.disable(logging.NOTSET)
    return [
        Row("client_state", f"503 service: requests over {runs} cron runs, with a state file", str(with_state),
            str(without), ratio(with_state, without), "<= 1/3", without > 0 and with_state <= without / 3),
        Row("client_state", f"file writes in a {seconds:.0f} s storm of breaker transitions", str(replaced),
            f"{transitions} transitions", "", f"<= {seconds + 2:.0f}", replaced <= seconds + 2),
        Row("client_state", f"one state write, ms over {writes}", spread([t * 1e3 for t in samples]), "", "", ""),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
