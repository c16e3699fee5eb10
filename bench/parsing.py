"""Parsing a message of 1,000 jobs against ``json.loads`` of the same bytes.

Ours: the response body to a ``RunnerScaleSetMessage`` (``_wire.loads`` of the envelope, then
the job bodies to models: lenient keys, timestamps, zero times), then every job touched: its
``runner_request_id`` read, as the listener does to acquire jobs. The models are built whole
(every field converted and checked while parsing, none left for a first read), so a field read
is a tuple index behind a property whichever field it is; the second row reads every field of
every job. Baseline: ``json.loads`` of the envelope and of its ``body`` string, which any client
must do, and every job dict touched the same way. CPU time, alternating, the median of
``repeats`` per run, over ``runs`` runs.

The message is the usual one (every job as the service writes it), which is parsed column by
column; the third row is the same message with one job whose key is in another casing, which
sends the whole message to the job-by-job reader (reported, no target: the price of the unusual).

    python -m bench.parsing
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from scaleset_client import _wire
from scaleset_client._messages import RunnerScaleSetMessage
from scaleset_client._models import parse

from ._util import Row, bench_main, median, spread

_KINDS = ("JobAvailable", "JobAssigned", "JobStarted", "JobCompleted")


def _job(i: int) -> dict[str, Any]:
    """A job message as the service sends it: every field, two real timestamps, two zero times."""
    return {"messageType": _KINDS[i % 4], "runnerRequestId": 100_000 + i, "repositoryName": "api",
            "ownerName": "octo-org", "jobId": f"5f1c{i:08d}-0c1e-4b1a-9d7a-3f6c2a1b0e9d",
            "jobWorkflowRef": "octo-org/api/.github/workflows/ci.yml@refs/heads/main",
            "jobDisplayName": f"build ({i % 7})", "workflowRunId": 15_087_234_561 + i, "eventName": "push",
            "requestLabels": ["self-hosted", "linux", "x64"],
            "queueTime": f"2026-05-05T16:{i % 60:02d}:{(i * 7) % 60:02d}.{(i * 1234567) % 10_000_000:07d}Z",
            "scaleSetAssignTime": f"2026-05-05T16:{i % 60:02d}:{(i * 7 + 1) % 60:02d}.517Z",
            "runnerAssignTime": "0001-01-01T00:00:00Z", "finishTime": "0001-01-01T00:00:00Z",
            "acquireJobUrl": f"https://broker.actions.githubusercontent.com/acquirejob/{i}",
            "runnerId": i % 50, "runnerName": f"runner-{i % 50}", "result": "succeeded"}


def message_bytes(jobs: int, *, one_unusual: bool = False) -> bytes:
    items = [_job(i) for i in range(jobs)]
    if one_unusual:  # the last job's display name in another casing: read job by job, the same models
        items[-1]["JobDisplayName"] = items[-1].pop("jobDisplayName")
    return json.dumps({"messageId": 7, "messageType": "RunnerScaleSetJobMessages",
                       "statistics": {"totalAssignedJobs": jobs}, "body": json.dumps(items)}).encode()


def _ours(raw: bytes) -> object:
    message = parse(RunnerScaleSetMessage, _wire.loads(raw, operation="get_message"), "get_message")
    for jobs in (message.job_available_messages, message.job_assigned_messages, message.job_started_messages,
                 message.job_completed_messages):
        for job in jobs:
            job.runner_request_id  # noqa: B018  (touched)
    return message


def _json(raw: bytes) -> object:
    jobs = json.loads(json.loads(raw)["body"])
    for job in jobs:
        job["runnerRequestId"]  # touched
    return jobs


def _ours_every_field(raw: bytes) -> object:
    message = parse(RunnerScaleSetMessage, _wire.loads(raw, operation="get_message"), "get_message")
    for jobs in (message.job_available_messages, message.job_assigned_messages, message.job_started_messages,
                 message.job_completed_messages):
        for job in jobs:
            for name in job.__match_args__:
                getattr(job, name)
    return message


def _json_every_field(raw: bytes) -> object:
    jobs = json.loads(json.loads(raw)["body"])
    for job in jobs:
        for value in job.values():
            value  # noqa: B018
    return jobs


def _alternate(ours: Any, base: Any, raw: bytes, runs: int, repeats: int
               ) -> tuple[list[float], list[float], list[float]]:
    ours_ms: list[float] = []
    base_ms: list[float] = []
    ratios: list[float] = []
    for _ in range(runs):
        a: list[float] = []
        b: list[float] = []
        for i in range(repeats):
            for fn, sink in ((ours, a), (base, b)) if i % 2 == 0 else ((base, b), (ours, a)):
                t0 = time.process_time()
                fn(raw)
                sink.append(time.process_time() - t0)
        ours_ms.append(median(a) * 1e3)
        base_ms.append(median(b) * 1e3)
        ratios.append(median(a) / median(b))
    return ours_ms, base_ms, ratios


def run(quick: bool = False) -> list[Row]:
    jobs = 1000
    runs, repeats = (2, 5) if quick else (7, 21)
    raw = message_bytes(jobs)
    ours_ms, base_ms, ratios = _alternate(_ours, _json, raw, runs, repeats)
    all_ours, all_base, all_ratios = _alternate(_ours_every_field, _json_every_field, raw, runs, repeats)
    odd_ours, odd_base, odd_ratios = _alternate(_ours, _json, message_bytes(jobs, one_unusual=True), runs, repeats)
    big_raw = message_bytes(10_000)
    started = time.process_time()
    big = _ours(big_raw)
    big_ms = (time.process_time() - started) * 1e3
    whole = isinstance(big, RunnerScaleSetMessage) and len(big.job_started_messages) == 2500
    return [
        Row("parsing", f"CPU ms to parse a {jobs}-job message ({len(raw) // 1024} KiB) into the models, every job "
            f"touched ({runs} runs x {repeats})",
            spread(ours_ms, "{:.1f}"), spread(base_ms, "{:.1f}") + " (json.loads)", spread(ratios, "{:.2f}"),
            "<= 1.5", median(ratios) <= 1.5),
        Row("parsing", f"the same, every field of every job read ({runs} runs x {repeats})",
            spread(all_ours, "{:.1f}"), spread(all_base, "{:.1f}") + " (json.loads, dict values)",
            spread(all_ratios, "{:.2f}")),
        Row("parsing", f"the same, one job with a key in another casing: read job by job ({runs} runs x {repeats})",
            spread(odd_ours, "{:.1f}"), spread(odd_base, "{:.1f}") + " (json.loads)", spread(odd_ratios, "{:.2f}")),
        Row("parsing", f"a 10,000-job message ({len(big_raw) / 2**20:.1f} MiB): CPU ms, every job read (one run)",
            f"{big_ms:.0f}", "", "", "all 10,000 jobs", whole),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
