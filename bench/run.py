"""Run every benchmark and print one table; also write it as Markdown and JSON.

    python -m bench            # the full run (several minutes)
    python -m bench --quick    # a smoke run, a few minutes: checks that everything completes

Each row: measure, this client, the baseline (a ``requests.Session`` with urllib3
``Retry(total=3, backoff_factor=1, status_forcelist=(500, 502, 503, 504))`` and a loop that sleeps
1 s after an error, or a bare session with ``trust_env=False``), their ratio, the target, and
whether it was met. CPU and throughput figures are ``median [min–max]`` over several runs, with
the fake service in its own process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

from . import (
    client_state,
    herd,
    latency,
    many,
    outage,
    overhead,
    parsing,
    restarts,
    shutdown,
    soak,
    startup,
    throughput,
)
from ._util import Row, rows_markdown, rows_table

BENCHES = {"overhead": overhead.run, "startup": startup.run, "parsing": parsing.run, "throughput": throughput.run,
           "many": many.run, "outage": outage.run, "herd": herd.run, "restarts": restarts.run, "soak": soak.run,
           "shutdown": shutdown.run, "client_state": client_state.run, "latency": latency.run}
# Reported with pass/fail, never an exit status: end-to-end timings on a shared machine (issue 21).
REPORT_ONLY = {"latency"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs; only checks that each completes")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    parser.add_argument("--out", default="bench/results", help="path prefix for .md and .json")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    for name, bench in BENCHES.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        rows += bench(args.quick)
        timings[name] = time.perf_counter() - started
        print(f"{name}: {timings[name]:.1f}s", file=sys.stderr, flush=True)
    print(rows_table(rows))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (f"{'quick' if args.quick else 'full'} run on {platform.python_implementation()} "
              f"{platform.python_version()}, {platform.machine()}, {stamp}")
    Path(f"{args.out}.md").write_text(f"{header}\n\n{rows_markdown(rows)}")
    Path(f"{args.out}.json").write_text(json.dumps({"header": header, "seconds": timings,
                                                    "rows": [dataclasses.asdict(r) for r in rows]}, indent=1))
    missed = [r for r in rows if r.ok is False and r.bench not in REPORT_ONLY]
    if args.quick:
        return 0  # a smoke run checks completion, not numbers (a shared CI machine is noisy)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
