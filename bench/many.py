"""Many scale sets in one process: 200 listeners sharing one Client, one thread each.

Only the public API: ``sc.Listener(client, sc.ListenerConfig(id, 5)).run(scaler, stop=event)``
in 200 threads, against the fake service in its own process holding each empty poll ``hold``
seconds (the real service holds ~50 s). After every listener is polling, over ``window``
seconds: this process's resident memory per listener (against before they started), its CPU
per idle listener per minute, and the TCP connections the fake *accepted* per poll (counted at
the server); then the time from setting the stop event until every ``run()`` has returned.
Then a burst: one message for every scale set at once (the scaler takes 0.5 s per started job,
so the connections wait in the pool together), and the connections accepted per poll around it.
Repeated with the Client's default connection pool and with ``pool_maxsize`` above the number
of listeners; a small unreported warm-up first.

    python -m bench.many
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import scaleset_client as sc

from ._remote import RemoteFake
from ._util import NoOpScaler, Row, bench_main, process_footprint, spread


class _WorkingScaler(NoOpScaler):
    """Takes half a second per started job, like a scaler that starts a runner."""

    def handle_job_started(self, job: object) -> None:
        time.sleep(0.5)


class _PoolFull(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings (and hides them)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1


def one_run(listeners: int, hold: float, window: float, pool_maxsize: int | None) -> dict[str, float]:
    pool_log = logging.getLogger("urllib3.connectionpool")
    counter = _PoolFull()
    pool_log.addHandler(counter)
    pool_log.propagate = False
    try:
        with RemoteFake(long_poll_hold=hold) as fake:
            kwargs = {} if pool_maxsize is None else {"pool_maxsize": pool_maxsize}
            client = sc.Client(fake.config_url, token=fake.token, **kwargs)  # type: ignore[arg-type]
            ids = [client.create_runner_scale_set(sc.RunnerScaleSet(name=f"set-{i}")).id for i in range(listeners)]
            rss0, _, threads0 = process_footprint()
            stop = threading.Event()
            errors: list[BaseException] = []

            def listen(scale_set_id: int) -> None:
                try:
                    sc.Listener(client, sc.ListenerConfig(scale_set_id, 5)).run(_WorkingScaler(), stop=stop)
                except BaseException as exc:  # reported below; a bench must not hide a crash
                    errors.append(exc)

            pool = [threading.Thread(target=listen, args=(i,), daemon=True) for i in ids]
            for t in pool:
                t.start()
            deadline = time.monotonic() + 60 + 2 * hold
            while fake.call("total", "get_message") < 2 * listeners and time.monotonic() < deadline:
                time.sleep(0.2)  # every listener has a session and has polled at least once, most twice
            conns0 = fake.call("connections", "broker") + fake.call("connections", "actions")
            polls0 = fake.call("total", "get_message")
            full0 = counter.count
            cpu0, t0 = time.process_time(), time.monotonic()
            time.sleep(window)
            cpu1, t1 = time.process_time(), time.monotonic()
            polls1 = fake.call("total", "get_message")
            conns1 = fake.call("connections", "broker") + fake.call("connections", "actions")
            full1 = counter.count
            rss1, _, threads1 = process_footprint()
            # A burst: a message for every scale set at once; each scaler works 0.5 s on it while its
            # connection waits in the pool, so many connections are idle together.
            acks0 = fake.call("total", "delete_message")
            for scale_set_id in ids:
                fake.call("push_message", scale_set_id, [{"messageType": "JobStarted", "runnerRequestId": 1}],
                          statistics={"totalAssignedJobs": 1})
            while fake.call("total", "delete_message") - acks0 < listeners and time.monotonic() < deadline + 60:
                time.sleep(0.1)
            time.sleep(1.0)  # the next polls are out
            polls2 = fake.call("total", "get_message")
            conns2 = fake.call("connections", "broker") + fake.call("connections", "actions")
            full2 = counter.count
            stop_started = time.monotonic()
            stop.set()
            for t in pool:
                t.join(120)
            stopped = time.monotonic() - stop_started
            alive = sum(t.is_alive() for t in pool)
            client.close()
        if errors:
            raise RuntimeError(f"{len(errors)} listeners failed; first: {errors[0]!r}")
        polls = max(1, polls1 - polls0)
        return {
            "mem_kib": (rss1 - rss0) * 1024 / listeners,
            "cpu_ms_min": (cpu1 - cpu0) * 1e3 / listeners / ((t1 - t0) / 60),
            "conns_per_poll": (conns1 - conns0) / polls,
            "polls": polls,
            "stop_s": stopped,
            "alive": alive,
            "threads": threads1 - threads0,
            "discards_per_poll": (full1 - full0) / polls,
            "burst_conns_per_poll": (conns2 - conns1) / max(1, polls2 - polls1),
            "burst_discards": full2 - full1,
        }
    finally:
        pool_log.removeHandler(counter)
        pool_log.propagate = True


def run(quick: bool = False) -> list[Row]:
    listeners, hold, window, runs = (40, 1.0, 1.5, 1) if quick else (200, 5.0, 10.0, 5)
    rows: list[Row] = []
    one_run(10, hold, 1.0, None)  # warm-up: lazily loaded modules and first allocations off the books
    for label, pool in (("default pool", None), (f"pool_maxsize={listeners + 16}", listeners + 16)):
        results = [one_run(listeners, hold, window, pool) for _ in range(runs)]

        def col(key: str, results: list[dict[str, float]] = results) -> list[float]:
            return [r[key] for r in results]

        what = f"{listeners} listeners, one Client, {label}, hold {hold:g}s, {runs} runs"
        rows += [
            Row("many", f"resident memory per listener, KiB ({what})", spread(col("mem_kib"), "{:.0f}")),
            Row("many", "CPU per idle listener per minute, ms", spread(col("cpu_ms_min"), "{:.1f}")),
            Row("many", "new TCP connections per poll (accepted at the fake)", spread(col("conns_per_poll"), "{:.2f}"),
                target="0", ok=max(col("conns_per_poll")) < 0.01),
            Row("many", "urllib3 'pool is full' discards per idle poll", spread(col("discards_per_poll"), "{:.2f}")),
            Row("many", "new TCP connections per poll around a burst (a message to every scale set, "
                "0.5 s of scaler work)",
                spread(col("burst_conns_per_poll"), "{:.2f}"), target="0",
                ok=max(col("burst_conns_per_poll")) < 0.01),
            Row("many", "urllib3 'pool is full' discards in the burst", spread(col("burst_discards"), "{:.0f}")),
            Row("many", "seconds from stop.set() until every run() returned",
                spread(col("stop_s"), "{:.2f}") + f" (still running: {int(max(col('alive')))})"),
        ]
    return rows


if __name__ == "__main__":
    sys.exit(bench_main(run))
