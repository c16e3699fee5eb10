"""Stop a listener cleanly on SIGTERM/SIGINT, as Kubernetes and systemd send them.

    python examples/stop_on_signal.py            # runs against the embedded fake; Ctrl-C to stop

``Listener.stop()`` is safe in a signal handler: the long poll in flight is interrupted, the
session is deleted (within 1.5 s) and ``run()`` returns; a message your scaler had not finished
is left unacknowledged and comes again to the next listener.
"""

from __future__ import annotations

import signal
import threading

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService


class PrintScaler:
    def handle_job_started(self, job: sc.JobStarted) -> None:
        print("started", job.runner_request_id, flush=True)

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        print("completed", job.runner_request_id, flush=True)

    def handle_desired_runner_count(self, count: int) -> int:
        print("desired", count, flush=True)
        return count


def main(stop_after: float | None = None) -> None:
    with FakeActionsService(long_poll_hold=50) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64"))
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, max_runners=10))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: listener.stop())
        if stop_after is not None:  # for a scripted run: stop as a signal would
            threading.Timer(stop_after, listener.stop).start()
        fake.queue_job(scale_set.id)
        listener.run(PrintScaler())
        print("stopped; session deleted:", fake.session_of(scale_set.id) is None)
        client.close()


if __name__ == "__main__":
    main()
