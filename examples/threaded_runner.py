"""A legacy threaded runner: one Client shared by a listener thread and a pool of worker threads.

The listener thread turns queue messages into work items; worker threads register JIT runners
and remove finished ones through the same Client; an operator thread lowers the capacity with
``set_max_runners``. Runs against the embedded fake service:

    python examples/threaded_runner.py
"""

from __future__ import annotations

import queue
import threading
import time

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

WORKERS = 8


class QueueingScaler:
    """Hands work to the pool instead of doing it on the listener thread."""

    def __init__(self, work: queue.Queue[tuple[str, object]]) -> None:
        self.work = work

    def handle_job_started(self, job: sc.JobStarted) -> None:
        self.work.put(("started", job.runner_name))

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        self.work.put(("completed", job.runner_name))

    def handle_desired_runner_count(self, count: int) -> int:
        self.work.put(("desired", count))
        return count


def main() -> None:
    with FakeActionsService(long_poll_hold=0.2) as fake:
        client = sc.Client(fake.config_url, token=fake.token, pool_maxsize=WORKERS + 2)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="threaded", runner_group_id=1))
        work: queue.Queue[tuple[str, object]] = queue.Queue()
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, max_runners=20))
        stop = threading.Event()
        registered: list[str] = []
        pending: set[str] = set()
        lock = threading.Lock()

        def worker(n: int) -> None:
            while not stop.is_set():
                try:
                    kind, value = work.get(timeout=0.2)
                except queue.Empty:
                    continue
                if kind == "desired":
                    while True:
                        with lock:  # register only what is missing; many workers share the gap
                            if len(registered) + len(pending) >= int(str(value)):
                                break
                            name = f"runner-{len(registered) + len(pending) + 1}"
                            pending.add(name)
                        client.generate_jit_runner_config(sc.JitRunnerSetting(name=name), scale_set.id)
                        with lock:
                            pending.discard(name)
                            registered.append(name)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
        threads.append(threading.Thread(target=listener.run, args=(QueueingScaler(work), stop), daemon=True))
        for t in threads:
            t.start()
        for _ in range(10):
            fake.queue_job(scale_set.id)  # acquired by the listener; assignments raise the desired count
        threading.Timer(0.5, listener.set_max_runners, args=(5,)).start()  # an operator lowers capacity
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        print(f"registered {len(registered)} runners from {WORKERS} threads over one client; "
              f"capacity advertised last: {fake.capacities[-1]}; admin token renewals: "
              f"{client.admin_token_refreshes}; HTTP attempts: {client.attempts_sent}")
        client.close()


if __name__ == "__main__":
    main()
