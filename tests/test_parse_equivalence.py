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
from scaleset_client._messages import _parse_job

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


# -- a whole message at once (issue 28) --------------------------------------------------------
# ``RunnerScaleSetMessage.from_wire`` reads the usual message column by column (``_jobs_together``)
# and any other one job by job. Either way a message must give what the old parser gave job by
# job: the same models in the same lists, or the first job's error.
from scaleset_client._messages import _jobs_together, _times  # noqa: E402

KINDS = ("JobAvailable", "JobAssigned", "JobStarted", "JobCompleted")
EXTRA_KEYS = {"JobAvailable": ("acquireJobUrl",), "JobAssigned": (), "JobStarted": ("runnerId", "runnerName"),
              "JobCompleted": ("result", "runnerId", "runnerName")}


def _old_message(items: Any) -> tuple[str, Any]:
    """The old parser over a body's jobs, as the message did it: in order, the first error wins."""
    lists: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    try:
        for item in items:
            job = _old_parse_job(item)
            if job is not None:
                lists[type(job).__name__].append(job)
    except sc.ResponseError as exc:
        return "error", str(exc)
    return "ok", [[_seen(job) for job in lists[kind]] for kind in KINDS]


def _new_message(items: Any) -> tuple[str, Any]:
    raw = {"messageId": 3, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(items)}
    try:
        message = sc.RunnerScaleSetMessage.from_wire(raw)
    except sc.ResponseError as exc:
        return "error", str(exc)
    return "ok", [[_seen(job) for job in jobs] for jobs in (
        message.job_available_messages, message.job_assigned_messages, message.job_started_messages,
        message.job_completed_messages)]


def _seen(job: Any) -> Any:
    """Every field of a model as a user sees it: class, value, exact type, time zone."""
    return [(type(job).__name__, k, v, type(v), getattr(v, "tzinfo", None)) for k, v in sorted(_fields(job).items())]


def _time_text(d: datetime, digits: int) -> str:
    fraction = f".{d.microsecond:06d}{d.microsecond % 997:03d}"[:digits + 1] if digits else ""
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}{fraction}Z"


