"""The fake's job messages carry times that move on as the job does, as the service's do: queued
and assigned when queued, ``runnerAssignTime`` once started, ``finishTime`` once ended (the zero
time before). What a scaler and the ARC duration histograms read from them."""

from __future__ import annotations

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, make_client


class TimedScaler(RecordingScaler):
    def __init__(self) -> None:
        super().__init__()
        self.started_jobs: list[sc.JobStarted] = []
        self.completed_jobs: list[sc.JobCompleted] = []

    def handle_job_started(self, job: sc.JobStarted) -> None:
        self.started_jobs.append(job)
        super().handle_job_started(job)

    def handle_job_completed(self, job: sc.JobCompleted) -> None:
        self.completed_jobs.append(job)
        super().handle_job_completed(job)


def test_a_jobs_times_move_on_with_it(fake: FakeActionsService, clock: FakeClock,
                                      scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    request = fake.queue_job(scale_set.id)
    clock.advance(7.0)
    fake.start_job(request)
    clock.advance(60.0)
    fake.complete_job(request)
    scaler = TimedScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    (started,), (completed,) = scaler.started_jobs, scaler.completed_jobs
    assert started.runner_assign_time is not None and started.scale_set_assign_time is not None
    assert (started.runner_assign_time - started.scale_set_assign_time).total_seconds() == 7.0
    assert completed.finish_time is not None and completed.runner_assign_time is not None
    assert (completed.finish_time - completed.runner_assign_time).total_seconds() == 60.0
    client.close()


def test_a_job_not_started_yet_has_the_zero_times(fake: FakeActionsService, clock: FakeClock,
                                                  scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    request = fake.queue_job(scale_set.id)
    fake.cancel_job(request)  # announced: a JobCompleted for a job that never ran
    scaler = TimedScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    (completed,) = scaler.completed_jobs
    assert completed.runner_assign_time is None and completed.finish_time is not None
    assert completed.result.lower() == "canceled"
    client.close()
