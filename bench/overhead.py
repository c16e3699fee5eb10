"""Per-call cost of the Client over a bare ``requests.Session`` sending the same request.

Both call ``GET …/agents?agentName=x`` on the fake Actions service over loopback keep-alive, with
identical headers, in interleaved blocks (so machine noise hits both alike). Reported: median
and p99 per call, the ratio, and throughput with 32 threads sharing one client or one session.

    python -m bench.overhead
    python -m bench.overhead --calls 2000 --threads 32
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

from ._util import median, pct, table


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    mine, base = per_call(args.calls, args.blocks)
    ours_tp, base_tp = throughput(args.threads, args.seconds)
    ratio = median(mine) / median(base)
    rows = [("measure", "scaleset_client", "bare requests.Session", "ratio", "target"),
            ("median per call (µs)", f"{median(mine) * 1e6:.0f}", f"{median(base) * 1e6:.0f}", f"{ratio:.3f}",
             "<= 1.10"),
            ("p99 per call (µs)", f"{pct(mine, 0.99) * 1e6:.0f}", f"{pct(base, 0.99) * 1e6:.0f}",
             f"{pct(mine, 0.99) / pct(base, 0.99):.3f}", ""),
            (f"calls/s with {args.threads} threads", f"{ours_tp:.0f}", f"{base_tp:.0f}",
             f"{ours_tp / base_tp:.3f}", ">= 0.95")]
    print(f"{args.calls} calls per client in {args.blocks} interleaved blocks, loopback keep-alive\n")
    print(table(rows))
    ok = ratio <= 1.10 and ours_tp / base_tp >= 0.95
    print("\nresult:", "targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