@st.composite
def usual_times(draw: st.DrawFn, digits: int | None) -> str:
    """A time as the service writes it (or the zero time); ``digits`` fraction digits, or any."""
    if draw(st.integers(0, 3)) == 0:
        return _wire.ZERO_TIME
    when = draw(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    return _time_text(when, draw(st.integers(0, 9)) if digits is None else digits)


@st.composite
def usual_jobs(draw: st.DrawFn, every_key: bool, digits: int | None) -> dict[str, Any]:
    """A job as the service sends it: its type's keys (or all 18, as the benchmark's), usual values."""
    kind = draw(st.sampled_from(KINDS))
    text = st.text(max_size=8)
    job: dict[str, Any] = {"messageType": kind, "runnerRequestId": draw(st.integers(-(2**63), 2**63 - 1)),
                           "repositoryName": draw(text), "ownerName": draw(text), "jobId": draw(text),
                           "jobWorkflowRef": draw(text), "jobDisplayName": draw(text),
                           "workflowRunId": draw(st.integers(0, 2**40)), "eventName": draw(text),
                           "requestLabels": draw(st.lists(text, max_size=3))}
    for key in ("queueTime", "scaleSetAssignTime", "runnerAssignTime", "finishTime"):
        job[key] = draw(usual_times(digits))
    extras = {"acquireJobUrl": draw(text), "runnerId": draw(st.integers(-(2**63), 2**63 - 1)),
              "runnerName": draw(text), "result": draw(st.sampled_from(["succeeded", "failed", "canceled"]))}
    job.update(extras if every_key else {k: extras[k] for k in EXTRA_KEYS[kind]})
    return dict(sorted(job.items(), key=lambda kv: draw(st.integers(0, 3))))  # key order varies too


WRONG_VALUES: dict[str, list[Any]] = {
    "int": [2**63, -(2**63) - 1, True, False, 1.0, 2.5, "12", None, [1]],
    "str": [5, 1.5, None, True, ["x"], {"a": 1}],
    "labels": ["abc", ["a", 1], ["a", None], None, [], {"a": "b"}, [["x"]], 7],
    "time": [None, 5, "", "0001-05-05T00:00:00Z", "0001-01-01T00:00:00.0000000Z", "0000-01-01T00:00:00Z",
             "2026-05-05T24:00:00Z", "2026-02-30T00:00:00Z", "2026-05-05T16:30:01.123456aZ",
             "2026-05-05T16:30:01.1234567 ", "2026-05-05 16:30:01.1234567Z", "2026-05-05T16:30:01.12345:7Z",
             "2026-05-05t16:30:01Z", "2026-05-05T16:30:01+00:00", "2026-0５-05T16:30:01Z", "20260505T163001Z",
             "2026-05-05T16:30:01.Z", "2026-05-05T16:30:01.123Z4567", "2026-05-05T16:30:0.11234567Z"],
}
KEY_KINDS = {**dict.fromkeys(["runnerRequestId", "workflowRunId", "runnerId"], "int"),
             **dict.fromkeys(["repositoryName", "ownerName", "jobId", "jobWorkflowRef", "jobDisplayName", "eventName",
                              "acquireJobUrl", "runnerName", "result", "messageType"], "str"),
             "requestLabels": "labels",
             **dict.fromkeys(["queueTime", "scaleSetAssignTime", "runnerAssignTime", "finishTime"], "time")}


@st.composite
def messages(draw: st.DrawFn) -> list[Any]:
    """Usual jobs, now and then one made unusual: a value of another type, range or shape, a key
    again in another casing, a key left out or in another casing only, a key the models do not
    know, an unknown type, or any job object at all."""
    every_key, digits = draw(st.booleans()), draw(st.sampled_from([None, 0, 3, 7, 9]))
    jobs: list[Any] = draw(st.lists(usual_jobs(every_key, digits), min_size=1, max_size=12))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        i = draw(st.integers(0, len(jobs) - 1))
        job = jobs[i]
        keys = sorted(k for k in job if k in WIRE_KEYS) if isinstance(job, dict) else []
        change = draw(st.integers(0, 6)) if keys else 0
        key = draw(st.sampled_from(keys)) if change else ""
        if change == 0:
            jobs[i] = draw(st.one_of(job_objects(), values))
        elif change == 1:  # a value a usual job does not have
            jobs[i] = {**job, key: draw(st.sampled_from(WRONG_VALUES[KEY_KINDS[key]]))}
        elif change == 2:  # the same key again in another casing, with a usual value (the last one counts)
            other = draw(st.sampled_from(sorted({key.lower(), key.upper(), key[0].upper() + key[1:]} - {key})))
            jobs[i] = {**job, other: draw(usual_jobs(True, digits))[key]}
        elif change == 3:  # the key in another casing only
            jobs[i] = {(k.upper() if k == key else k): v for k, v in job.items()}
        elif change == 4:  # the key left out
            jobs[i] = {k: v for k, v in job.items() if k != key}
        elif change == 5:
            jobs[i] = {**job, "someFutureField": draw(values)}
        else:
            jobs[i] = {**job, "messageType": draw(st.sampled_from(["JobSomethingNew", "", "jobavailable"]))}
    return jobs


@settings(max_examples=400, deadline=None)
@given(items=messages())
def test_a_message_reads_exactly_what_the_old_parser_read_job_by_job(items: list[Any]) -> None:
    assert _new_message(items) == _old_message(items)


@pytest.mark.parametrize("every_key", [False, True], ids=["own-keys", "every-key"])
def test_each_unusual_value_in_a_usual_message_reads_as_the_old_parser_read_it(every_key: bool) -> None:
    """Every key of every job type, given each value a usual job does not have, in a message
    of usual jobs of one time length: the column path must see it and answer as the old parser."""
    when = datetime(2026, 5, 5, 16, 30, 1, 123456)
    usual = [{"messageType": kind, "runnerRequestId": i, "repositoryName": "api", "ownerName": "octo",
              "jobId": f"j{i}", "jobWorkflowRef": "w", "jobDisplayName": "d", "workflowRunId": 7, "eventName": "push",
              "requestLabels": ["a"], "queueTime": _time_text(when, 7), "scaleSetAssignTime": _time_text(when, 7),
              "runnerAssignTime": _time_text(when, 7), "finishTime": _wire.ZERO_TIME,
              **{k: v for k, v in {"acquireJobUrl": "u", "runnerId": 3, "runnerName": "r", "result": "ok"}.items()
                 if every_key or k in EXTRA_KEYS[kind]}}
             for i, kind in enumerate(KINDS * 2)]
    assert _jobs_together(json.loads(json.dumps(usual))) is not None or not _wire.FAST_ISO
    checked = 0
    for i, job in enumerate(usual):
        for key in job:
            for wrong in WRONG_VALUES[KEY_KINDS[key]]:
                items = [*usual[:i], {**job, key: wrong}, *usual[i + 1:]]
                assert _new_message(items) == _old_message(items), (key, wrong)
                checked += 1
    assert checked > 500


needs_fast_iso = pytest.mark.skipif(not _wire.FAST_ISO, reason="the column path needs fromisoformat of 3.11")


@needs_fast_iso
@settings(max_examples=100, deadline=None)
@given(every_key=st.booleans(), digits=st.sampled_from([None, 0, 3, 7, 9]), data=st.data())
def test_usual_messages_are_read_column_by_column(every_key: bool, digits: int | None, data: st.DataObject) -> None:
    """The equivalence above covers the column path: a message of usual jobs takes it."""
    items = data.draw(st.lists(usual_jobs(every_key, digits), min_size=1, max_size=12))
    assert _jobs_together(json.loads(json.dumps(items))) is not None


def _column_outcome(column: list[str]) -> Any:
    try:
        return _times(tuple(column))
    except ValueError:
        return None


@settings(max_examples=500, deadline=None)
@given(data=st.data(), count=st.integers(1, 6), same_length=st.booleans())
def test_a_column_of_times_reads_as_each_time_alone(data: st.DataObject, count: int, same_length: bool) -> None:
    """``_times`` answers for a whole column what ``parse_time_fast`` answers for each string
    (the zero time as None), or None if that refuses one of them."""
    if same_length:  # the same-length check, with any character anywhere now and then
        first = data.draw(_timestamps())
        size = len(first)
        alike = st.one_of(_timestamps().filter(lambda s: len(s) == size), st.text(min_size=size, max_size=size))
        column = [data.draw(alike) for _ in range(count - 1)] + [first]
        column = [data.draw(st.sampled_from([s, _mutate(data, s)])) for s in column]
    else:
        column = [data.draw(st.one_of(_timestamps(), usual_times(None))) for _ in range(count)]
    each = [None if s == _wire.ZERO_TIME else _wire.parse_time_fast(s) for s in column]
    expected = None if any(v is False for v in each) else [(v, getattr(v, "tzinfo", None)) for v in each]
    got = _column_outcome(column)
    assert (None if got is None else [(v, getattr(v, "tzinfo", None)) for v in got]) == expected


@pytest.mark.parametrize("odd", [*WRONG_VALUES["time"][2:], "2026-05-05T16:30:01.1234567Z\n2026-05-05T16:30:01Z"])
@pytest.mark.parametrize("digits", [0, 3, 7])
def test_a_column_with_one_odd_time_reads_as_each_time_alone(odd: str, digits: int) -> None:
    """Known traps among usual times of one length and of several: a letter past the sixth
    fraction digit (``fromisoformat`` ignores it), hour 24 (the next day from Python 3.12), year 1
    but not the zero time, another separator, a digit that is not ASCII, two times in one."""
    usual = [_time_text(datetime(2026, 5, 5, 16, 30, 1, 123456), digits), _wire.ZERO_TIME]
    for column in ([usual[0], odd, usual[0]], [odd, usual[0], usual[0]], [usual[0], usual[1], odd], [odd, odd]):
        each = [None if s == _wire.ZERO_TIME else _wire.parse_time_fast(s) for s in column]
        expected = None if any(v is False for v in each) else each
        assert _column_outcome(column) == expected, column


def _mutate(data: st.DataObject, text: str) -> str:
    """One character of ``text`` changed (the same length: the same-length check must catch it)."""
    if not text:
        return text
    i = data.draw(st.integers(0, len(text) - 1))
    return text[:i] + data.draw(st.sampled_from(list("0129-:T.Z ٣x\n"))) + text[i + 1:]


# -- the reference client's samples (github.com/actions/scaleset) --------------------------------
# Its session client tests answer a poll with this message; its listener reads the jobs of the
# types in types.go, which json.Marshal writes in the structs' field order, with RFC 3339 times
# whose trailing zeros are cut (time.RFC3339Nano) and a nil label slice as null.
REFERENCE_MESSAGE = b'{"messageId":1,"messageType":"RunnerScaleSetJobMessages"}'


def _reference_job(kind: str, i: int, labels: tuple[str, ...] | None = ("self-hosted", "linux")) -> dict[str, Any]:
    extra: dict[str, Any] = {"JobAvailable": {"acquireJobUrl": f"https://broker.example/acquirejob/{i}"},
                             "JobAssigned": {},
                             "JobStarted": {"runnerId": i, "runnerName": f"runner-{i}"},
                             "JobCompleted": {"result": "succeeded", "runnerId": i, "runnerName": f"runner-{i}"}}[kind]
    return {**extra, "messageType": kind, "runnerRequestId": 9_000 + i, "repositoryName": "api",
            "ownerName": "octo-org", "jobId": f"job-{i}",
            "jobWorkflowRef": "octo-org/api/.github/workflows/ci.yml@main",
            "jobDisplayName": "build", "workflowRunId": 15_087_234_561, "eventName": "push",
            "requestLabels": None if labels is None else list(labels),
            "queueTime": ["2026-05-05T16:30:01.1234567Z", "2026-05-05T16:30:01.12Z", "2026-05-05T16:30:01Z"][i % 3],
            "scaleSetAssignTime": "2026-05-05T16:30:02.5Z",
            "runnerAssignTime": "0001-01-01T00:00:00Z" if kind in ("JobAvailable", "JobAssigned") else
            "2026-05-05T16:31:00.000000001Z",
            "finishTime": "2026-05-05T16:40:00Z" if kind == "JobCompleted" else "0001-01-01T00:00:00Z"}


def test_the_reference_clients_empty_message_reads_as_it_does_there() -> None:
    """No body and no statistics: message 1, no jobs, statistics None (nil in the reference)."""
    message = sc.RunnerScaleSetMessage.from_wire(_wire.loads(REFERENCE_MESSAGE))
    assert message == sc.RunnerScaleSetMessage(message_id=1, message_type="RunnerScaleSetJobMessages",
                                               statistics=None, body="")
    assert _fields(message) == _fields(sc.RunnerScaleSetMessage(1))


@pytest.mark.parametrize("items", [
    [_reference_job(kind, i) for i, kind in enumerate(KINDS * 3)],  # the column path (mixed time lengths)
    [_reference_job("JobAvailable", i) for i in range(5)],
    [_reference_job(kind, i, labels=None if i == 2 else ("x",)) for i, kind in enumerate(KINDS)],  # null labels
], ids=["every-type", "available-only", "null-labels"])
def test_the_reference_clients_job_shapes_read_as_the_old_parser_read_them(items: list[dict[str, Any]]) -> None:
    assert _new_message(items) == _old_message(items)
    raw = json.dumps({"messageId": 2, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(items),
                      "statistics": {"totalAssignedJobs": len(items)}}).encode()
    message = sc.RunnerScaleSetMessage.from_wire(_wire.loads(raw))
    assert sum(map(len, (message.job_available_messages, message.job_assigned_messages,
                         message.job_started_messages, message.job_completed_messages))) == len(items)


@needs_fast_iso
def test_the_reference_clients_job_shapes_take_the_column_path() -> None:
    assert _jobs_together([_reference_job(kind, i) for i, kind in enumerate(KINDS * 3)]) is not None
