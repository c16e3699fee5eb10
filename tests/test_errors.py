from __future__ import annotations

import pickle
import sys

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
    sc.ServerError("busy", status=503, headers={"retry-after": "5"}),
    sc.RunSkippedError("skipped", retry_at=1_800_000_060.0, retry_after=60.0),
    sc.TransientError("wait"),
    sc.DeadlineExceededError("late", method="GET", url="http://h/x"),
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


TRANSIENT = [sc.TransportError, sc.DeadlineExceededError, sc.CallCancelledError, sc.CircuitOpenError,
             sc.RetryExhaustedError, sc.RateLimitedError, sc.ServerError, sc.RunSkippedError]
NOT_TRANSIENT = [sc.ConfigError, sc.ResponseError, sc.StateFileError, sc.APIError, sc.AuthenticationError,
                 sc.ScaleSetNotFoundError, sc.SessionConflictError, sc.RecoveryError]


@pytest.mark.parametrize("cls", TRANSIENT + NOT_TRANSIENT, ids=lambda c: c.__name__)
def test_which_errors_are_worth_waiting_out(cls: type[sc.ScalesetError]) -> None:
    assert issubclass(cls, sc.TransientError) is (cls in TRANSIENT)
    assert issubclass(cls, sc.ScalesetError)
    assert cls.__name__ in (sys.modules["scaleset_client._errors"].__doc__ or "")  # drawn in the tree


def test_circuit_open_keeps_its_relative_retry_after_and_gains_the_absolute_retry_at() -> None:
    error = sc.CircuitOpenError("open", origin="o", retry_after=3.0, retry_at=1_800_000_003.0)
    assert (error.retry_after, error.retry_at) == (3.0, 1_800_000_003.0)
    held = sc.CircuitOpenError("forced open", origin="o")
    assert (held.retry_after, held.retry_at) == (None, None)


def test_rate_limited_keeps_its_absolute_retry_at_and_gains_retry_after() -> None:
    error = sc.RateLimitedError("slow down", retry_at=1_800_000_090.0, retry_after=90.0, status=429)
    assert (error.retry_at, error.retry_after, error.status) == (1_800_000_090.0, 90.0, 429)


def test_one_half_of_the_convention_gives_the_other_on_the_system_clock() -> None:
    import time

    before = time.time()
    error = sc.RetryExhaustedError("gave up", retry_after=30.0)
    assert error.retry_at is not None and before + 30.0 <= error.retry_at <= time.time() + 30.0
    late = sc.RateLimitedError("slow down", retry_at=before + 60.0)
    assert late.retry_after is not None and 59.0 <= late.retry_after <= 60.0
    past = sc.RunSkippedError("skipped", retry_at=before - 10.0)
    assert past.retry_after == 0.0  # never negative


def test_run_skipped_error_is_one_class_wherever_it_is_imported_from() -> None:
    from scaleset_client._errors import RunSkippedError as from_errors
    from scaleset_client._listener import RunSkippedError as from_listener
    from scaleset_client._listener_config import RunSkippedError as from_config

    assert sc.RunSkippedError is from_errors is from_config is from_listener


def test_recast_keeps_every_diagnostic_and_takes_the_new_class_and_message() -> None:
    original = sc.APIError("gone", status=404, reason="Not Found", type_name="T", activity_id="a",
                           github_request_id="g", method="GET", url="http://h/x", body_excerpt="{}",
                           headers={"activityid": "a"})
    sharper = original.recast(sc.ScaleSetNotFoundError, "scale set 7 no longer exists")
    assert type(sharper) is sc.ScaleSetNotFoundError and sharper.message == "scale set 7 no longer exists"
    kept = ("status", "reason", "type_name", "activity_id", "github_request_id", "method", "url", "body_excerpt",
            "headers")
    assert {k: getattr(sharper, k) for k in kept} == {k: getattr(original, k) for k in kept}
    assert str(sharper).startswith('request GET http://h/x failed(status="404 Not Found", activity_id="a"')
    same = original.recast(sc.APIError)
    assert same.message == "gone" and same is not original
    limited = sc.RateLimitedError("slow", retry_at=1_800_000_090.0, retry_after=90.0, status=429)
    assert limited.recast(sc.RateLimitedError, "still slow").retry_at == 1_800_000_090.0


def test_a_5xx_answer_is_a_server_error_and_a_501_is_not(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("create_runner_scale_set", Fault.respond(500, "boom"))  # a POST: not repeated
    with pytest.raises(sc.ServerError) as info:
        client.create_runner_scale_set(sc.RunnerScaleSet(name="x", runner_group_id=1))
    assert info.value.status == 500 and isinstance(info.value, sc.TransientError)
    fake.inject("get_runner", Fault.respond(501))
    with pytest.raises(sc.APIError) as other:
        client.get_runner(7)
    assert type(other.value) is sc.APIError and other.value.status == 501
