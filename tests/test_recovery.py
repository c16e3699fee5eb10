"""After an outage ends, a listener is back within seconds, without loading the dead service."""

from __future__ import annotations

import threading

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, job, make_client, stats

LOOK_INTERVAL = sc.CircuitBreakerConfig().reachability_check


class ComesBackAt(FakeClock):
    """Virtual time that restarts the broker when it reaches ``at``."""

    def __init__(self, fake: FakeActionsService, at: float) -> None:
        super().__init__()
        self.fake, self.at = fake, self.monotonic() + at
        self.back = False

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        woken = super().sleep(seconds, interrupt)
        if not self.back and self.monotonic() >= self.at:
            self.back = True
            self.fake.start_server("broker")
        return woken


@pytest.mark.parametrize("outage", [600.0, 615.0, 630.0, 645.0, 660.0])
def test_a_listener_is_back_within_seconds_of_a_refusing_broker_returning(
        outage: float, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    # Breaks have grown to a minute by then: returning at any point of one, the listener is back
    # at the next TCP look, not at the break's end.
    clock = ComesBackAt(fake, at=outage)
    fake.clock = clock
    client = make_client(fake, clock)
    fake.stop("broker")
    mid = fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    handled_at: list[float] = []

    class Timed(RecordingScaler):
        def handle_job_started(self, started: sc.JobStarted) -> None:
            handled_at.append(clock.monotonic())
            super().handle_job_started(started)

    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    listener.run(Timed(), until_idle=True)
    # Breaks reach 60 s; a TCP look (due every reachability_check +-50 %) ends one early.
    assert handled_at and handled_at[0] - clock.at <= 1.5 * LOOK_INTERVAL + 2
    assert fake.unacked(scale_set.id) == [] and mid > 0
    client.close()


def test_check_reachable_sends_no_request_and_only_looks_at_refusing_origins(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    session = client.message_session(scale_set.id)
    origin = client.origin(session.session.message_queue_url)
    assert not client.check_reachable(origin)  # never failed: nothing to look at
    fake.stop("broker")
    for _ in range(5):
        try:
            session.get_message(0, 1)
        except sc.ScalesetError:
            pass
    assert client.circuit_breakers.states()  # the broker's breaker is open now
    assert not client.check_reachable(origin)  # still refusing
    fake.start_server("broker")
    before = fake.count(server="broker")
    assert client.check_reachable(origin)
    assert fake.count(server="broker") == before  # a TCP connect, not an HTTP request
    assert session.get_message(0, 1) is None  # the probe goes at once, not after the break
    client.close()


def test_a_plain_loop_sleeping_retry_after_is_back_within_seconds(fake: FakeActionsService,
                                                                  scale_set: sc.RunnerScaleSet) -> None:
    clock = ComesBackAt(fake, at=631.0)
    fake.clock = clock
    client = make_client(fake, clock)
    session = client.message_session(scale_set.id)
    fake.stop("broker")
    hints: list[float] = []
    while True:  # what a script without a Listener does
        try:
            session.get_message(0, 1)
            break
        except sc.CircuitOpenError as exc:
            assert exc.retry_after is not None
            hints.append(exc.retry_after)
            clock.sleep(exc.retry_after)
        except sc.ScalesetError:
            clock.sleep(1.0)
    assert clock.monotonic() - clock.at <= 1.5 * LOOK_INTERVAL + 1  # the next TCP look found it back
    assert hints and max(hints) <= 1.5 * LOOK_INTERVAL  # a refusing origin: come back when a look is due
    client.close()


def test_reachability_checks_can_be_turned_off(fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    clock = FakeClock()
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        circuit_breaker=sc.CircuitBreakerConfig(reachability_check=0)))
    session = client.message_session(scale_set.id)
    fake.stop("broker")
    hints: list[float] = []
    for _ in range(6):
        try:
            session.get_message(0, 1)
        except sc.CircuitOpenError as exc:
            hints.append(exc.retry_after or 0.0)
            clock.sleep(0.1)
        except sc.ScalesetError:
            clock.sleep(0.1)
    fake.start_server("broker")
    with pytest.raises(sc.CircuitOpenError):  # no look: the break runs its course
        session.get_message(0, 1)
    assert hints
    client.close()
