"""Soak: a listener polls the fake for many cycles with faults sprinkled in; is it steady?

Faults on a fixed schedule (by poll count): a message every 10 polls, a 5xx burst every 3000, a
hung poll every 11 000, an expired queue token every 5000, an evicted session every 7000. Waits
run on a FakeClock so the run is bounded by request speed, not by backoff. Measured after a
warm-up and at the end: resident memory, open descriptors, threads; and whether every message's
event reached the scaler exactly once with nothing left unacknowledged.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import Counter

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from ._util import Row, bench_main, process_footprint


def run(quick: bool = False, cycles: int = 100_000) -> list[Row]:
    cycles = 3_000 if quick else cycles
    clock = FakeClock(seed=21)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.0, max_log=2_000).start()
    client = sc.Client(fake.config_url, token=fake.token, clock=clock, timeout=(1.0, 1.0), long_poll_timeout=0.3)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="soak")).id
    stop = threading.Event()
    pushed: list[int] = []
    seen: Counter[int] = Counter()
    marks: dict[str, tuple[float, int, int]] = {}
    done_at: list[float] = []
    schedule = {"next": 0}

    def on_cycle() -> None:
        polls = fake.total("get_message")
        if polls < schedule["next"]:
            return
        schedule["next"] = polls + 1
        if polls % 10 == 0:
            pushed.append(len(pushed) + 1)
            fake.push_message(scale_set, [{"messageType": "JobStarted", "runnerRequestId": pushed[-1]}],
                              statistics={"totalAssignedJobs": len(pushed) % 7})
        if polls % 3000 == 1500:
            fake.inject("get_message", Fault.respond(503), Fault.respond(502), Fault.respond(500))
        if polls % 11000 == 5500:
            fake.inject("get_message", Fault.hang(2.0))
        if polls % 5000 == 2500:
            fake.expire_queue_tokens()
        if polls % 7000 == 3500:
            fake.evict_session(scale_set)
        if polls == min(2000, cycles // 4) and "start" not in marks:
            gc.collect()
            marks["start"] = process_footprint()
        if polls >= cycles and not done_at:
            done_at.append(time.perf_counter())
            stop.set()

    class Scaler:
        def handle_job_started(self, job: sc.JobStarted) -> None:
            seen[job.runner_request_id] += 1

        def handle_job_completed(self, job: sc.JobCompleted) -> None:
            return None

        def handle_desired_runner_count(self, count: int) -> int:
            on_cycle()
            return count

    listener = sc.Listener(client, sc.ListenerConfig(scale_set, 5, error_backoff=0.5))
    started = time.perf_counter()
    runner = threading.Thread(target=listener.run, args=(Scaler(), stop), daemon=True)
    runner.start()
    runner.join()
    fake.release_hangs()
    # drain what the last cycles pushed
    listener.run(Scaler(), until_idle=True)
    gc.collect()
    end = process_footprint()
    client.close()
    fake.close()
    start = marks.get("start", end)
    lost = [m for m in pushed if seen[m] == 0]
    repeated = [m for m, n in seen.items() if n > 1]
    elapsed = (done_at[0] if done_at else time.perf_counter()) - started
    polls_run = cycles
    return [
        Row("soak", f"resident memory growth over {polls_run} polls (MiB)", f"{end[0] - start[0]:+.2f}", "", "",
            "< 5 MiB", end[0] - start[0] < 5),
        Row("soak", "open file descriptors, start -> end", f"{start[1]} -> {end[1]}", "", "", "no growth",
            end[1] <= start[1]),
        Row("soak", "threads, start -> end", f"{start[2]} -> {end[2]}", "", "", "no growth", end[2] <= start[2]),
        Row("soak", f"messages lost / repeated of {len(pushed)}", f"{len(lost)} / {len(repeated)}", "", "", "0 / 0",
            not lost and not repeated),
        Row("soak", "polls per second (real time)", f"{polls_run / elapsed:.0f}", "", "", ""),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
