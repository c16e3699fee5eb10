"""What a metrics recorder hears, in order, over one run with every kind of event: the session's
statistics, jobs started and completed, desired counts, a scaler failure that a retry mends, and
a message set aside after ``poison_after`` failures. Time is a FakeClock shared with the fake."""

from __future__ import annotations

from typing import Any

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


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
