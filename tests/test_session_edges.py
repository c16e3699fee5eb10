"""Message-session edges seen at the fake: what is sent, what is deleted, what the caller is told."""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

_UNUSABLE = {"sessionId": "11111111-1111-1111-1111-111111111111", "ownerName": "x", "messageQueueUrl": "",
             "messageQueueAccessToken": "", "statistics": {}}


def test_owner_must_be_a_non_empty_string(client: sc.Client, fake: FakeActionsService,
                                          scale_set: sc.RunnerScaleSet) -> None:
    for bad in ("", "   "):
        with pytest.raises(sc.ConfigError, match="owner must be a non-empty string"):
            client.message_session(scale_set.id, bad)
    assert fake.count("create_session") == 0
    with client.message_session(scale_set.id, "me") as session:
        assert session.owner_name == "me"
        assert fake.requests("create_session")[-1].json()["ownerName"] == "me"


def test_last_message_id_is_checked_before_sending(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (-1, True, "1", 1.0):
            with pytest.raises(sc.ConfigError, match="last_message_id"):
                session.get_message(bad, 1)  # type: ignore[arg-type]
        assert fake.count("get_message") == 0
        assert session.get_message(0, 2**31 - 1) is None  # the largest capacity is allowed
        assert fake.requests("get_message")[-1].headers.get("X-ScaleSetMaxCapacity") == str(2**31 - 1)


def test_twice_unusable_session_is_a_response_error_and_both_are_deleted(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("create_session", Fault.respond(200, json_body=_UNUSABLE), times=2)
    with pytest.raises(sc.ResponseError, match="unusable session"):
        client.message_session(scale_set.id)
    assert fake.count("create_session") == 2 and fake.count("delete_session") == 2


def test_unusable_session_with_no_id_is_not_deleted(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("create_session", Fault.respond(200, json_body={
        **_UNUSABLE, "sessionId": "00000000-0000-0000-0000-000000000000"}))
    with client.message_session(scale_set.id) as session:
        assert session.session.message_queue_url
    assert fake.count("create_session") == 2 and fake.count("delete_session") == 1  # only the close


def test_refresh_of_an_evicted_session_creates_a_new_one(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        old = session.session.session_id
        generation = session.generation
        fake.evict_session(scale_set.id)
        renewed = session.refresh()
        assert renewed.session_id != old and session.session.session_id == renewed.session_id
        assert session.generation > generation
        assert fake.count("refresh_session") == 1 and fake.count("create_session") == 2


def test_refresh_of_an_evicted_session_without_auto_recover_raises(fake: FakeActionsService,
                                                                   clock: FakeClock) -> None:
    from .conftest import make_client
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False))
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    session = client.message_session(scale_set.id)
    old = session.session.session_id
    fake.evict_session(scale_set.id)
    with pytest.raises(sc.SessionNotFoundError) as info:
        session.refresh()
    assert old in str(info.value) and f"scale set {scale_set.id}" in str(info.value)
    assert fake.count("create_session") == 1
    client.close()


def test_a_refresh_failing_otherwise_is_raised_as_it_is(client: sc.Client, fake: FakeActionsService,
                                                        scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("refresh_session", Fault.respond(403, json_body={"message": "forbidden"}))
        with pytest.raises(sc.APIError) as info:
            session.refresh()
        assert not isinstance(info.value, sc.SessionNotFoundError) and info.value.status == 403
        assert fake.count("create_session") == 1


def test_a_refreshed_session_that_is_unusable_is_replaced(client: sc.Client, fake: FakeActionsService,
                                                          scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("refresh_session", Fault.respond(200, json_body=_UNUSABLE))
        renewed = session.refresh()
        assert renewed.message_queue_url and fake.count("create_session") == 2
        assert fake.count("delete_session") == 1  # the unusable one, deleted before the new one was asked for


def test_a_close_that_fails_is_logged_not_raised(client: sc.Client, fake: FakeActionsService,
                                                 scale_set: sc.RunnerScaleSet,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    session = client.message_session(scale_set.id)
    sid = session.session.session_id
    fake.inject("delete_session", Fault.respond(409, json_body={"message": "busy"}))
    with caplog.at_level(logging.WARNING):
        session.close()
    assert fake.count("delete_session") == 1
    assert any(f"could not delete session {sid}" in r.getMessage() for r in caplog.records)


def test_a_close_that_cannot_reach_the_service_is_logged_not_raised(client: sc.Client, fake: FakeActionsService,
                                                                    scale_set: sc.RunnerScaleSet,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    session = client.message_session(scale_set.id)
    sid = session.session.session_id
    fake.inject_always("delete_session", Fault.drop())
    with caplog.at_level(logging.WARNING):
        session.close()
    assert any(f"could not delete session {sid}" in r.getMessage() for r in caplog.records)


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


def test_repr_names_the_session_but_no_token(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        text = repr(session)
        assert text == f"MessageSession(scale_set_id={scale_set.id}, session_id={session.session.session_id!r})"
        assert session.session.message_queue_access_token not in text
