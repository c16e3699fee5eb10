"""The whole story on one screen, against the embedded fake service (no network, no token).

A listener runs a scaler that "starts" a runner (a JIT config) per assigned job and removes it
when the job completes. Meanwhile GitHub misbehaves: the queue token expires, the session is
evicted, and the broker goes down for a few seconds. The timeline shows breaker states and
recoveries; the run ends by checking that every job event reached the scaler exactly once.

    python examples/demo.py
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {text}", flush=True)


class Timeline(logging.Handler):
    """Shows the client's own recovery log lines that tell the story."""

    KEYS = ("renewing", "creating a new session", "session renewed", "acknowledge", "could not open")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(key in message for key in self.KEYS):
            say(f"  client: {message}")


class JitScaler:
    """Keeps one runner per assigned job: registers JIT runners up, removes them on completion."""

    def __init__(self, client: sc.Client, scale_set_id: int) -> None:
        self.client = client
        self.scale_set_id = scale_set_id
        self.runners: dict[str, int] = {}
        self.started: list[int] = []
        self.completed: list[int] = []
        self._serial = 0
        self._lock = threading.Lock()

    def handle_job_started(self, job: sc.JobStarted) -> None:
        self.started.append(job.runner_request_id)
        say(f"  scaler: job {job.runner_request_id} started on {job.runner_name}")

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        self.completed.append(job.runner_request_id)
        runner_id = self.runners.pop(job.runner_name, None)
        if runner_id is not None:
            try:
                self.client.remove_runner(runner_id)
            except sc.RunnerNotFoundError:
                pass  # ephemeral runners remove themselves; already gone is fine
        say(f"  scaler: job {job.runner_request_id} {job.result.lower()}; runner {job.runner_name} removed")

    def handle_desired_runner_count(self, count: int) -> int:
        with self._lock:
            while len(self.runners) < count:
                self._serial += 1
                name = f"demo-runner-{self._serial}"
                jit = self.client.generate_jit_runner_config(sc.JitRunnerSetting(name=name), self.scale_set_id)
                self.runners[name] = jit.runner.id
                say(f"  scaler: registered {name} (JIT config of {len(jit.encoded_jit_config)} bytes, never logged)")
            return len(self.runners)


def main() -> int:
    logging.getLogger("scaleset_client").addHandler(Timeline())
    logging.getLogger("scaleset_client").setLevel(logging.INFO)
    with FakeActionsService(long_poll_hold=0.2) as fake:
        resilience = sc.ResilienceConfig(
            retry=sc.RetryConfig(backoff_base=0.1, backoff_max=0.5),
            circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=3, open_duration=1.0, max_open_duration=2.0))
        client = sc.Client(fake.config_url, token=fake.token, timeout=(1.0, 3.0), long_poll_timeout=3.0,
                           resilience=resilience,
                           system_info=sc.SystemInfo(system="demo", version="1.0", subsystem="demo"))
        client.circuit_breakers.add_listener(
            lambda t: say(f"  breaker {t.operation_class}@{t.origin.rsplit(':', 1)[-1]}: {t.old} -> {t.new} "
                          f"({t.reason})"))
        with client:
            scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="demo-linux", runner_group_id=1))
            say(f"created scale set {scale_set.name!r} (id {scale_set.id})")
            scaler = JitScaler(client, scale_set.id)
            listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, max_runners=10, error_backoff=0.2,
                                                             error_backoff_max=1.0))
            stop = threading.Event()
            runner = threading.Thread(target=listener.run, args=(scaler, stop), daemon=True)
            runner.start()
            jobs: list[int] = []

            def wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
                deadline = time.monotonic() + timeout
                while not condition():  # type: ignore[operator]
                    if time.monotonic() > deadline:
                        raise SystemExit(f"timed out waiting for {what}")
                    time.sleep(0.05)

            def run_jobs(count: int, label: str) -> None:
                batch = [fake.queue_job(scale_set.id) for _ in range(count)]
                jobs.extend(batch)
                say(f"GitHub: {label}: queued jobs {batch}")
                wait_for(lambda: len(scaler.runners) >= 1, "runners")
                names = list(scaler.runners)
                for i, rid in enumerate(batch):
                    fake.start_job(rid, names[i % len(names)])
                wait_for(lambda: all(r in scaler.started for r in batch), "job starts")
                for rid in batch:
                    fake.complete_job(rid, "Succeeded")
                wait_for(lambda: all(r in scaler.completed for r in batch), "job completions")

            wait_for(lambda: listener.health().ready, "the listener to be ready")
            say("listener ready")
            run_jobs(3, "a normal day")
            say("GitHub: the queue token expires (it does, about hourly)")
            fake.expire_queue_tokens()
            run_jobs(2, "after the token expired")
            say("GitHub: the session is evicted server side")
            fake.evict_session(scale_set.id)
            run_jobs(1, "after the eviction")
            say("GitHub: the broker goes down for 3 seconds")
            fake.stop("broker")
            time.sleep(1.5)
            health = listener.health()
            say(f"health during the outage: live={health.live} ready={health.ready} ({health.reason})")
            threading.Timer(1.5, lambda: (fake.start_server("broker"), say("GitHub: the broker is back"))).start()
            run_jobs(2, "queued during the outage")
            stop.set()
            runner.join(timeout=10)

            events = Counter(scaler.started) + Counter(scaler.completed)
            missing = sorted(j for j in jobs if events[j] < 2)
            repeated = sorted(j for j in jobs if events[j] > 2)
            unacked = fake.unacked(scale_set.id)
            say(f"jobs {len(jobs)}: started {len(scaler.started)}, completed {len(scaler.completed)}, "
                f"missing {missing}, repeated {repeated}, unacknowledged messages {unacked}")
            if missing or repeated or unacked:
                say("FAILED: something was lost or handled twice")
                return 1
            say("OK: nothing lost, nothing handled twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
