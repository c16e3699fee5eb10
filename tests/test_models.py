from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import scaleset_client as sc
from scaleset_client import _wire

SCALE_SET = {
    "id": 42, "name": "linux-x64", "runnerGroupId": 1, "runnerGroupName": "Default",
    "labels": [{"type": "System", "name": "linux-x64"}, {"name": "gpu"}],
    "RunnerSetting": {"disableUpdate": True}, "createdOn": "2026-05-05T16:27:43.517Z",
    "statistics": {"totalAvailableJobs": 0, "totalAssignedJobs": 3}, "someFutureField": {"x": 1},
}


def test_scale_set_reads_leniently_with_any_key_casing() -> None:
    parsed = sc.RunnerScaleSet.from_wire(SCALE_SET)
    assert parsed.id == 42 and parsed.runner_group_id == 1 and parsed.runner_setting.disable_update
    assert parsed.labels == [sc.Label("linux-x64"), sc.Label("gpu", "System")]
    assert parsed.statistics is not None and parsed.statistics.total_assigned_jobs == 3
    lower = {k[0].lower() + k[1:]: v for k, v in SCALE_SET.items()}
    assert sc.RunnerScaleSet.from_wire(lower).runner_setting.disable_update


def test_scale_set_request_body_is_exactly_the_wire_shape() -> None:
    body = sc.RunnerScaleSet(name="linux-x64", runner_group_id=1, labels=[sc.Label("linux-x64")]).to_wire()
    assert json.dumps(body, separators=(",", ":")) == (
        '{"name":"linux-x64","runnerGroupId":1,"labels":[{"type":"System","name":"linux-x64"}],'
        '"RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}')


def test_timestamps_accept_seven_fraction_digits_offsets_and_zero_time() -> None:
    assert _wire.parse_time("0001-01-01T00:00:00Z") is None
    t = _wire.parse_time("2026-05-05T16:30:01.1234567Z")
    assert t == datetime(2026, 5, 5, 16, 30, 1, 123456, tzinfo=timezone.utc)
    assert _wire.parse_time("2026-05-05T18:30:01+02:00") == datetime(2026, 5, 5, 16, 30, 1, tzinfo=timezone.utc)
    assert _wire.format_time(t) == "2026-05-05T16:30:01.123456Z"


def test_message_body_string_is_parsed_and_unknown_job_types_ignored() -> None:
    jobs = [
        {"messageType": "JobAvailable", "runnerRequestId": 1, "acquireJobUrl": "u",
         "queueTime": "0001-01-01T00:00:00Z"},
        {"messageType": "SomethingNew", "runnerRequestId": 9},
        {"messageType": "JobStarted", "runnerRequestId": 2, "runnerId": 7, "runnerName": "r7"},
        {"messageType": "JobCompleted", "runnerRequestId": 3, "result": "canceled", "runnerId": 7},
        {"messageType": "JobAssigned", "runnerRequestId": 4},
        {"messageType": "JobAvailable", "runnerRequestId": 5},
    ]
    raw = {"messageId": 100, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(jobs),
           "statistics": {"totalAssignedJobs": 2}}
    message = sc.RunnerScaleSetMessage.from_wire(raw)
    assert [j.runner_request_id for j in message.job_available_messages] == [1, 5]
    assert message.job_started_messages[0].runner_name == "r7"
    assert message.job_completed_messages[0].result == "canceled"
    assert [j.runner_request_id for j in message.job_assigned_messages] == [4]
    assert message.statistics is not None and message.statistics.total_assigned_jobs == 2


def test_message_with_empty_body_has_no_jobs_and_missing_statistics_is_none() -> None:
    message = sc.RunnerScaleSetMessage.from_wire({"messageId": 1, "messageType": "RunnerScaleSetJobMessages",
                                                  "body": ""})
    assert message.statistics is None and message.job_available_messages == []


