"""Every parser accepts any input and returns a model or raises ResponseError, never anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import scaleset_client as sc
from scaleset_client import _wire
from scaleset_client._http import error_from_response

SETTINGS = settings(max_examples=150, deadline=None)

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=30),
                    st.sampled_from(["0001-01-01T00:00:00Z", "2026-13-45T99:99:99Z", "2026-05-05T16:30:01.1234567Z",
                                     "2026-05-05T16:30:01+99:99", "JobAvailable", "JobStarted", "JobCompleted",
                                     "RunnerScaleSetJobMessages", "[]", "[{}]", "[1]"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=20)
KEYS = ["id", "name", "runnerGroupId", "labels", "RunnerSetting", "runnersetting", "createdOn", "statistics",
        "sessionId", "messageQueueUrl", "messageQueueAccessToken", "runnerScaleSet", "messageId", "messageType",
        "body", "runner", "encodedJITConfig", "runnerScaleSetId", "totalAssignedJobs", "disableUpdate",
        "isDefaultGroup", "size", "type"]
plausible = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)
MODELS = [sc.RunnerScaleSet, sc.RunnerGroup, sc.RunnerScaleSetSession, sc.RunnerScaleSetMessage,
          sc.RunnerReference, sc.JitRunnerConfig, sc.Label, sc.RunnerSetting, sc.RunnerScaleSetStatistic]


def _only_response_errors(model: Any, data: Any) -> None:
    try:
        model.from_wire(data)
    except sc.ResponseError:
        pass


@SETTINGS
@given(data=st.one_of(json_values, plausible))
def test_models_read_any_json(data: Any) -> None:
    for model in MODELS:
        _only_response_errors(model, data)


@SETTINGS
@given(jobs=st.lists(st.one_of(st.dictionaries(st.sampled_from(
    ["messageType", "runnerRequestId", "requestLabels", "queueTime", "runnerId", "result", "jobId"]),
    json_values, max_size=6), json_values), max_size=5), statistics=json_values)
def test_messages_with_any_job_bodies(jobs: list[Any], statistics: Any) -> None:
    raw = {"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(jobs),
           "statistics": statistics}
    _only_response_errors(sc.RunnerScaleSetMessage, raw)


@SETTINGS
@given(body=st.binary(max_size=300))
def test_loads_reads_any_bytes(body: bytes) -> None:
    for prefix in (b"", b"\xef\xbb\xbf"):
        try:
            _wire.loads(prefix + body)
        except sc.ResponseError:
            pass


def test_deep_nesting_is_a_response_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(sc.ResponseError):
        sc.RunnerScaleSetMessage.from_wire({"messageId": 1, "messageType": "RunnerScaleSetJobMessages",
                                            "body": deep.decode()})
    with pytest.raises(sc.ResponseError):
        _wire.loads(deep)
    with pytest.raises(sc.ResponseError, match="deeper"):
        _wire.loads(b"[" * 200 + b"]" * 200)


@SETTINGS
@given(body=st.binary(max_size=300), status=st.integers(100, 599),
       content_type=st.sampled_from(["application/json", "text/plain", "", "text/html; charset=utf-8"]))
def test_error_bodies_of_any_shape_map_to_api_errors(body: bytes, status: int, content_type: str) -> None:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers["Content-Type"] = content_type
    response.request = requests.Request("GET", "https://h/x?token=abc").prepare()
    error = error_from_response(response)
    assert isinstance(error, sc.APIError) and error.status == status and "abc" not in error.url
