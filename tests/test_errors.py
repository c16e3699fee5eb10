from __future__ import annotations

import pickle

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault

ALL_ERRORS = [
    sc.ConfigError("bad"),
    sc.ResponseError("bad body", operation="get_message", body_excerpt="x"),
    sc.TransportError("down", method="GET", url="http://h/x", delivered=False),
    sc.APIError("msg", status=500, reason="Internal", type_name="T", activity_id="a", github_request_id="g",
                method="GET", url="http://h/x", headers={"retry-after": "1"}),
    sc.AuthenticationError("no", status=401),
    sc.RateLimitedError("slow down", retry_at=123.0, status=429),
    sc.RunnerNotFoundError("x", status=404),
    sc.RunnerExistsError("x", status=409),
    sc.JobStillRunningError("x", status=400),
    sc.MessageQueueTokenExpiredError("x", status=401),
    sc.SessionConflictError("x", status=409),
    sc.SessionNotFoundError("x", status=404),
    sc.ScaleSetNotFoundError("x", status=404),
    sc.CircuitOpenError("open", origin="https://h:443", operation_class="admin", retry_after=3.0),
    sc.RetryExhaustedError("gave up", attempts=5, status=503, last_error=sc.APIError("x", status=503)),
    sc.RecoveryError("nope"),
]


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_attributes(error: sc.ScalesetError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and str(clone) == str(error) and clone.__dict__.keys() == error.__dict__.keys()
    assert isinstance(clone, sc.ScalesetError)


def test_api_error_message_carries_diagnostics() -> None:
    error = sc.APIError("could not do something", status=400, reason="Bad Request", type_name="CSharpException",
                        activity_id="5ddf2050", github_request_id="ABCD", method="GET", url="https://h/x")
    assert str(error) == ('request GET https://h/x failed(status="400 Bad Request", activity_id="5ddf2050", '
                          'github_request_id="ABCD"): CSharpException: could not do something')


TYPE_NAMES = [
    ("GitHub.DistributedTask.WebApi.AgentExistsException, GitHub.DistributedTask.WebApi", 409, sc.RunnerExistsError),
    ("GitHub.DistributedTask.WebApi.AgentNotFoundException, X", 404, sc.RunnerNotFoundError),
    ("GitHub.DistributedTask.WebApi.JobStillRunningException, X", 400, sc.JobStillRunningError),
    ("GitHub.DistributedTask.WebApi.JobStillRunningException, X", 409, sc.JobStillRunningError),
    ("GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, X", 409, sc.SessionConflictError),
    ("GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException, X", 404, sc.ScaleSetNotFoundError),
    ("GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, X", 400, sc.SessionNotFoundError),
    ("CSharpExceptionNameHere", 400, sc.APIError),
]


@pytest.mark.parametrize(("type_name", "status", "cls"), TYPE_NAMES)
def test_type_names_map_to_their_error_class_whatever_the_status(
        client: sc.Client, fake: FakeActionsService, type_name: str, status: int, cls: type) -> None:
    fake.inject("get_runner", Fault.error(status, type_name, "could not do something",
                                          headers={"ActivityId": "act-123"}))
    with pytest.raises(sc.APIError) as info:
        client.get_runner(7)
    error = info.value
    assert type(error) is cls
    assert (error.status, error.type_name, error.message, error.activity_id) == (
        status, type_name, "could not do something", "act-123")
    assert 'activity_id="act-123"' in str(error) and error.method == "GET"


def test_text_plain_error_body_is_the_message(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(400, "capacity error", content_type="text/plain"))
    with pytest.raises(sc.APIError) as info:
        client.get_runner_scale_set_by_id(1)
    assert info.value.message == "capacity error"


def test_empty_error_body_reads_unknown_error(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("get_runner", Fault.respond(404))
    with pytest.raises(sc.APIError) as info:
        client.get_runner(7)
    assert info.value.message == "unknown error" and 'status="404 Not Found"' in str(info.value)


def test_invalid_json_error_body_is_quoted(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("get_runner", Fault.respond(400, "{oops", content_type="application/json"))
    with pytest.raises(sc.APIError) as info:
        client.get_runner(7)
    assert "failed to parse error response body" in info.value.message and "{oops" in info.value.message


def test_github_rest_error_parses_with_empty_type_name(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("registration_token", Fault.respond(
        403, json_body={"message": "Resource not accessible by integration", "documentation_url": "x"}))
    with pytest.raises(sc.AuthenticationError) as info:
        client.get_runner(7)
    assert info.value.type_name == "" and info.value.message == "Resource not accessible by integration"
