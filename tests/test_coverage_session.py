"""Branch coverage of ``MessageSession`` (issue 12), observed at the fake service: which requests
it received, and what the caller got back or was raised."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault

from .conftest import wait_until
from .test_deadlines import Outcome

_CONFLICT = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi"


def test_a_stale_session_of_our_own_is_deleted_and_taken_over(client: sc.Client, fake: FakeActionsService,
                                                              scale_set: sc.RunnerScaleSet) -> None:
    first = client.message_session(scale_set.id, "me")
    stale_id = first.session.session_id
    with pytest.raises(sc.SessionConflictError):
        client.message_session(scale_set.id, "me")
    deletes_before = fake.count("delete_session")
    with client.message_session(scale_set.id, "me", stale_session_id=stale_id) as second:
        assert fake.count("delete_session") == deletes_before + 1
        assert fake.count("create_session") == 4  # ours, the conflict, the conflict again, the take-over
        assert second.session.session_id != stale_id
        assert second.get_message(0, 1) is None  # the new session is the live one


def test_a_conflict_that_survives_deleting_the_stale_session_is_raised(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("create_session", Fault.error(409, _CONFLICT, "taken"), times=2)
    with pytest.raises(sc.SessionConflictError):
        client.message_session(scale_set.id, "me", stale_session_id="22222222-2222-2222-2222-222222222222")
    assert fake.count("create_session") == 2
    assert fake.count("delete_session") == 1  # the stale one was deleted once, not again


def test_a_message_body_that_is_not_an_object_is_a_response_error_without_an_id(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(200, json_body=[{"messageId": 42}]))
        with pytest.raises(sc.ResponseError) as info:
            session.get_message(0, 1)
        assert info.value.message_id is None
        assert info.value.operation == "get_message"


def test_a_401_after_another_thread_renewed_the_session_re_signs_without_renewing_again(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        old_token = session.session.message_queue_access_token
        fake.inject("get_message", Fault.hang())
        held = Outcome(lambda: session.get_message(0, 1))  # signed with the old token, held by the fake
        wait_until(lambda: fake.count("get_message") == 1)
        fake.inject("get_message", Fault.respond(401, json_body={"message": "expired"}))
        assert session.get_message(0, 1) is None  # 401, one renewal, re-signed
        assert fake.count("refresh_session") == 1
        new_token = session.session.message_queue_access_token
        fake.inject("get_message", Fault.respond(401, json_body={"message": "expired"}))
        fake.release_hangs()  # the held poll is dropped; its retry carries the old token and gets 401
        held.join()
        assert held.error is None and held.value is None
        assert fake.count("refresh_session") == 1  # the held call used the renewal already made
        auth = [r.headers.get("Authorization") for r in fake.requests("get_message")]
        assert auth[0] == f"Bearer {old_token}" and auth[-1] == f"Bearer {new_token}"


@pytest.mark.parametrize("fault", [Fault.respond(409, json_body={"message": "busy"}),
                                   Fault.respond(409, body=b"<html>409 Conflict</html>",
                                                 headers={"Content-Type": "text/html"})],
                         ids=["json-without-typeName", "html"])
def test_a_409_naming_no_exception_type_is_the_session_conflict(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet, fault: Fault) -> None:
    """The one 409 create-session is known to answer: a listener waits it out as a standby."""
    fake.inject("create_session", fault)
    with pytest.raises(sc.SessionConflictError) as info:
        client.message_session(scale_set.id, "me")
    assert info.value.status == 409 and info.value.method == "POST"
    assert info.value.message.endswith(" (a 409 with no exception type: taken as another session owning the scale set)")
    assert fake.count("create_session") == 1  # a POST: not repeated
    with client.message_session(scale_set.id, "me") as session:  # the next try opens it
        assert session.get_message(0, 1) is None


def test_a_409_naming_another_exception_type_stays_a_plain_api_error(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("create_session", Fault.error(409, "GitHub.Actions.Runtime.WebApi.SomethingElseException", "odd"))
    with pytest.raises(sc.APIError) as info:
        client.message_session(scale_set.id, "me")
    assert type(info.value) is sc.APIError and "SomethingElseException" in info.value.type_name