@pytest.mark.parametrize("raw", [
    {"messageId": 1, "messageType": "SomethingElse", "body": ""},
    {"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": "{not json"},
    {"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": '{"a": 1}'},
    {"messageId": "x", "messageType": "RunnerScaleSetJobMessages"},
    {"messageId": True, "messageType": "RunnerScaleSetJobMessages"},
    [1, 2],
    None,
])
def test_bad_messages_raise_response_error_only(raw: object) -> None:
    with pytest.raises(sc.ResponseError):
        sc.RunnerScaleSetMessage.from_wire(raw)


def test_bom_is_stripped_before_parsing() -> None:
    assert _wire.loads(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}
    with pytest.raises(sc.ResponseError):
        _wire.loads(b"\xef\xbb\xbf")


def test_secrets_stay_out_of_model_reprs() -> None:
    session = sc.RunnerScaleSetSession(session_id="s", message_queue_access_token="queue-secret-token")
    jit = sc.JitRunnerConfig(encoded_jit_config="jit-secret-config")
    assert "queue-secret-token" not in repr(session)
    assert "jit-secret-config" not in repr(jit)


def test_user_agent_is_compact_json_in_protocol_order() -> None:
    ua = sc.SystemInfo(system="dockerscaleset", version="0.1.0", scale_set_id=42, subsystem="listener",
                       build_version="v0.4.0", build_commit_sha="v0.4.0").user_agent()
    assert ua == ('{"system":"dockerscaleset","version":"0.1.0","commit_sha":"NA","scale_set_id":42,'
                  '"subsystem":"listener","build_version":"v0.4.0","build_commit_sha":"v0.4.0","kind":"scaleset"}')


def test_session_problems_name_what_is_missing() -> None:
    assert sc.RunnerScaleSetSession(session_id="00000000-0000-0000-0000-000000000000").problems() == [
        "sessionId is empty", "messageQueueUrl is not an absolute http(s) URL", "messageQueueAccessToken is empty"]


def test_models_behave_as_the_frozen_dataclasses_they_were() -> None:
    """Issue 28: the models are no longer dataclasses, but keep what users relied on."""
    import copy
    import dataclasses
    import inspect
    import pickle

    job = sc.JobStarted(runner_request_id=7, request_labels=["x"], runner_id=3, runner_name="r3")
    assert job == sc.JobStarted(7, "", "", "", "", "", 0, "", ["x"], runner_id=3, runner_name="r3")
    assert job != sc.JobCompleted(runner_request_id=7, request_labels=["x"], runner_id=3, runner_name="r3")
    assert sc.Label("a") == sc.Label("a", "System") and hash(sc.Label("a")) == hash(sc.Label(name="a"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.runner_id = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del job.runner_id  # type: ignore[misc]
    with pytest.raises(TypeError):
        sc.Label()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sc.Label("a", bogus=1)  # type: ignore[call-arg]
    assert not hasattr(job, "__dict__")
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(job, proto)) == job
    assert copy.deepcopy(job) == job and copy.copy(job) == job
    assert [f.name for f in dataclasses.fields(sc.JobStarted)][-2:] == ["runner_id", "runner_name"]
    assert dataclasses.is_dataclass(job) and dataclasses.asdict(job)["runner_name"] == "r3"
    assert dataclasses.replace(job, runner_id=5).runner_id == 5
    assert list(inspect.signature(sc.Label).parameters) == ["name", "type"]
    assert repr(sc.Label("a")) == "Label(name='a', type='System')"
    assert sc.JobStarted.__match_args__[0] == "runner_request_id"
    assert sc.RunnerScaleSet(name="x").fields_set() == {"name"}
    unset = sc.RunnerScaleSet().runner_setting
    assert unset == sc.RunnerSetting() and hash(unset) == hash(sc.RunnerSetting())


def test_importing_the_models_loads_neither_dataclasses_nor_inspect() -> None:
    import subprocess
    import sys

    code = ("import sys, requests; before = set(sys.modules); import scaleset_client._models; "
            "print(sorted({'dataclasses', 'inspect', 'ast', 'dis'} & (set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
