"""The fast job-message parser reads exactly what the old, simple one read (issue 14).

The old implementation (per-job key lowering, one regular expression per timestamp) is kept
below as the reference. For any job object, both must give the same model, or both a
``ResponseError`` with the same text.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaleset_client as sc
from scaleset_client import _wire
from scaleset_client._models import _parse_job

# -- the reference: the parser as it was before issue 14 -------------------------------------
_OLD_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)
_INT64 = 2**63


def _old_lower_keys(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise sc.ResponseError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return {str(k).lower(): v for k, v in data.items()}


def _old_int(d: dict[str, Any], key: str, what: str) -> int:
    value = d.get(key.lower())
    if value is None:
        return 0
    if isinstance(value, bool):
        raise sc.ResponseError(f"{what}.{key}: expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise sc.ResponseError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    if not -_INT64 <= value < _INT64:
        raise sc.ResponseError(f"{what}.{key}: integer out of the int64 range")
    return value


def _old_str(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key.lower())
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise sc.ResponseError(f"{what}.{key}: expected a string, got {type(value).__name__}")
    return value


def _old_parse_time(text: str) -> datetime | None:
    m = _OLD_TIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    zone = m.group(8)
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tz).astimezone(timezone.utc)


def _old_time(d: dict[str, Any], key: str, what: str) -> datetime | None:
    value = d.get(key.lower())
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise sc.ResponseError(f"{what}.{key}: expected a timestamp string, got {type(value).__name__}")
    try:
        return _old_parse_time(value)
    except ValueError as exc:
        raise sc.ResponseError(f"{what}.{key}: {exc}") from None


def _old_parse_job(item: Any) -> sc.JobMessage | None:
    d = _old_lower_keys(item, "job message")
    kind = _old_str(d, "messageType", "job message")
    what = kind or "job message"
    labels = d.get("requestlabels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise sc.ResponseError(f"{what}.requestLabels: expected a list of strings")
    common: dict[str, Any] = {
        "runner_request_id": _old_int(d, "runnerRequestId", what),
        "repository_name": _old_str(d, "repositoryName", what),
        "owner_name": _old_str(d, "ownerName", what),
        "job_id": _old_str(d, "jobId", what),
        "job_workflow_ref": _old_str(d, "jobWorkflowRef", what),
        "job_display_name": _old_str(d, "jobDisplayName", what),
        "workflow_run_id": _old_int(d, "workflowRunId", what),
        "event_name": _old_str(d, "eventName", what),
        "request_labels": list(labels),
        "queue_time": _old_time(d, "queueTime", what),
        "scale_set_assign_time": _old_time(d, "scaleSetAssignTime", what),
        "runner_assign_time": _old_time(d, "runnerAssignTime", what),
        "finish_time": _old_time(d, "finishTime", what),
    }
    if kind == "JobAvailable":
        return sc.JobAvailable(**common, acquire_job_url=_old_str(d, "acquireJobUrl", what))
    if kind == "JobAssigned":
        return sc.JobAssigned(**common)
    if kind == "JobStarted":
        return sc.JobStarted(**common, runner_id=_old_int(d, "runnerId", what),
                             runner_name=_old_str(d, "runnerName", what))
    if kind == "JobCompleted":
        return sc.JobCompleted(**common, result=_old_str(d, "result", what), runner_id=_old_int(d, "runnerId", what),
                               runner_name=_old_str(d, "runnerName", what))
    return None


def _outcome(parse: Any, item: Any) -> tuple[str, Any]:
    try:
        job = parse(item)
    except sc.ResponseError as exc:
        return "error", str(exc)
    # Compare the model and the exact types (a datetime equal to another with another tzinfo is
    # still a difference a user could see).
    fields = None if job is None else [(type(job).__name__, k, v, type(v), getattr(v, "tzinfo", None))
                                       for k, v in sorted(_fields(job).items())]
    return "ok", fields


def _fields(job: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


# -- inputs ------------------------------------------------------------------------------------
WIRE_KEYS = ["messageType", "runnerRequestId", "repositoryName", "ownerName", "jobId", "jobWorkflowRef",
             "jobDisplayName", "workflowRunId", "eventName", "requestLabels", "queueTime", "scaleSetAssignTime",
             "runnerAssignTime", "finishTime", "acquireJobUrl", "runnerId", "runnerName", "result"]


def _timestamps() -> st.SearchStrategy[str]:
    fast = st.builds(
        lambda y, mo, d, h, mi, s, frac: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}Z",
        st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 60),
        st.integers(0, 61), st.sampled_from(["", ".", ".1", ".123456", ".1234567", ".123456789012", ".12a"]))
    odd = st.sampled_from([
        "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.0000000Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00",
        "2026-05-05T16:30:01.1234567Z", "2026-05-05t16:30:01Z", "2026-05-05 16:30:01Z", "2026-05-05T16:30:01z",
        "2026-05-05T16:30:01+02:00", "2026-05-05T16:30:01-0230", "2026-05-05T16:30:01", " 2026-05-05T16:30:01Z ",
        "2026-05-05T16:30:01Z\n", "2026-05-05T24:00:00Z", "2026-02-30T00:00:00Z", "2026-05-05T16:30:60Z",
        "2026-0５-05T16:30:01Z", "+026-05-05T16:30:01Z", " 026-05-05T16:30:01Z", "2026-05-05T16:3 :01Z",
        "2026-W01-1T16:30:01Z", "20260505T163001Z", "2026-05-05T16:30:01,5Z", "2026-05-05T16:30:01.5+01:00Z",
        "2026-05-05T1:30:01.5Z", "", "Z", "not a time",
    ])
    return st.one_of(fast, odd, st.text(max_size=30))


values = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
                   st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3),
                   st.lists(st.one_of(st.integers(), st.none()), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                             st.integers(), max_size=2))
wire_keys = st.sampled_from(WIRE_KEYS)
keys = st.one_of(wire_keys, wire_keys.map(str.lower), wire_keys.map(str.upper),
                 wire_keys.map(lambda k: k[0].upper() + k[1:]), st.text(max_size=8))


@st.composite
def job_objects(draw: st.DrawFn) -> Any:
    job: dict[str, Any] = {"messageType": draw(st.sampled_from(
        ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted", "SomethingNew", ""]))}
    for key in ("runnerRequestId", "workflowRunId", "runnerId"):
        if draw(st.booleans()):
            job[key] = draw(st.one_of(st.integers(0, 2**40), values))
    for key in ("repositoryName", "ownerName", "jobId", "jobWorkflowRef", "jobDisplayName", "eventName",
                "acquireJobUrl", "runnerName", "result"):
        if draw(st.booleans()):
            job[key] = draw(st.one_of(st.text(max_size=10), values))
    if draw(st.booleans()):
        job["requestLabels"] = draw(st.one_of(st.lists(st.text(max_size=6), max_size=3), values))
    for key in ("queueTime", "scaleSetAssignTime", "runnerAssignTime", "finishTime"):
        if draw(st.booleans()):
            job[key] = draw(st.one_of(_timestamps(), values))
    extra = draw(st.dictionaries(keys, st.one_of(values, _timestamps()), max_size=4))
    items = list(job.items()) + list(extra.items())
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order)


@settings(max_examples=600, deadline=None)
@given(item=st.one_of(job_objects(), values))
def test_fast_job_parser_reads_exactly_what_the_old_one_read(item: Any) -> None:
    assert _outcome(_parse_job, item) == _outcome(_old_parse_job, item)


@settings(max_examples=300, deadline=None)
@given(text=_timestamps())
def test_fast_timestamps_match_the_regular_expression(text: str) -> None:
    def read(parse: Any) -> tuple[str, Any]:
        try:
            value = parse(text)
        except ValueError as exc:
            return "error", str(exc)
        return "ok", (value, getattr(value, "tzinfo", None))

    assert read(_wire.parse_time) == read(_old_parse_time)


# -- a fixed corpus, and a message of 10,000 jobs ----------------------------------------------------
def _job(i: int) -> dict[str, Any]:
    kind = ("JobAvailable", "JobAssigned", "JobStarted", "JobCompleted", "Unknown")[i % 5]
    job: dict[str, Any] = {
        "messageType": kind, "runnerRequestId": 1000 + i, "repositoryName": "repo", "ownerName": "octo",
        "jobId": f"job-{i}", "jobWorkflowRef": "octo/repo/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": f"build {i}", "workflowRunId": 555_000 + i, "eventName": "push",
        "requestLabels": ["self-hosted", f"l{i % 3}"],
        "queueTime": f"2026-01-02T03:{i % 60:02d}:05.{i * 1234567 % 10_000_000:07d}Z",
        "scaleSetAssignTime": "2026-01-02T03:04:06Z" if i % 2 else "0001-01-01T00:00:00Z",
        "runnerAssignTime": "2026-01-02T05:04:06+02:00" if i % 7 == 0 else "0001-01-01T00:00:00Z",
        "finishTime": None if i % 11 == 0 else "0001-01-01T00:00:00Z",
        "acquireJobUrl": f"https://broker/acquire/{i}", "runnerId": i % 50, "runnerName": f"r-{i % 50}",
        "result": "succeeded", "someFutureField": {"nested": [i]},
    }
    if i % 13 == 0:  # another casing now and then: read the slow way, same result
        job["RunnerRequestId"] = job.pop("runnerRequestId")
    if i % 17 == 0:
        job["runnerRequestId"] = str(1000 + i)  # lenient: a number in a string
    return job


def test_ten_thousand_job_message_is_parsed_like_the_old_parser_did() -> None:
    jobs = [_job(i) for i in range(10_000)]
    raw = json.dumps({"messageId": 7, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(jobs),
                      "statistics": {"totalAssignedJobs": 10_000}}).encode()
    message = sc.RunnerScaleSetMessage.from_wire(_wire.loads(raw))
    expected = [j for j in (_old_parse_job(x) for x in jobs) if j is not None]
    got = [*message.job_available_messages, *message.job_assigned_messages, *message.job_started_messages,
           *message.job_completed_messages]
    assert len(got) == 8_000
    assert sorted(got, key=lambda j: j.runner_request_id) == sorted(expected, key=lambda j: j.runner_request_id)
    assert message.job_started_messages[0].queue_time == datetime(2026, 1, 2, 3, 2, 5, 246913, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad, text", [
    ({"messageType": "JobStarted", "queueTime": 5}, "JobStarted.queueTime: expected a timestamp string, got int"),
    ({"messageType": "JobStarted", "finishTime": "2026-13-01T00:00:00Z"}, "JobStarted.finishTime: month must be"),
    ({"messageType": "JobStarted", "requestLabels": ["a", 1]}, "JobStarted.requestLabels: expected a list"),
    ({"messageType": "JobStarted", "runnerRequestId": 2**63}, "JobStarted.runnerRequestId: integer out of"),
])
def test_bad_job_fields_name_the_field(bad: dict[str, Any], text: str) -> None:
    with pytest.raises(sc.ResponseError, match=re.escape(text)):
        _parse_job(bad)


def test_ten_thousand_job_message_is_received_not_refused(client: sc.Client, fake: Any) -> None:
    """About 7 MB on the wire: within the default body limit, read whole and in order."""
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="big"))
    jobs = [{**_job(i), "messageType": "JobAvailable"} for i in range(10_000)]
    fake.push_message(scale_set.id, jobs, statistics={"totalAssignedJobs": 10_000})
    with client.message_session(scale_set.id) as session:
        message = session.get_message(0, 10)
    assert message is not None
    assert [j.runner_request_id for j in message.job_available_messages] == [1000 + i for i in range(10_000)]
