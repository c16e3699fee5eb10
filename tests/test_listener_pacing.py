"""When the listener polls and how long it waits, each documented number pinned where an observer
sees it: empty polls a poll interval apart, failed polls backing off doubling from half the error
backoff, waits sliced into beats of a second, and the return after a break or an outage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import pairwise

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, fake_with_draw, job, make_client, stats


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


def test_a_failed_desired_count_pauses_one_backoff_step_before_the_next_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """The first failure waits between half and all of ``error_backoff``, not the second step's."""
    client = make_client(fake, clock)
    stop = threading.Event()
    failed_at: list[float] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not failed_at:
                failed_at.append(clock.monotonic())
                raise RuntimeError("not yet")
            stop.set()
            return super().handle_desired_runner_count(count)

    config = sc.ListenerConfig(scale_set.id, 3, error_backoff=100.0, error_backoff_max=1000.0)
    sc.Listener(client, config).run(Scaler(), stop)
    gap = fake.requests("get_message")[0].time - failed_at[0]
    assert 50.0 <= gap < 100.0
    client.close()


@pytest.fixture
def high_draw() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    fake, clock = fake_with_draw(0.99)
    with fake:
        yield fake, clock


def test_after_a_break_with_a_known_end_the_next_poll_comes_within_half_a_second_of_it(
        high_draw: tuple[FakeActionsService, FakeClock]) -> None:
    """A fleet refused by the same break spreads its return over 0.5 s, no more."""
    fake, clock = high_draw
    client = make_client(fake, clock)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1))
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    opened: list[float] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        client.circuit_breakers.force_open(duration=100.0, operation_class="long_poll")
        opened.append(clock.monotonic())

    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(hook), until_idle=True)
    after = [r.time - opened[0] for r in fake.requests("get_message") if r.time > opened[0]]
    assert after and 100.0 <= after[0] <= 100.5
    client.close()


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


class BrokerBackAt(FakeClock):
    """Virtual time that restarts the broker when it reaches ``at`` seconds from now."""

    def __init__(self, fake: FakeActionsService, at: float) -> None:
        super().__init__()
        self.fake, self.at, self.back = fake, self.monotonic() + at, False

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        woken = super().sleep(seconds, interrupt)
        if not self.back and self.monotonic() >= self.at:
            self.back = True
            self.fake.start_server("broker")
        return woken


def test_a_backoff_after_a_refused_poll_ends_at_the_look_that_finds_the_broker_back(
        fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    clock = BrokerBackAt(fake, at=3.0)
    fake.clock = clock
    # One attempt per poll, and the first refusal opens the broker's circuit.
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=1),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0,
                                                max_open_duration=300.0)))
    fake.stop("broker")
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    started = clock.monotonic()
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=60.0)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    first_poll_served = times(fake, "get_message")[0]
    # The backoff would last 30-60 s and the break 300 s; a TCP look (due every 5-15 s) ends it.
    assert clock.at <= first_poll_served < started + 30.0
    client.close()


@pytest.mark.parametrize(("break_for", "next_poll"), [(100.5, 100.5), (0.3, 0.8)])
def test_a_poll_refused_by_a_break_goes_out_when_the_break_ends_or_at_the_poll_interval(
        low: tuple[FakeActionsService, FakeClock], break_for: float, next_poll: float) -> None:
    """The poll a break refuses waits for the break's end (plus 0.5 s x draw: none at the narrowest
    draw) and goes out then, not at the first poll beat after it (0.8 s steps: 100.8 s); a break
    shorter than the poll interval is waited out and the poll goes at the interval (0.8 s)."""
    fake, clock = low
    with make_client(fake, clock) as client:
        scale_set = _scale_set(client)
        fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
        opened: list[float] = []

        def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
            client.circuit_breakers.force_open(duration=break_for, operation_class="long_poll")
            opened.append(clock.monotonic())

        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(RecordingScaler(hook), until_idle=True)
        after = [r.time - opened[0] for r in fake.requests("get_message") if r.time > opened[0]]
    assert after and round(after[0], 3) == next_poll


def test_a_broker_back_during_a_backoff_is_found_at_a_due_look_not_the_next_beat() -> None:
    """While backing off, the listener looks at a refusing broker only when the client's schedule
    says a look is due (``reachability_check``, 10 s: the looks after the first are 5 s or more
    apart whatever the schedule's jitter), not at every one-second beat: a broker back 1.5 s
    into the backoff is found by a due look, not at 2 s, so a fleet that lost the broker at
    once does not come back in the same second."""
    fake = FakeActionsService(long_poll_hold=0.05, strict=True)
    with fake:
        clock = BrokerBackAt(fake, at=1.5)
        fake.clock = clock
        client = make_client(fake, clock, resilience=sc.ResilienceConfig(
            retry=sc.RetryConfig(max_attempts=1),
            circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1, open_duration=300.0,
                                                    max_open_duration=300.0, reachability_check=10.0)))
        scale_set = _scale_set(client)
        fake.stop("broker")
        fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
        started = clock.monotonic()
        scaler = RecordingScaler()
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=60.0)).run(scaler, until_idle=True)
        assert scaler.started == [5]
        assert 5.0 <= times(fake, "get_message")[0] - started <= 16.0
        client.close()
