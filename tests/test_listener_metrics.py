"""What a metrics recorder hears: every event of a run in order, the session's statistics first,
every circuit transition, and a recorder whose hooks raise does not stop delivery.
"""

from __future__ import annotations

from typing import Any

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, job, make_client, stats


class Recorder:
    """Every hook the listener calls, by name, with what an exporter would read of its arguments."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("record_"):
            raise AttributeError(name)

        def hook(*args: Any) -> None:
            self.heard.append((name, *(self._plain(a) for a in args)))
        return hook

    @staticmethod
    def _plain(value: Any) -> Any:
        if isinstance(value, sc.RunnerScaleSetStatistic):
            return ("assigned", value.total_assigned_jobs)
        if isinstance(value, (sc.JobStarted, sc.JobCompleted)):
            return ("job", value.runner_request_id)
        if isinstance(value, BaseException):
            return str(value)
        return value


def test_a_metrics_recorder_hears_every_event_of_a_run_in_order(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    raised: list[int] = []
    ids: list[int] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        if (request_id == 1 and not raised) or request_id == 3:
            raised.append(request_id)
            raise RuntimeError(f"cannot start {request_id}")

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            if not self.desired:
                ids.append(fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1)))
                ids.append(fake.push_message(scale_set.id, [job("JobCompleted", 2, result="succeeded")],
                                             statistics=stats(2)))
                ids.append(fake.push_message(scale_set.id, [job("JobStarted", 3)], statistics=stats(3)))
            super().handle_desired_runner_count(count)
            return count + 10  # what the scaler did: the recorder hears this, not the request

    recorder = Recorder()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, poison_after=2), metrics=recorder)
    listener.run(Scaler(hook), until_idle=True)
    first, _, third = ids
    # The three messages were queued after the session opened, which the listener cannot tell
    # from messages already waiting then: their figures wait until the queue drains, and the
    # service's newest (3), asked for once, is applied then.
    assert recorder.heard == [
        ("record_statistics", ("assigned", 0)), ("record_desired_runners", 10),  # the session's
        ("record_scaler_failure", first, "cannot start 1"),
        ("record_job_started", ("job", 1)), ("record_desired_runners", 10),  # delivered again, handled
        ("record_job_completed", ("job", 2)), ("record_desired_runners", 10),
        ("record_scaler_failure", third, "cannot start 3"), ("record_scaler_failure", third, "cannot start 3"),
        ("record_poisoned", third),
        ("record_statistics", ("assigned", 3)), ("record_desired_runners", 13)]  # the queue drained
    client.close()


def test_a_metrics_recorder_hears_the_sessions_statistics_first(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(4))
    client = make_client(fake, clock)
    heard: list[int] = []

    class Recorder:
        def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
            heard.append(statistics.total_assigned_jobs)

    session = client.message_session(scale_set.id, owner="here")
    try:
        opened = session.session.statistics
        assert opened is not None
        sc.Listener(session, sc.ListenerConfig(scale_set.id, 3), metrics=Recorder()).run(RecordingScaler(),
                                                                                        until_idle=True)
    finally:
        session.close()
    assert heard[0] == opened.total_assigned_jobs
    client.close()


def test_a_metrics_recorder_hears_of_every_circuit_transition(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    heard: list[tuple[str, str]] = []

    class Recorder:
        def record_circuit_state(self, origin: str, state: str) -> None:
            heard.append((origin, state))

    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics=Recorder())
    listener.run(RecordingScaler(), until_idle=True)
    client.circuit_breakers.force_open(operation_class="long_poll")
    client.circuit_breakers.reset()
    assert [state for _, state in heard] == ["forced_open", "closed"]
    client.close()


class RaisingMetrics:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
        self.calls.append("statistics")
        raise RuntimeError("metrics backend down")

    def record_job_started(self, job: sc.JobStarted) -> None:
        self.calls.append("job_started")
        raise RuntimeError("metrics backend down")


def test_metrics_hooks_that_raise_do_not_stop_delivery(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(2))
    metrics = RaisingMetrics()
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3), metrics).run(scaler, until_idle=True)
    assert scaler.started == [5, 6] and fake.unacked(scale_set.id) == []
    assert metrics.calls.count("job_started") == 2
    client.close()
