"""What a durable cursor costs: listener throughput with a state file against without one.

Both run side by side in one process against one fake service (no long-poll hold), alternating
(without, with) so drift on a shared machine hits both; each pair gives one ratio. With a state
file every message costs one ``fdatasync`` of the cursor record before its ack (and one unsynced
progress write per job event); the JSON document is written only when it changes.

    python -m bench.state_cost            # 7 pairs of 2000 messages
    python -m bench.state_cost --quick    # 3 pairs of 300 messages

``rows(quick)`` returns the figures as dicts for ``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

TARGET = 0.9  # with a state file, at least this fraction of the throughput without


class _NoOpScaler:
    """Does nothing, so the listener and the state file are all that is measured."""

    def handle_job_started(self, job: sc.JobStarted) -> None:
        """Nothing to do."""

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        """Nothing to do."""

    def handle_desired_runner_count(self, count: int) -> int:
        """Pretend to have the runners."""
        return count


def _one_run(fake: FakeActionsService, client: sc.Client, name: str, count: int, state_file: str | None) -> float:
    """Messages per second for one listener run over ``count`` queued messages."""
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name=name))
    for i in range(count):
        fake.push_message(scale_set.id, [{"messageType": "JobStarted", "runnerRequestId": i + 1}],
                          statistics={"totalAssignedJobs": 1})
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5, state_file=state_file))
    started = time.perf_counter()
    listener.run(_NoOpScaler(), until_idle=True)
    elapsed = time.perf_counter() - started
    if listener.handled_messages != count or fake.unacked(scale_set.id):
        raise RuntimeError(f"run {name}: handled {listener.handled_messages} of {count}")
    return listener.handled_messages / elapsed


def measure(pairs: int, count: int, directory: str | None = None) -> dict[str, Any]:
    """Run ``pairs`` (without, with) pairs; return the rates and the ratio per pair."""
    workdir = tempfile.mkdtemp(prefix="scaleset-state-cost-", dir=directory)
    without: list[float] = []
    with_state: list[float] = []
    try:
        with FakeActionsService(long_poll_hold=0.0) as fake:
            client = sc.Client(fake.config_url, token=fake.token)
            try:
                _one_run(fake, client, "warm-up", min(count, 200), os.path.join(workdir, "warm.json"))
                for pair in range(pairs):
                    without.append(_one_run(fake, client, f"plain-{pair}", count, None))
                    with_state.append(_one_run(fake, client, f"state-{pair}", count,
                                               os.path.join(workdir, f"state-{pair}.json")))
            finally:
                client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = [w / p for w, p in zip(with_state, without, strict=True)]
    return {"pairs": pairs, "messages": count, "without": without, "with": with_state, "ratios": ratios,
            "directory": directory or tempfile.gettempdir()}


def rows(quick: bool = False) -> list[dict[str, Any]]:
    """The figures for the benchmark table: one row, the median ratio with its range."""
    pairs, count = (3, 300) if quick else (7, 2000)
    result = measure(pairs, count)
    ratios = result["ratios"]
    median = statistics.median(ratios)
    return [{
        "bench": "state_cost",
        "measure": f"throughput with a state file / without ({pairs} pairs of {count} messages, no-op scaler)",
        "ours": f"{statistics.median(result['with']):.0f}/s with",
        "baseline": f"{statistics.median(result['without']):.0f}/s without",
        "ratio": f"{median:.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})",
        "target": f">= {TARGET}x",
        "ok": median >= TARGET,
        "raw": result,
    }]


def main(argv: list[str] | None = None) -> int:
    """Print each pair and the summary; exit 1 when the median misses the target (full runs only)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", default=None, help="where the state files go (default: the temp directory)")
    args = parser.parse_args(argv)
    pairs, count = (3, 300) if args.quick else (7, 2000)
    result = measure(pairs, count, args.dir)
    for i, (p, w, r) in enumerate(zip(result["without"], result["with"], result["ratios"], strict=True)):
        print(f"pair {i}: without {p:7.0f}/s  with {w:7.0f}/s  ratio {r:.3f}")
    ratios = result["ratios"]
    median = statistics.median(ratios)
    print(f"state file in {result['directory']}: median ratio {median:.3f} (range {min(ratios):.3f}-"
          f"{max(ratios):.3f}) over {pairs} pairs of {count} messages; target >= {TARGET}")
    return 0 if args.quick or median >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
