"""The message queue through a session (protocol §4): polling (lastMessageId, capacity), acknowledging
(the path, 204 and 404, retries), acquiring jobs, unreadable and oversized messages, and errors
that name the operation they came from.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault


def _move_queue(fake: FakeActionsService, session: sc.MessageSession, queue_url: str) -> None:
    """The next session refresh answers the same session with the message queue at ``queue_url``."""
    current = session.session
    fake.inject("refresh_session", Fault.respond(200, json_body={
        "sessionId": current.session_id, "ownerName": current.owner_name, "messageQueueUrl": queue_url,
        "messageQueueAccessToken": current.message_queue_access_token, "statistics": {}}))
    session.refresh()


def test_poll_receives_acks_and_long_poll_ends_empty(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        rid = fake.queue_job(scale_set.id)
        message = session.get_message(0, max_capacity=3)
        assert message is not None and [j.runner_request_id for j in message.job_available_messages] == [rid]
        poll = fake.requests("get_message")[-1]
        assert poll.headers["X-ScaleSetMaxCapacity"] == "3"
        assert poll.headers["Accept"] == "application/json; api-version=6.0-preview"
        assert "Content-Type" not in poll.headers and poll.query == {}
        assert session.acquire_jobs([rid]) == [rid]
        assert fake.requests("acquire_jobs")[-1].json() == [rid]
        session.delete_message(message.message_id)
        assigned = session.get_message(message.message_id, max_capacity=3)  # the service confirms it
        assert assigned is not None and [j.runner_request_id for j in assigned.job_assigned_messages] == [rid]
        assert assigned.statistics is not None and assigned.statistics.total_assigned_jobs == 1
        assert fake.requests("get_message")[-1].query == {"lastMessageId": str(message.message_id)}
        session.delete_message(assigned.message_id)
        assert fake.unacked(scale_set.id) == []
        assert session.get_message(assigned.message_id, max_capacity=3) is None


def test_unacknowledged_messages_come_again(client: sc.Client, fake: FakeActionsService,
                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.queue_job(scale_set.id)
        first = session.get_message(0, 1)
        again = session.get_message(0, 1)
        assert first is not None and again is not None and again.message_id == first.message_id


def test_acquire_with_no_ids_sends_nothing(client: sc.Client, fake: FakeActionsService,
                                          scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        assert session.acquire_jobs([]) == []
    assert fake.count("acquire_jobs") == 0


def test_acquire_returns_only_what_was_acquired(client: sc.Client, fake: FakeActionsService,
                                               scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        rid = fake.queue_job(scale_set.id)
        assert session.acquire_jobs([rid, 123]) == [rid]


def test_ack_of_an_already_deleted_message_is_done(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.queue_job(scale_set.id)
        message = session.get_message(0, 1)
        assert message is not None
        session.delete_message(message.message_id)
        session.delete_message(message.message_id)


def test_capacity_out_of_range_is_rejected_before_sending(client: sc.Client, fake: FakeActionsService,
                                                          scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (-1, 2**31, True):
            with pytest.raises(sc.ConfigError):
                session.get_message(0, bad)  # type: ignore[arg-type]
    assert fake.count("get_message") == 0


def test_last_message_id_is_checked_before_sending(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (-1, True, "1", 1.0):
            with pytest.raises(sc.ConfigError, match="last_message_id"):
                session.get_message(bad, 1)  # type: ignore[arg-type]
        assert fake.count("get_message") == 0
        assert session.get_message(0, 2**31 - 1) is None  # the largest capacity is allowed
        assert fake.requests("get_message")[-1].headers.get("X-ScaleSetMaxCapacity") == str(2**31 - 1)


def test_an_ack_failing_with_another_status_raises(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.queue_job(scale_set.id)
        message = session.get_message(0, 1)
        assert message is not None
        fake.inject("delete_message", Fault.respond(400, json_body={"message": "bad"}))
        with pytest.raises(sc.APIError) as info:
            session.delete_message(message.message_id)
        assert info.value.status == 400 and fake.unacked(scale_set.id) == [message.message_id]


def test_acquire_answer_without_a_list_is_a_response_error(client: sc.Client, fake: FakeActionsService,
                                                           scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("acquire_jobs", Fault.respond(200, json_body={"count": 1, "value": {"a": 1}}))
        with pytest.raises(sc.ResponseError, match="value is not a list"):
            session.acquire_jobs([1])
        fake.inject("acquire_jobs", Fault.respond(200, json_body={"count": 0}))
        assert session.acquire_jobs([1]) == []


def test_an_unreadable_message_keeps_its_id(client: sc.Client, fake: FakeActionsService,
                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body={"messageId": 42, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id == 42
        fake.inject("get_message", Fault.respond(200, json_body={"messageId": True, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id is None


def _queued_message(fake: FakeActionsService, session: sc.MessageSession, scale_set_id: int) -> int:
    fake.queue_job(scale_set_id)
    message = session.get_message(0, 1)
    assert message is not None
    return message.message_id


def test_a_poll_that_keeps_failing_names_get_message(client: sc.Client, fake: FakeActionsService,
                                                     scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject_always("get_message", Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError) as info:
            session.get_message(0, 1)
        assert str(info.value).startswith("get_message gave up")
        fake.clear_faults("get_message")


def test_an_unreadable_message_names_get_message(client: sc.Client, fake: FakeActionsService,
                                                 scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, b"{not json", content_type="application/json"))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.operation == "get_message"
        fake.inject("get_message", Fault.respond(200, json_body={"messageId": 42, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.operation == "get_message" and info.value.message_id == 42


@pytest.mark.parametrize("ident", [1, 2**40])
def test_an_unreadable_message_keeps_any_positive_id(client: sc.Client, fake: FakeActionsService,
                                                     scale_set: sc.RunnerScaleSet, ident: int) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body={"messageId": ident, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id == ident


@pytest.mark.parametrize("ident", [0, -3, True, "9"])
def test_an_unreadable_message_without_a_usable_id_keeps_none(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet, ident: object) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body={"messageId": ident, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id is None


def test_an_unreadable_message_id_is_read_in_any_casing(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body={"messageid": 43, "messageType": 7}))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id == 43


def test_acquire_errors_name_acquire_jobs(client: sc.Client, fake: FakeActionsService,
                                          scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("acquire_jobs", Fault.respond(200, b"nope", content_type="application/json"))
        with pytest.raises(sc.ResponseError) as info:
            session.acquire_jobs([1])
        assert info.value.operation == "acquire_jobs"
        fake.inject("acquire_jobs", Fault.respond(200, json_body=[1, 2]))
        with pytest.raises(sc.ResponseError, match=r"^acquire_jobs: "):
            session.acquire_jobs([1])
        fake.inject("acquire_jobs", Fault.respond(200, json_body={"count": 1, "value": "1"}))
        with pytest.raises(sc.ResponseError) as info:
            session.acquire_jobs([1])
        assert info.value.operation == "acquire_jobs"
        fake.inject("acquire_jobs", Fault.respond(200, json_body={"count": 1, "value": ["x"]}))
        with pytest.raises(sc.ResponseError, match=r"^acquire_jobs\.value\.v: "):
            session.acquire_jobs([1])


def test_oversized_queue_answers_name_their_operation(fake: FakeActionsService, clock: object) -> None:
    """The size caps name the call they cut: acquire_jobs by max_response_bytes, a message by
    max_message_bytes (a message may be larger than any other answer)."""
    from .helpers import make_client
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096,
                                                                      max_message_bytes=16384))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        with client.message_session(scale_set.id) as session:
            fake.inject("acquire_jobs", Fault.huge(8000))
            with pytest.raises(sc.ResponseError) as info:
                session.acquire_jobs([1])
            assert info.value.operation == "acquire_jobs" and "4096-byte limit" in str(info.value)
            fake.inject("get_message", Fault.huge(32768))
            with pytest.raises(sc.ResponseError) as info:
                session.get_message(0, 1)
            assert info.value.operation == "get_message" and "16384-byte limit" in str(info.value)
    finally:
        client.close()


def test_acquire_ids_are_checked_before_sending(client: sc.Client, fake: FakeActionsService,
                                                scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (0, -1, True, "5"):
            with pytest.raises(sc.ConfigError, match=r"^request id must be a positive integer"):
                session.acquire_jobs([7, bad])  # type: ignore[list-item]
        assert session.acquire_jobs([]) == []
        assert fake.count("acquire_jobs") == 0


def test_an_ack_goes_to_the_queue_path_plus_the_id(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        session.delete_message(mid)
        sent = fake.requests("delete_message")
        assert [r.path for r in sent] == [f"/scalesets/message/{mid}"] and sent[0].query == {}
        assert fake.unacked(scale_set.id) == []


def test_an_ack_keeps_the_queue_urls_query_and_drops_its_trailing_slash(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """Protocol §4.2: the id is appended to the queue URL's path and its query is kept. The fake's
    queue URL has no query, so a refresh hands one back (the fake ignores it)."""
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        _move_queue(fake, session, fake.queue_url + "/?code=abc")
        session.delete_message(mid)
        sent = fake.requests("delete_message")
        assert [(r.path, r.query) for r in sent] == [(f"/scalesets/message/{mid}", {"code": "abc"})]
        assert fake.unacked(scale_set.id) == []


def test_an_ack_strips_only_slashes_from_the_end_of_the_queue_path(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """A queue path ending in a letter keeps it: only the trailing slashes go before "/{id}"."""
    with client.message_session(scale_set.id) as session:
        _move_queue(fake, session, fake.queue_url + "X//")
        session.delete_message(12)  # no such route at the fake: 404, which counts as done
        assert [r.path for r in fake.requests(server="broker") if r.method == "DELETE"] == [
            "/scalesets/messageX/12"]
        fake.take_violations()  # the strict fake notes the unknown path


def test_an_ack_answered_404_counts_as_done(client: sc.Client, fake: FakeActionsService,
                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        session.delete_message(mid)
        session.delete_message(mid)  # the fake answers 404 for a message already deleted
        assert fake.count("delete_message") == 2


@pytest.mark.parametrize("status", [200, 205, 405])
def test_an_ack_answered_other_than_204_or_404_raises(client: sc.Client, fake: FakeActionsService,
                                                      scale_set: sc.RunnerScaleSet, status: int) -> None:
    """Protocol §4.2 names 204 as the only success; a listener must not count anything else as an ack."""
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        fake.inject("delete_message", Fault.respond(status, json_body={"message": "odd"}))
        with pytest.raises(sc.APIError) as info:
            session.delete_message(mid)
        assert info.value.status == status and fake.unacked(scale_set.id) == [mid]


def test_an_ack_id_is_checked_before_sending(client: sc.Client, fake: FakeActionsService,
                                             scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (0, -1, True):
            with pytest.raises(sc.ConfigError, match=r"^message_id must be a positive integer"):
                session.delete_message(bad)
        assert fake.count("delete_message") == 0


def test_a_poll_replaces_last_message_id_and_keeps_the_other_query_parameters(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """Protocol §4.1: lastMessageId is added or replaced, any other query parameter kept."""
    with client.message_session(scale_set.id) as session:
        _move_queue(fake, session, fake.queue_url + "?code=abc&lastMessageId=5")
        assert session.get_message(7, 1) is None
        assert session.get_message(0, 1) is None
        polls = fake.requests("get_message")
        assert [r.query for r in polls] == [{"code": "abc", "lastMessageId": "7"},
                                            {"code": "abc", "lastMessageId": "5"}]


def test_max_capacity_outside_int32_is_refused_before_sending(client: sc.Client, fake: FakeActionsService,
                                                              scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (-1, 2**31, True, 1.0):
            with pytest.raises(sc.ConfigError, match=r"^max_capacity must be an integer from 0 to 2147483647"):
                session.get_message(0, bad)  # type: ignore[arg-type]
        assert fake.count("get_message") == 0
        assert session.get_message(0, 0) is None
        assert fake.requests("get_message")[-1].headers.get("X-ScaleSetMaxCapacity") == "0"


def test_a_queue_token_echoed_in_an_error_is_redacted(client: sc.Client, fake: FakeActionsService,
                                                      scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        token = session.session.message_queue_access_token
        fake.inject("get_message", Fault.respond(400, json_body={"message": f"bad token {token}"}))
        with pytest.raises(sc.APIError) as info:
            session.get_message(0, 1)
        assert token not in str(info.value) and token not in repr(info.value)
        assert "bad token ***" in str(info.value)


def test_a_bad_last_message_id_is_named_with_its_value(client: sc.Client, fake: FakeActionsService,
                                                       scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        with pytest.raises(sc.ConfigError, match=r"^last_message_id must be an integer >= 0, got -1$"):
            session.get_message(-1, 1)
        assert fake.count("get_message") == 0


def test_an_ack_is_repeated_after_a_503(client: sc.Client, fake: FakeActionsService,
                                         scale_set: sc.RunnerScaleSet) -> None:
    """Deleting a message is idempotent (a repeat is a 404, which counts as done): a 503 is retried."""
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        fake.inject("delete_message", Fault.error(503, message="busy"))
        session.delete_message(mid)
        assert fake.count("delete_message") == 2 and fake.unacked(scale_set.id) == []


def test_a_poll_with_no_arguments_asks_from_the_start_with_no_capacity(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        session.get_message()
        session.get_message(1, 0)
    first, second = fake.requests("get_message")
    assert "lastMessageId" not in first.query and first.headers["X-ScaleSetMaxCapacity"] == "0"
    assert second.query["lastMessageId"] == "1"  # 1 is a cursor, not "from the start"


def test_an_ack_answered_200_without_a_body_is_not_an_ack_and_not_repeated(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """Protocol §4.2: 204 is the ack. An empty 200 is not read as a garbled JSON answer to retry."""
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        fake.inject("delete_message", Fault.respond(200, b""))
        with pytest.raises(sc.APIError) as info:
            session.delete_message(mid)
        assert info.value.status == 200 and fake.count("delete_message") == 1


def test_an_ack_the_service_keeps_failing_names_delete_message(fake: FakeActionsService, clock: object) -> None:
    from .helpers import make_client
    resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=resilience) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        with client.message_session(scale_set.id) as session:
            mid = _queued_message(fake, session, scale_set.id)
            fake.inject("delete_message", Fault.error(503), times=2)
            with pytest.raises(sc.RetryExhaustedError) as info:
                session.delete_message(mid)
            assert str(info.value).startswith("delete_message gave up after 2 attempts")


def test_acquire_answered_503_is_not_repeated(client: sc.Client, fake: FakeActionsService,
                                              scale_set: sc.RunnerScaleSet) -> None:
    """A POST that reached the service may have acquired the jobs: repeating it is the caller's call."""
    with client.message_session(scale_set.id) as session:
        fake.inject("acquire_jobs", Fault.error(503))
        with pytest.raises(sc.ServerError):
            session.acquire_jobs([1])
        assert fake.count("acquire_jobs") == 1


def test_acquire_answered_with_a_value_that_is_not_a_list_says_so(client: sc.Client, fake: FakeActionsService,
                                                                  scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("acquire_jobs", Fault.respond(200, json_body={"count": 1, "value": 5}))
        with pytest.raises(sc.ResponseError) as info:
            session.acquire_jobs([1])
        assert str(info.value) == "acquire_jobs: value is not a list"


def test_a_message_body_that_is_not_an_object_is_a_response_error_without_an_id(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body=[{"messageId": 42}]))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id is None
        assert info.value.operation == "get_message"
