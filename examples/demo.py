"""The whole story on one screen, against the embedded fake service (no network, no token).

Creates a scale set, opens a message session, receives and acknowledges job messages,
survives an expired queue token and a broker outage, generates a JIT runner config, and
checks that every job event was seen exactly once.

    python examples/demo.py
"""

from __future__ import annotations

import sys
import time

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> int:
    with FakeActionsService(long_poll_hold=0.2) as fake:
        retry = sc.RetryConfig(backoff_base=0.05, backoff_max=0.2)
        breaker = sc.CircuitBreakerConfig(failure_threshold=3, open_duration=0.5, max_open_duration=1.0)
        client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, 5.0), long_poll_timeout=5.0,
                           system_info=sc.SystemInfo(system="demo", version="1.0", subsystem="demo"),
                           resilience=sc.ResilienceConfig(retry=retry, circuit_breaker=breaker))
        client.circuit_breakers.add_listener(
            lambda t: say(f"breaker {t.operation_class} @ {t.origin}: {t.old} -> {t.new} ({t.reason})"))
        with client:
            scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="demo-linux", runner_group_id=1))
            say(f"created scale set {scale_set.name!r} id={scale_set.id} labels={[lb.name for lb in scale_set.labels]}")
            with client.message_session(scale_set.id, owner="demo-host") as session:
                say(f"session {session.session.session_id} open, queue at {session.session.message_queue_url}")
                queued = [fake.queue_job(scale_set.id) for _ in range(3)]
                say(f"GitHub queued jobs {queued}")
                seen: list[int] = []
                last_id = 0

                def drain(label: str) -> None:
                    nonlocal last_id
                    while True:
                        try:
                            message = session.get_message(last_id, max_capacity=10)
                        except sc.ScalesetError as exc:
                            say(f"{label}: {type(exc).__name__}: {exc}")
                            time.sleep(0.3)
                            continue
                        if message is None:
                            return
                        ids = [j.runner_request_id for j in message.job_available_messages]
                        acquired = session.acquire_jobs(ids) if ids else []
                        seen.extend(acquired)
                        session.delete_message(message.message_id)
                        last_id = message.message_id
                        assigned = message.statistics.total_assigned_jobs if message.statistics else "?"
                        say(f"{label}: message {message.message_id} acked; acquired {acquired}; "
                            f"assigned jobs now {assigned}")

                drain("poll")
                say("the queue token expires (it does, about hourly)")
                fake.expire_queue_tokens()
                queued.append(fake.queue_job(scale_set.id))
                drain("after expiry")
                say(f"session refreshed {session.refreshes} time(s) without the caller noticing")

                say("the broker goes down")
                fake.stop("broker")
                queued.append(fake.queue_job(scale_set.id))
                for _ in range(3):
                    try:
                        session.get_message(last_id, max_capacity=10)
                    except sc.ScalesetError as exc:
                        say(f"poll failed fast: {type(exc).__name__}")
                say(f"health: {client.health().status} ({client.health().reason})")
                fake.start_server("broker")
                say("the broker is back")
                time.sleep(1.2)
                fake.inject("get_message", Fault.empty())  # a garbage answer on the way back
                drain("after outage")
                say(f"health: {client.health().status}")

                jit = client.generate_jit_runner_config(sc.JitRunnerSetting(name="demo-runner-1"), scale_set.id)
                say(f"JIT config for runner {jit.runner.name} (id {jit.runner.id}): {len(jit.encoded_jit_config)} "
                    f"bytes, kept out of logs: {jit!r}")

                missing = sorted(set(queued) - set(seen))
                twice = sorted({j for j in seen if seen.count(j) > 1})
                say(f"jobs queued {len(queued)}, acquired {len(seen)}, missing {missing}, repeated {twice}")
                if missing or twice:
                    say("FAILED: something was lost or handled twice")
                    return 1
                say("OK: nothing lost, nothing handled twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
