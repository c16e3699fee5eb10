"""The backlog window, seen at the scaler and a metrics recorder. Messages queued before the session
opened may be older than the session's statistics, so until the first empty poll (or 5 s) their
statistics are held back; the last of them replaces the session's only when it is provably
newer: the queue drained after this listener acquired jobs (the service answers an acquisition
with a message, an ASSUMPTION the fake follows). Time is a FakeClock shared with the fake."""

from __future__ import annotations

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


class Recorder:
    def __init__(self) -> None:
        self.assigned: list[int] = []

    def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
        self.assigned.append(statistics.total_assigned_jobs)


def test_a_drained_backlog_after_an_acquisition_hands_on_its_last_statistics(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.queue_job(scale_set.id)  # queued before the session: the backlog
    client = make_client(fake, clock)
    recorder = Recorder()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics=recorder)
    listener.run(RecordingScaler(), until_idle=True)
    assert recorder.assigned == [0, 1]  # the session's, then the acquisition's answer once drained
    fake.push_message(scale_set.id, [], statistics=stats(6))  # a later run compares against it
    listener.run(RecordingScaler(), until_idle=True)
    assert recorder.assigned == [0, 1, 1]  # that run's session (the job is acquired); not the backlog's 6
    client.close()


def test_a_backlog_ended_by_time_keeps_the_sessions_statistics(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """Jobs were acquired, but the window ended by time, not by an empty poll: nothing proves the
    backlog's statistics newer than the session's, so a message without statistics keeps those."""
    fake.queue_job(scale_set.id)
    client = make_client(fake, clock)

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if len(self.desired) == 2:  # the session's, the job's message's, now the acquisition's
                clock.advance(10.0)  # the window ends before the next poll, which is not empty
                fake.push_message(scale_set.id, [], statistics=None)
            return super().handle_desired_runner_count(count)

    scaler = Scaler()
    recorder = Recorder()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics=recorder).run(scaler, until_idle=True)
    assert recorder.assigned == [0] and set(scaler.desired) == {0}
    client.close()


def test_the_backlog_window_is_over_at_exactly_five_seconds(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [], statistics=stats(4))
    client = make_client(fake, clock)

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not self.desired:
                clock.advance(5.0)
            return super().handle_desired_runner_count(count)

    scaler = Scaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.desired[1:] == [4]
    client.close()


def test_a_backlog_message_delivered_again_after_the_window_keeps_its_statistics_back(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """The scaler failed on a backlog message; by the time it comes again (a 10-20 s backoff) the
    window is over, but its statistics are still the backlog's: never applied."""
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(7))
    client = make_client(fake, clock)
    failed: list[int] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if not failed:
            failed.append(request_id)
            raise RuntimeError("not yet")

    scaler = RecordingScaler(hook)
    recorder = Recorder()
    config = sc.ListenerConfig(scale_set.id, 3, error_backoff=20.0)
    sc.Listener(client, config, metrics=recorder).run(scaler, until_idle=True)
    assert scaler.started == [1] and 7 not in scaler.desired and recorder.assigned == [0]
    client.close()


def test_every_run_starts_a_backlog_window_of_its_own(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    """Two runs of one listener, each meeting a queued message with no jobs: neither message's
    statistics replaces the session's (no acquisition proves them newer)."""
    client = make_client(fake, clock)
    recorder = Recorder()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics=recorder)
    for assigned in (9, 8):
        fake.push_message(scale_set.id, [], statistics=stats(assigned))
        listener.run(RecordingScaler(), until_idle=True)
    assert recorder.assigned == [0, 0]
    client.close()
