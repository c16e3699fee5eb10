"""The fake's simulated work: jobs, their messages, and the statistics the service reports.

A mixin of ``FakeActionsService``: ``queue_job`` / ``start_job`` / ``complete_job`` drive a job
through its life the way GitHub does, each step arriving as a queue message with fresh
statistics; ``cancel_job(announce=False)`` changes the statistics without any message;
``push_message`` queues anything, including malformed messages, for tests.

Every figure the service hands a client (in a message, a session, a scale set read) is logged
with the moment it was computed (``figures_sent``), so a test can ask, as an observer, what the
newest figure a listener was told is, and compare the scaler's last figure with it.

ASSUMPTION (docs/protocol-notes.md): a message's statistics are those of the moment it was
queued, so a message that waited in the queue carries figures older than a session opened after
it. If the service stamps them when it delivers the message instead, every figure a listener
reads is current, and the listener's care for older ones costs nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock
from ._servers import LoopbackServer

__all__ = ["JobsSide"]


@dataclass
class SessionRecord:
    session_id: str
    owner: str
    scale_set_id: int
    token: str
    token_expires: float
    last_seen: float = 0.0  # service wall time of the last create, refresh, poll or ack
    polling: int = 0  # long polls in progress: a session being polled is not idle
    poll_since: float = 0.0  # time.monotonic() when the newest poll in progress began to be held


@dataclass
class MessageRecord:
    message_id: int
    scale_set_id: int
    jobs: list[dict[str, Any]]
    statistics: dict[str, int] | None
    message_type: str = "RunnerScaleSetJobMessages"
    deleted: bool = False
    raw_body: str | None = None
    stamp: int = 0  # when its statistics were computed (``FigureSent.stamp``)
    queued_at: float = 0.0  # the fake's clock wall time when it was queued


@dataclass(frozen=True)
class FigureSent:
    """A figure the service handed a client: ``stamp`` orders the moments figures were computed
    (a larger stamp is a newer figure), ``source`` says where it went ("message <id>",
    "create_session", "refresh_session", "scale_set"), ``at`` is the fake's wall time of sending."""

    stamp: int
    assigned_jobs: int
    source: str
    at: float


@dataclass
class JobRecord:
    request_id: int
    scale_set_id: int
    job_id: str
    labels: list[str]
    state: str = "available"  # available, acquired, running, completed
    runner_id: int = 0
    runner_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    queued_at: float = 0.0  # the fake's wall time of each step, as the service stamps its messages
    started_at: float | None = None
    finished_at: float | None = None


