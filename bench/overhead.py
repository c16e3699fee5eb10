"""Per-call cost of the Client over a bare ``requests.Session`` sending the same request.

Both call ``GET …/agents?agentName=x`` on the fake Actions service over loopback keep-alive, with
identical headers, in interleaved blocks (so machine noise hits both alike). Reported: median
and p99 per call, the ratio, and throughput with 32 threads sharing one client or one session.

    python -m bench.overhead
    python -m bench.overhead --quick
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable

import requests

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

from ._util import Row, median, pct, rows_table


def _pair(fake: FakeActionsService, pool: int) -> tuple[sc.Client, Callable[[], object], Callable[[], object]]:
    client = sc.Client(fake.config_url, token=fake.token, pool_maxsize=pool)
    client.get_runner_by_name("x")
    admin = client._admin.peek()
    assert admin is not None
    url = f"{admin.service_url}_apis/distributedtask/pools/0/agents?agentName=x&api-version=6.0-preview"
    bare = requests.Session()
    bare.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=pool))
    headers = {"User-Agent": client.system_info.user_agent(), "Content-Type": "application/json",
               "Authorization": f"Bearer {admin.token.reveal()}"}

    def plain() -> object:
        response = bare.get(url, headers=headers, timeout=(5.05, 30))
        response.raise_for_status()
        return response.json()

    return client, (lambda: client.get_runner_by_name("x")), plain


def per_call(calls: int, blocks: int) -> tuple[list[float], list[float]]:
    with FakeActionsService() as fake:
        client, ours, plain = _pair(fake, 4)
        mine: list[float] = []
        base: list[float] = []
        for block in range(blocks):
            order = [(ours, mine), (plain, base)] if block % 2 == 0 else [(plain, base), (ours, mine)]
            for fn, sink in order:
                for _ in range(calls // blocks):
                    t0 = time.perf_counter()
                    fn()
                    sink.append(time.perf_counter() - t0)
        client.close()
    return mine, base


def throughput(threads: int, seconds: float) -> tuple[float, float]:
    with FakeActionsService() as fake:
        client, ours, plain = _pair(fake, threads + 1)
        results = []
        for fn in (ours, plain, ours, plain):
            done = [0] * threads
            stop = time.perf_counter() + seconds

            def work(i: int, fn: Callable[[], object] = fn, done: list[int] = done, stop: float = stop) -> None:
                while time.perf_counter() < stop:
                    fn()
                    done[i] += 1

            pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            results.append(sum(done) / seconds)
        client.close()
    return (results[0] + results[2]) / 2, (results[1] + results[3]) / 2


def run(quick: bool = False) -> list[Row]:
    calls, blocks, threads, seconds = (600, 6, 8, 0.5) if quick else (4000, 20, 32, 3.0)
    mine, base = per_call(calls, blocks)
    ours_tp, base_tp = throughput(threads, seconds)
    median_ratio = median(mine) / median(base)
    return [
        Row("overhead", f"median per call, µs ({calls} calls, interleaved)", f"{median(mine) * 1e6:.0f}",
            f"{median(base) * 1e6:.0f}", f"{median_ratio:.3f}", "<= 1.10", median_ratio <= 1.10),
        Row("overhead", "p99 per call, µs", f"{pct(mine, 0.99) * 1e6:.0f}", f"{pct(base, 0.99) * 1e6:.0f}",
            f"{pct(mine, 0.99) / pct(base, 0.99):.3f}", ""),
        Row("overhead", f"calls per second, {threads} threads", f"{ours_tp:.0f}", f"{base_tp:.0f}",
            f"{ours_tp / base_tp:.3f}", ">= 0.95", ours_tp / base_tp >= 0.95),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(rows_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
