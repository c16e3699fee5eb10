"""Answers that are not answers: no HTTP answer at all (refused, dropped), a 200 or 201 whose body is
empty or not JSON, a body over a size limit. What the caller is raised and what the error names
(method and URL, status 0 for no answer, the size, the message's id), what the breaker is told,
and what is logged."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client


def test_a_dropped_connection_names_the_method_and_url_it_failed_on(client: sc.Client, fake: FakeActionsService,
                                                                     scale_set: sc.RunnerScaleSet) -> None:
    fake.inject_always("get_runner_scale_set_by_id", Fault.drop())
    with pytest.raises(sc.RetryExhaustedError) as info:
        client.get_runner_scale_set_by_id(scale_set.id)
    fake.clear_faults("get_runner_scale_set_by_id")
    last = info.value.last_error
    assert isinstance(last, sc.TransportError) and last.method == "GET"
    assert str(last).startswith("GET http") and " failed: " in str(last)


def test_a_call_that_never_got_an_answer_reports_no_status(fake: FakeActionsService, clock: FakeClock) -> None:
    """Status 0 says "no HTTP answer at all" (refused, reset, timed out): a caller must not read a
    status the service never sent."""
    config = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None  # the admin token is held from here
        fake.stop("actions")
        with pytest.raises(sc.RetryExhaustedError) as info:
            client.get_runner_by_name("x")
        assert info.value.attempts == 2 and info.value.status == 0


def test_debug_logging_of_a_call_that_got_no_answer(fake: FakeActionsService, clock: FakeClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="scaleset_client")
    config = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1))
    with make_client(fake, clock, resilience=config) as client:
        assert client.get_runner_by_name("x") is None
        fake.stop("actions")
        with pytest.raises(sc.TransportError):
            client.get_runner_by_name("x")
    assert any(" -> 200 (attempt 1, get_runner_by_name)" in r.getMessage() for r in caplog.records)


def test_a_200_without_json_is_a_breaker_failure_named_as_such(client: sc.Client, fake: FakeActionsService,
                                                               scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(200, b"", content_type="application/json"))
    assert client.get_runner_scale_set_by_id(scale_set.id) is not None  # retried, then answered
    assert fake.count("get_runner_scale_set_by_id") == 2
    reasons = {b.operation_class: b.last_failure_reason for b in client.circuit_breakers.all()}
    assert reasons["admin"] == "HTTP 200 with an empty or non-JSON body"


def test_a_201_without_json_is_retried_like_a_200(client: sc.Client, fake: FakeActionsService,
                                                  scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(201, b"", content_type="application/json"))
    assert client.get_runner_scale_set_by_id(scale_set.id) is not None
    assert fake.count("get_runner_scale_set_by_id") == 2


@pytest.mark.parametrize("size,oversized", [(4096, False), (4097, True)])
def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(
        fake: FakeActionsService, clock: FakeClock, size: int, oversized: bool) -> None:
    """The cap counts the bytes of a body with no Content-Length (chunked): at most the limit."""
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        with client.message_session(scale_set.id) as session:
            fake.queue_job(scale_set.id)
            message = session.get_message(0, 1)
            assert message is not None
            # An ack answered 200 (not 204) with a body: refused for its status, or for its size.
            fake.inject("delete_message", Fault.huge(size, chunked=True))
            with pytest.raises(sc.APIError if not oversized else sc.ResponseError) as info:
                session.delete_message(message.message_id)
            assert ("exceeds the 4096-byte limit" in str(info.value)) is oversized
    finally:
        client.close()


def _padded_message(message_id: int, size: int) -> bytes:
    head = b'{"messageId": %d, "messageType": "RunnerScaleSetJobMessages", "body": "[]", "pad": "' % message_id
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_message_says_how_big_and_which_message_it_was(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, declared: bool) -> None:
    """Declared too big: refused before reading, the id read from the first bytes. Streamed too big:
    refused once past the cap, the id read from what arrived. Either way the listener can set the
    message aside by id instead of polling it for ever."""
    limit = 64 * 1024
    with make_client(fake, clock, resilience=sc.ResilienceConfig(max_message_bytes=limit)) as client:
        with client.message_session(scale_set.id) as session:
            body = _padded_message(4242, 100_000)
            fault = (Fault.respond(200, body, content_type="application/json") if declared
                     else Fault.huge(100_000, chunked=True))
            fake.inject("get_message", fault)
            with pytest.raises(sc.ResponseError) as info:
                session.get_message(0, 1)
    what = "response of 100000 bytes" if declared else "response"
    assert str(info.value) == f"get_message: {what} exceeds the {limit}-byte limit"
    assert info.value.message_id == (4242 if declared else None)


def test_a_body_of_exactly_the_declared_limit_is_read(fake: FakeActionsService, clock: FakeClock,
                                                      scale_set: sc.RunnerScaleSet) -> None:
    limit = 64 * 1024
    with make_client(fake, clock, resilience=sc.ResilienceConfig(max_message_bytes=limit)) as client:
        with client.message_session(scale_set.id) as session:
            fake.inject("get_message", Fault.respond(200, _padded_message(4243, limit),
                                                     content_type="application/json"))
            message = session.get_message(0, 1)
    assert message is not None and message.message_id == 4243