class JobsSide:
    """Jobs and messages per scale set."""

    clock: Clock
    org: str
    _lock: threading.RLock
    _cond: threading.Condition
    _jobs: dict[int, JobRecord]
    _runners: dict[int, dict[str, Any]]
    _messages: dict[int, list[MessageRecord]]
    _message_ids: itertools.count[int]
    _request_ids: itertools.count[int]
    _stamps: itertools.count[int]
    _figures: dict[int, list[FigureSent]]
    _stated: dict[int, dict[str, int]]
    servers: dict[str, LoopbackServer]

    def statistics(self, scale_set_id: int) -> dict[str, int]:
        """The scale set's statistics now: those a test stated last with ``push_message``, until a
        job changes; otherwise counted from the fake's jobs and runners."""
        with self._lock:
            stated = self._stated.get(scale_set_id)
            if stated is not None:
                return dict(stated)
            jobs = [j for j in self._jobs.values() if j.scale_set_id == scale_set_id]
            runners = [r for r in self._runners.values() if r["runnerScaleSetId"] == scale_set_id]
            busy = sum(1 for j in jobs if j.state == "running")
            return {
                "totalAvailableJobs": sum(1 for j in jobs if j.state == "available"),
                "totalAcquiredJobs": sum(1 for j in jobs if j.state == "acquired"),
                "totalAssignedJobs": sum(1 for j in jobs if j.state in ("acquired", "running")),
                "totalRunningJobs": busy,
                "totalRegisteredRunners": len(runners),
                "totalBusyRunners": busy,
                "totalIdleRunners": max(0, len(runners) - busy),
            }

    def _stamped_statistics(self, scale_set_id: int) -> tuple[int, dict[str, int]]:
        """The statistics now, with the stamp that orders them among every figure computed."""
        with self._lock:
            return next(self._stamps), self.statistics(scale_set_id)

    def _sent(self, scale_set_id: int, stamp: int, stats: dict[str, Any] | None, source: str) -> None:
        """Log a figure handed to a client (see ``figures_sent``)."""
        if not isinstance(stats, dict) or not isinstance(stats.get("totalAssignedJobs"), int):
            return
        with self._lock:
            self._figures.setdefault(scale_set_id, []).append(
                FigureSent(stamp, stats["totalAssignedJobs"], source, self.clock.wall()))

    def figures_sent(self, scale_set_id: int) -> list[FigureSent]:
        """Every figure handed to a client for the scale set, in the order sent."""
        with self._lock:
            return list(self._figures.get(scale_set_id, []))

    def newest_figure_sent(self, scale_set_id: int) -> FigureSent | None:
        """The most recently computed figure a client was handed (None before any)."""
        with self._lock:
            sent = self._figures.get(scale_set_id, [])
            return max(sent, key=lambda f: f.stamp) if sent else None

    def push_message(self, scale_set_id: int, jobs: list[dict[str, Any]] | None = None, *,
                     statistics: dict[str, int] | str | None = "auto",
                     message_type: str = "RunnerScaleSetJobMessages", raw_body: str | None = None) -> int:
        """Queue a message; ``statistics="auto"`` computes them from the fake's jobs. Statistics given
        as a dict become the service's own from then on (sessions and scale set reads report
        them too) until a job changes, as the service's figures would be; None leaves them out."""
        with self._cond:
            if isinstance(statistics, dict):
                self._stated[scale_set_id] = dict(statistics)
            stamp, current = self._stamped_statistics(scale_set_id)
            stats = current if statistics == "auto" else statistics
            message = MessageRecord(next(self._message_ids), scale_set_id, list(jobs or []),
                                    stats if isinstance(stats, dict) or stats is None else None,
                                    message_type, raw_body=raw_body, stamp=stamp, queued_at=self.clock.wall())
            self._messages.setdefault(scale_set_id, []).append(message)
            self._cond.notify_all()
            return message.message_id

    def _job_changed(self, scale_set_id: int) -> None:
        """A job moved: the statistics are counted from the jobs again."""
        with self._lock:
            self._stated.pop(scale_set_id, None)

    def _job_fields(self, job: JobRecord, kind: str) -> dict[str, Any]:
        """A job message's fields. Its times move on as the job does: queued (and assigned to the
        scale set) when queued, ``runnerAssignTime`` once it started on a runner, ``finishTime``
        once it ended; a time not reached yet is the zero time the service sends."""
        def stamp(wall: float | None) -> str:
            if wall is None:
                return "0001-01-01T00:00:00Z"
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 10**7):07d}Z"

        queued = stamp(job.queued_at or self.clock.wall())
        return {"messageType": kind, "runnerRequestId": job.request_id, "repositoryName": "api",
                "ownerName": self.org, "jobId": job.job_id,
                "jobWorkflowRef": f"{self.org}/api/.github/workflows/ci.yml@refs/heads/main",
                "jobDisplayName": "build", "workflowRunId": 15087234561, "eventName": "push",
                "requestLabels": job.labels, "queueTime": queued, "scaleSetAssignTime": queued,
                "runnerAssignTime": stamp(job.started_at), "finishTime": stamp(job.finished_at),
                **job.extra}

    def queue_job(self, scale_set_id: int, labels: list[str] | None = None) -> int:
        """A new job for the scale set: a ``JobAvailable`` message. Returns its runner request id."""
        with self._lock:
            job = JobRecord(next(self._request_ids), scale_set_id, str(uuid.uuid4()), labels or ["self-hosted"],
                            queued_at=self.clock.wall())
            self._jobs[job.request_id] = job
            self._job_changed(scale_set_id)
            available = self._job_fields(job, "JobAvailable")
            available["acquireJobUrl"] = f"{self.servers['broker'].url}/acquirejob"
            self.push_message(scale_set_id, [available])
            return job.request_id

    def start_job(self, request_id: int, runner_name: str | None = None) -> None:
        """The job starts on a runner: a ``JobStarted`` message."""
        with self._lock:
            job = self._jobs[request_id]
            runner = next((r for r in self._runners.values() if r["name"] == runner_name), None)
            job.state, job.runner_name = "running", runner_name or f"runner-{request_id}"
            job.started_at = self.clock.wall()
            self._job_changed(job.scale_set_id)
            job.runner_id = runner["id"] if runner else 0
            fields = self._job_fields(job, "JobStarted")
            fields.update(runnerId=job.runner_id, runnerName=job.runner_name)
            self.push_message(job.scale_set_id, [fields])

    def complete_job(self, request_id: int, result: str = "Succeeded") -> None:
        """The job ends: a ``JobCompleted`` message (the runner, ephemeral, goes away)."""
        with self._lock:
            job = self._jobs[request_id]
            job.state, job.finished_at = "completed", self.clock.wall()
            self._job_changed(job.scale_set_id)
            fields = self._job_fields(job, "JobCompleted")
            fields.update(result=result, runnerId=job.runner_id, runnerName=job.runner_name)
            self._runners.pop(job.runner_id, None)
            self.push_message(job.scale_set_id, [fields])

    def change_statistics(self, scale_set_id: int, statistics: dict[str, int]) -> None:
        """The service's figures move and no message says so (until a job changes): what sessions
        and scale set reads report from now on. ASSUMPTION: as ``cancel_job(announce=False)``."""
        with self._lock:
            self._stated[scale_set_id] = dict(statistics)

    def cancel_job(self, request_id: int, *, announce: bool = True) -> None:
        """The job is cancelled before it ends on a runner. ``announce=False``: the statistics change
        and no message says so (ASSUMPTION: the service's figures can move without a message, e.g.
        a run cancelled while its job waits; a listener hears of it with its next message or
        session). With ``announce``, a ``JobCompleted`` with result ``canceled`` is queued."""
        with self._lock:
            job = self._jobs[request_id]
            job.state, job.finished_at = "completed", self.clock.wall()
            self._job_changed(job.scale_set_id)
            if announce:
                fields = self._job_fields(job, "JobCompleted")
                fields.update(result="canceled", runnerId=job.runner_id, runnerName=job.runner_name)
                self.push_message(job.scale_set_id, [fields])

    def job_states(self, scale_set_id: int) -> dict[int, str]:
        """Each job's state by runner request id: available, acquired, running or completed."""
        with self._lock:
            return {j.request_id: j.state for j in self._jobs.values() if j.scale_set_id == scale_set_id}

    def unacked(self, scale_set_id: int) -> list[int]:
        with self._lock:
            return [m.message_id for m in self._messages.get(scale_set_id, []) if not m.deleted]
