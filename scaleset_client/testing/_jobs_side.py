"""The fake's simulated work: jobs, their messages, and the statistics the service reports.

A mixin of ``FakeActionsService``: ``queue_job`` / ``start_job`` / ``complete_job`` drive a job
through its life the way GitHub does, each step arriving as a queue message with fresh
statistics; ``push_message`` queues anything, including malformed messages, for tests.
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


@dataclass
class MessageRecord:
    message_id: int
    scale_set_id: int
    jobs: list[dict[str, Any]]
    statistics: dict[str, int] | None
    message_type: str = "RunnerScaleSetJobMessages"
    deleted: bool = False
    raw_body: str | None = None


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
    servers: dict[str, LoopbackServer]

    def statistics(self, scale_set_id: int) -> dict[str, int]:
        with self._lock:
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

    def push_message(self, scale_set_id: int, jobs: list[dict[str, Any]] | None = None, *,
                     statistics: dict[str, int] | str | None = "auto",
                     message_type: str = "RunnerScaleSetJobMessages", raw_body: str | None = None) -> int:
        """Queue a message; ``statistics="auto"`` computes them from the fake's jobs."""
        with self._cond:
            stats = self.statistics(scale_set_id) if statistics == "auto" else statistics
            message = MessageRecord(next(self._message_ids), scale_set_id, list(jobs or []),
                               stats if isinstance(stats, dict) or stats is None else None,
                               message_type, raw_body=raw_body)
            self._messages.setdefault(scale_set_id, []).append(message)
            self._cond.notify_all()
            return message.message_id

    def _job_fields(self, job: JobRecord, kind: str) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock.wall())) + ".1234567Z"
        return {"messageType": kind, "runnerRequestId": job.request_id, "repositoryName": "api",
                "ownerName": self.org, "jobId": job.job_id,
                "jobWorkflowRef": f"{self.org}/api/.github/workflows/ci.yml@refs/heads/main",
                "jobDisplayName": "build", "workflowRunId": 15087234561, "eventName": "push",
                "requestLabels": job.labels, "queueTime": now, "scaleSetAssignTime": now,
                "runnerAssignTime": "0001-01-01T00:00:00Z", "finishTime": "0001-01-01T00:00:00Z",
                **job.extra}

    def queue_job(self, scale_set_id: int, labels: list[str] | None = None) -> int:
        """A new job for the scale set: a ``JobAvailable`` message. Returns its runner request id."""
        with self._lock:
            job = JobRecord(next(self._request_ids), scale_set_id, str(uuid.uuid4()), labels or ["self-hosted"])
            self._jobs[job.request_id] = job
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
            job.runner_id = runner["id"] if runner else 0
            fields = self._job_fields(job, "JobStarted")
            fields.update(runnerId=job.runner_id, runnerName=job.runner_name)
            self.push_message(job.scale_set_id, [fields])

    def complete_job(self, request_id: int, result: str = "Succeeded") -> None:
        """The job ends: a ``JobCompleted`` message (the runner, ephemeral, goes away)."""
        with self._lock:
            job = self._jobs[request_id]
            job.state = "completed"
            fields = self._job_fields(job, "JobCompleted")
            fields.update(result=result, runnerId=job.runner_id, runnerName=job.runner_name)
            self._runners.pop(job.runner_id, None)
            self.push_message(job.scale_set_id, [fields])

    def unacked(self, scale_set_id: int) -> list[int]:
        with self._lock:
            return [m.message_id for m in self._messages.get(scale_set_id, []) if not m.deleted]
