"""Per-call cost of the Client over a fair bare ``requests.Session`` sending the identical request.

The fake service runs in its own process (``RemoteFake``), so only the client's work is counted.
The bare session has ``trust_env=False`` (no per-call proxy and ``.netrc`` environment lookups,
which the client also skips) and sends the same URL, headers and timeout, then parses the JSON.
Calls alternate one by one (ours, bare, bare, ours, ...) so machine noise hits both alike.

Reported over ``runs`` repetitions, as the median with its range: CPU per call (this process's
CPU time, median per run), and calls per second with 32 threads sharing one client or one session.

    python -m bench.overhead
    python -m bench.overhead --quick
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import requests

import scaleset_client as sc

from ._remote import RemoteFake
from ._util import Row, bench_main, median, spread

_Call = Callable[[], object]


def _pair(fake: RemoteFake, pool: int, what: str = "runner") -> tuple[sc.Client, _Call, _Call, Callable[[], None]]:
    """Ours and the bare call: ``get_runner_by_name`` (what="runner") or ``get_runner_scale_set``
    of a scale set with two labels, statistics and a timestamp (what="scale set": a model parsed)."""
    client = sc.Client(fake.config_url, token=fake.token, pool_maxsize=pool)
    client.get_runner_by_name("x")
    admin = client._admin.peek()
    assert admin is not None
    url = f"{admin.service_url}_apis/distributedtask/pools/0/agents?agentName=x&api-version=6.0-preview"
    ours: _Call = lambda: client.get_runner_by_name("x")  # noqa: E731
    if what == "scale set":
        if client.get_runner_scale_set(1, "overhead") is None:
            client.create_runner_scale_set(sc.RunnerScaleSet(name="overhead", runner_group_id=1,
                                                             labels=[sc.Label("overhead"), sc.Label("linux")]))
        url = (f"{admin.service_url}_apis/runtime/runnerscalesets?runnerGroupId=1&name=overhead"
               f"&api-version=6.0-preview")
        ours = lambda: client.get_runner_scale_set(1, "overhead")  # noqa: E731
    bare = requests.Session()
    bare.trust_env = False
    bare.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=pool))
    headers = {"User-Agent": client.system_info.user_agent(), "Content-Type": "application/json",
               "Authorization": f"Bearer {admin.token.reveal()}"}
    timeout = client._timeout

    def plain() -> object:
        response = bare.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        response.raise_for_status()
        return response.json()

    def close() -> None:
        client.close()
        bare.close()

    plain()
    ours()
    return client, ours, plain, close


def per_call_cpu(fake: RemoteFake, calls: int, what: str = "runner") -> tuple[float, float]:
    """Median CPU seconds per call (ours, bare), alternating call by call."""
    _, ours, plain, close = _pair(fake, 4, what)
    cpu = time.process_time
    mine: list[float] = []
    base: list[float] = []
    try:
        for i in range(calls):
            pairs = ((ours, mine), (plain, base)) if i % 2 == 0 else ((plain, base), (ours, mine))
            for fn, sink in pairs:
                t0 = cpu()
                fn()
                sink.append(cpu() - t0)
    finally:
        close()
    return median(mine), median(base)


def throughput(fake: RemoteFake, threads: int, seconds: float, blocks: int) -> tuple[float, float]:
    """Calls per second with ``threads`` threads sharing one client, then one bare session.

    The same threads switch between the two every ``seconds / blocks`` (ours, bare, bare, ours,
    ...), so a burst of load from elsewhere on the machine lands on both alike. A call counts for
    the side that was current when it started."""
    _, ours, plain, close = _pair(fake, threads)
    fns = (ours, plain)
    counts = [0, 0]
    elapsed = [0.0, 0.0]
    side = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            current = side[0]
            fns[current]()
            with lock:
                counts[current] += 1

    pool = [threading.Thread(target=work) for _ in range(threads)]
    try:
        for t in pool:
            t.start()
        time.sleep(0.2)  # warm: every thread has a pooled connection
        with lock:
            counts[:] = [0, 0]
        for block in range(2 * blocks):
            current = (0, 1, 1, 0)[block % 4]
            side[0] = current
            started = time.perf_counter()
            time.sleep(seconds / (2 * blocks))
            elapsed[current] += time.perf_counter() - started
    finally:
        stop.set()
        for t in pool:
            t.join()
        close()
    return counts[0] / elapsed[0], counts[1] / elapsed[1]


def run(quick: bool = False) -> list[Row]:
    runs, calls, threads, seconds, blocks = (3, 300, 8, 1.0, 4) if quick else (7, 2000, 32, 6.0, 12)
    cpu_ours, cpu_base, cpu_ratio, tp_ours, tp_base, tp_ratio = [], [], [], [], [], []
    ss_ours: list[float] = []
    ss_base: list[float] = []
    ss_ratio: list[float] = []
    with RemoteFake() as fake:
        for _ in range(runs):
            a, b = per_call_cpu(fake, calls)
            cpu_ours.append(a * 1e6)
            cpu_base.append(b * 1e6)
            cpu_ratio.append(a / b)
            a, b = per_call_cpu(fake, calls, "scale set")
            ss_ours.append(a * 1e6)
            ss_base.append(b * 1e6)
            ss_ratio.append(a / b)
            x, y = throughput(fake, threads, seconds, blocks)
            tp_ours.append(x)
            tp_base.append(y)
            tp_ratio.append(x / y)
    r_cpu, r_tp = median(cpu_ratio), median(tp_ratio)
    return [
        Row("overhead", f"CPU per call, µs ({runs} runs x {calls} alternating calls)", spread(cpu_ours, "{:.0f}"),
            spread(cpu_base, "{:.0f}") + " (bare, trust_env=False)", spread(cpu_ratio, "{:.3f}"), "<= 1.05",
            r_cpu <= 1.05),
        Row("overhead", f"CPU per get_runner_scale_set call, µs ({runs} runs x {calls} alternating calls)",
            spread(ss_ours, "{:.0f}"), spread(ss_base, "{:.0f}") + " (bare, trust_env=False, dicts)",
            spread(ss_ratio, "{:.3f}"), "<= 1.02", median(ss_ratio) <= 1.02),
        Row("overhead", f"calls per second, {threads} threads ({runs} runs x {seconds:g} s, alternating)",
            spread(tp_ours, "{:.0f}"), spread(tp_base, "{:.0f}"), spread(tp_ratio, "{:.3f}"), ">= 1.0",
            r_tp >= 1.0),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
