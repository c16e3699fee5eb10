"""Message size: thousands of jobs are handled; a message too big to read is set aside, not a wedge."""

from __future__ import annotations

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, job, make_client, stats


def test_a_message_with_ten_thousand_jobs_is_handled(fake: FakeActionsService, clock: FakeClock,
                                                     scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    jobs = [job("JobStarted", i, jobDisplayName="build " * 80) for i in range(1, 10_001)]  # ~6 MiB
    fake.push_message(scale_set.id, jobs, statistics=stats(10_000))
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 10)).run(scaler, until_idle=True)
    assert scaler.started == list(range(1, 10_001))
    assert fake.unacked(scale_set.id) == []
    client.close()


def test_a_message_too_big_to_read_is_set_aside_by_id_and_the_queue_moves_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_message_bytes=64 * 1024))
    big = fake.push_message(scale_set.id, [job("JobStarted", i, jobDisplayName="x" * 500) for i in range(1, 400)])
    after = fake.push_message(scale_set.id, [job("JobStarted", 1000)], statistics=stats(1))
    poisoned: list[int] = []
    scaler = RecordingScaler()
    config = sc.ListenerConfig(scale_set.id, 10, on_poison=lambda mid, exc: poisoned.append(mid))
    sc.Listener(client, config).run(scaler, until_idle=True)
    assert poisoned == [big]
    assert scaler.started == [1000] and fake.unacked(scale_set.id) == []
    assert after > big
    assert client.health().components["broker"].last_failure is None  # a big body is not an outage
    client.close()
