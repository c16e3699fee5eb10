"""The listener's documented numbers, each pinned where an observer sees it: the spacing of empty
polls and of re-applied desired counts (request times at the fake, the scaler's calls), the
backlog window, the 1 s slices of every wait, the bound on clean-up, and a fresh listener's
health. ``FakeClock(draw=)`` fixes every jitter draw, so a spacing is exact, not a range."""

from __future__ import annotations

from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import fake_with_draw, make_client
from .test_deadlines import Outcome
from .test_listener import RecordingScaler, job, stats


def _scale_set(client: sc.Client) -> sc.RunnerScaleSet:
    return client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))


@pytest.mark.parametrize(("draw", "gap"), [(0.0, 0.8), (0.99, 1.196)])
def test_empty_polls_come_one_poll_interval_apart(draw: float, gap: float) -> None:
    """1 s x (0.8 + 0.4 x draw): 0.8 s between polls at the narrowest draw, 1.196 s at the widest."""
    fake, clock = fake_with_draw(draw)
    with fake, make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(), duration=10.0)
        times = [r.time for r in fake.requests("get_message")]
    assert len(times) >= 8
    assert {round(b - a, 3) for a, b in pairwise(times)} == {gap}


def test_failed_polls_back_off_doubling_from_half_the_error_backoff(low: tuple[FakeActionsService, FakeClock]) -> None:
    """Polls failing in a row wait error_backoff x 2**(n-1) x (0.5 + 0.5 x draw): 50, 100, 200 s
    at the narrowest draw; an answered poll starts the count again (the next failure waits 50 s)."""
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
        fake.inject("get_message", *[Fault.error(400, message="bad poll")] * 3)  # not retried by the client

        def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
            fake.inject("get_message", Fault.error(400, message="bad poll"))  # the poll after this message

        config = sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0)
        sc.Listener(client, config).run(RecordingScaler(hook), until_idle=True)
        times = [r.time for r in fake.requests("get_message")]
    # fail, fail, fail, the message, fail (at once: a message is followed by the next poll), empty
    assert [round(b - a, 3) for a, b in pairwise(times)] == [50.0, 100.0, 200.0, 0.0, 50.0]


def test_a_scaler_failure_counts_as_an_error_in_a_row_for_the_next_failed_poll(
        low: tuple[FakeActionsService, FakeClock]) -> None:
    """The message is polled again after its own backoff (50 s); that poll failing is the second
    error in a row (100 s), and the third poll brings the message back."""
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
        failed: list[int] = []

        def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
            if not failed:
                failed.append(request_id)
                fake.inject("get_message", Fault.error(400, message="bad poll"))
                raise RuntimeError("not now")

        config = sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0)
        scaler = RecordingScaler(hook)
        sc.Listener(client, config).run(scaler, until_idle=True)
        times = [r.time for r in fake.requests("get_message")]
    assert scaler.started == [1]
    assert [round(b - a, 3) for a, b in pairwise(times)][:2] == [50.0, 100.0]


@pytest.mark.parametrize(("draw", "spacing"), [(0.0, 30.4), (0.5, 30.0)])
def test_an_unchanged_desired_count_is_applied_again_every_thirty_seconds(draw: float, spacing: float) -> None:
    """Checked before every poll: re-applied at the first check 30 s or more after the last. Polls
    0.8 s apart give 30.4 s, neither sooner nor a poll later; 1.0 s apart, exactly 30 s."""
    fake, clock = fake_with_draw(draw)
    applied: list[float] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            applied.append(clock.monotonic())
            return super().handle_desired_runner_count(count)

    with fake, make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(Scaler(), duration=100.0)
    assert [round(b - a, 3) for a, b in pairwise(applied)] == [spacing] * 3


def test_the_backlog_window_ends_five_seconds_after_the_session_opens(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """5.5 s after the session opened, the queued messages are no longer the backlog: a message's
    statistics are applied when it is handled, not held back as possibly older than the session's."""
    fake.push_message(scale_set.id, [], statistics=stats(4))
    client = make_client(fake, clock)

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not self.desired:
                clock.advance(5.5)
            return super().handle_desired_runner_count(count)

    scaler = Scaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.desired[1:] == [4]
    client.close()


def test_every_wait_is_sliced_into_beats_of_at_most_a_second(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """A 15-30 s backoff after a failed poll is slept a second at a time (so liveness beats and a
    ``client.recover()`` is noticed within a second)."""
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(400, message="bad poll"))  # not retried by the client
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=30.0)).run(RecordingScaler(),
                                                                                    until_idle=True)
    assert clock.total_slept >= 15.0
    assert max(clock.sleeps) <= 1.0
    client.close()


@pytest.mark.timeout(30)
def test_clean_up_is_bounded_when_deleting_the_session_hangs(fake: FakeActionsService) -> None:
    """The run is over; saving and deleting the session get 1.5 s, whatever the service does."""
    client = sc.Client(fake.config_url, token=fake.token, timeout=(2.0, 10.0))
    scale_set = _scale_set(client)
    fake.inject("delete_session", Fault.hang(3600.0))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    try:  # 1.5 s of clean-up; the call's own timeouts (2 + 10 s) would outlast the join's limit
        outcome = Outcome(lambda: listener.run(RecordingScaler(), until_idle=True)).join(limit=8.0)
    finally:
        fake.release_hangs()
        client.close()
    assert outcome.error is None
    assert fake.count("delete_session") == 1


def test_a_listener_not_yet_run_is_live_not_ready_and_has_seen_nothing(client: sc.Client,
                                                                       scale_set: sc.RunnerScaleSet) -> None:
    health = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).health()
    assert health == sc.ListenerHealth(live=True, ready=False, reason="no active session", last_message_id=0,
                                       last_poll_time=None, session_id="", standby=False, scaler_failures=0)
    assert health.ready is False and health.standby is False


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


def test_a_count_applied_with_a_message_is_not_applied_again_before_thirty_seconds(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not self.desired:
                fake.push_message(scale_set.id, [], statistics=stats(3))
            return super().handle_desired_runner_count(count)

    scaler = Scaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, duration=20.0)
    # The session's, the session's again with the message, the service's 3 once the queue drained;
    # 20 s of empty polls after that.
    assert scaler.desired == [0, 0, 3]
    client.close()


def test_a_failed_poll_waits_its_backoff_with_the_widest_jitter() -> None:
    """error_backoff x (0.5 + 0.5 x draw): 99.5 s at draw 0.99 for a 100 s error_backoff."""
    fake, clock = fake_with_draw(0.99)
    with fake, make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        fake.inject("get_message", Fault.error(400, message="bad poll"))
        config = sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0)
        sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
        times = [r.time for r in fake.requests("get_message")]
    assert [round(b - a, 3) for a, b in pairwise(times)] == [99.5]
