"""The listener renewing its session when the queue turns it away, seen at the fake and the scaler."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


def test_a_persistently_refused_queue_token_renews_the_session_and_delivery_goes_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    # Two 401s: the session's own refresh-and-repeat uses one refresh, then the listener renews.
    fake.inject("get_message", Fault.respond(401, "Session expired", content_type="text/plain"), times=2)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    assert fake.count("refresh_session") == 2 and fake.count("create_session") == 1
    client.close()


def test_an_evicted_session_without_auto_recover_ends_the_run_with_the_error(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False))
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    scaler = RecordingScaler()

    def evict_then_start(s: RecordingScaler, kind: str, request_id: int) -> None:
        fake.evict_session(scale_set.id)

    scaler.hook = evict_then_start
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(2))
    with pytest.raises(sc.SessionNotFoundError):
        listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.count("create_session") == 1  # no new session was asked for
    client.close()

