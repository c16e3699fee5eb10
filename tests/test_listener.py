"""The listener's central promise (design §4) against the fake service: two hundred messages
through token expiry, eviction and an outage reach the scaler exactly once, in order; and what a
listener takes to be built (its config's defaults, what it refuses).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, Running, job, make_client, stats, wait_until


def test_two_hundred_messages_through_expiry_eviction_and_outage_arrive_exactly_once_in_order(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    expected_started, expected_completed = [], []

    def trouble(scaler: RecordingScaler, kind: str, request_id: int) -> None:
        if request_id == 50 and request_id not in scaler.completed:
            fake.expire_queue_tokens()
        if request_id == 100 and request_id not in scaler.completed:
            fake.evict_session(scale_set.id)
        if request_id == 150 and request_id not in scaler.completed:
            fake.stop("broker")
            threading.Timer(0.5, fake.start_server, args=("broker",)).start()

    scaler = RecordingScaler(trouble)
    transitions: list[sc.Transition] = []
    client.circuit_breakers.add_listener(transitions.append)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, max_runners=10))
    running = Running(listener, scaler)
    wait_until(lambda: fake.count("get_message") >= 2)
    for i in range(1, 201):
        kind = "JobStarted" if i % 2 else "JobCompleted"
        (expected_started if i % 2 else expected_completed).append(i)
        last_id = fake.push_message(scale_set.id, [job(kind, i)], statistics=stats(i))
    wait_until(lambda: len(scaler.started) + len(scaler.completed) == 200 and not fake.unacked(scale_set.id))
    running.finish()
    assert running.error is None
    assert scaler.started == expected_started and scaler.completed == expected_completed
    # The renewals hand over the service's newest figure (200) while older messages still wait in
    # the queue: the scaler goes up to it and never back down to theirs.
    assert all(b >= a for a, b in itertools.pairwise(scaler.desired))
    newest = fake.newest_figure_sent(scale_set.id)
    assert newest is not None and scaler.desired[-1] == newest.assigned_jobs == 200
    assert fake.unacked(scale_set.id) == [] and listener.cursor == last_id
    assert fake.count("refresh_session") >= 1 and fake.count("create_session") >= 2  # expiry and eviction
    assert any(t.operation_class == "long_poll" and t.new is sc.State.OPEN for t in transitions)  # the outage
    client.close()


def test_config_defaults_are_the_documented_ones_and_callbacks_do_not_affect_equality() -> None:
    config = sc.ListenerConfig(7, 3)
    assert (config.standby_interval, config.standby_timeout, config.error_backoff, config.error_backoff_max,
            config.poison_after) == (30.0, None, 1.0, 60.0, 3)
    assert sc.ListenerConfig(7, 3, on_poison=lambda m, e: None) == sc.ListenerConfig(7, 3, on_poison=print)


@pytest.mark.parametrize("field", ["standby_interval", "error_backoff"])
def test_a_zero_interval_is_refused_so_the_loop_cannot_spin(field: str) -> None:
    with pytest.raises(sc.ConfigError, match=field):
        sc.ListenerConfig(7, 3, **{field: 0.0})  # type: ignore[arg-type]


def test_a_listener_built_from_the_wrong_parts_says_what_it_takes(client: sc.Client,
                                                                  scale_set: sc.RunnerScaleSet) -> None:
    config = sc.ListenerConfig(scale_set.id, 3)
    with pytest.raises(sc.ConfigError) as info:
        sc.Listener(client, {"scale_set_id": scale_set.id})  # type: ignore[arg-type]
    assert str(info.value) == "config must be a ListenerConfig"
    with pytest.raises(sc.ConfigError) as info:
        sc.Listener("https://github.com/org", config)  # type: ignore[arg-type]
    assert str(info.value) == "Listener takes a MessageSession or a Client"
    session = client.message_session(scale_set.id, owner="here")
    try:
        with pytest.raises(sc.ConfigError) as info:
            sc.Listener(session, sc.ListenerConfig(scale_set.id + 1, 3))
        assert str(info.value) == f"the session is for scale set {scale_set.id}, the config for {scale_set.id + 1}"
    finally:
        session.close()


@pytest.mark.parametrize("wrong", ["config", "session", "scale set"])
def test_a_listener_built_from_the_wrong_things_is_a_config_error_that_sends_nothing(
        wrong: str, client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    sent = fake.count()
    source: Any = session
    config: Any = sc.ListenerConfig(scale_set.id, 3)
    if wrong == "config":
        config, match = {"scale_set_id": scale_set.id, "max_runners": 3}, "must be a ListenerConfig"
    elif wrong == "session":
        source, match = fake.config_url, "takes a MessageSession or a Client"
    else:
        config, match = sc.ListenerConfig(scale_set.id + 1, 3), f"the session is for scale set {scale_set.id}"
    with pytest.raises(sc.ConfigError, match=match):
        sc.Listener(source, config)
    assert fake.count() == sent  # refused before anything was sent
    session.close()
