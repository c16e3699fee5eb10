"""Renewing a message session: a 401 on a queue call refreshes it once (one refresh for many
threads), a refresh the service answers "gone" creates a new one (or, without auto-recover,
says so), an unusable refreshed session is replaced, and ``recover()`` renews it.
"""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, make_client, run_together, wait_until


def test_queue_401_refreshes_the_session_once_and_repeats(client: sc.Client, fake: FakeActionsService,
                                                          scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        old_token = session.session.message_queue_access_token
        fake.expire_queue_tokens()
        fake.queue_job(scale_set.id)
        message = session.get_message(0, 1)
        assert message is not None
        order = [r.operation for r in fake.requests() if r.operation in ("get_message", "refresh_session")]
        assert order == ["get_message", "refresh_session", "get_message"]
        assert session.session.message_queue_access_token != old_token
        assert fake.count("refresh_session") == 1 and fake.count("create_session") == 1


def test_persistent_queue_401_is_message_queue_token_expired(client: sc.Client, fake: FakeActionsService,
                                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("get_message", Fault.respond(401, "Session expired", content_type="text/plain"), times=2)
        with pytest.raises(sc.MessageQueueTokenExpiredError):
            session.get_message(0, 1)
        assert fake.count("refresh_session") == 1 and fake.count("get_message") == 2


@pytest.mark.parametrize("operation", ["delete_message", "acquire_jobs"])
def test_ack_and_acquire_refresh_on_401_too(client: sc.Client, fake: FakeActionsService,
                                           scale_set: sc.RunnerScaleSet, operation: str) -> None:
    with client.message_session(scale_set.id) as session:
        rid = fake.queue_job(scale_set.id)
        message = session.get_message(0, 1)
        assert message is not None
        fake.expire_queue_tokens()
        if operation == "delete_message":
            session.delete_message(message.message_id)
            assert fake.unacked(scale_set.id) == []
        else:
            assert session.acquire_jobs([rid]) == [rid]
        assert fake.count("refresh_session") == 1 and fake.count(operation) == 2


def test_evicted_session_is_recreated_in_place(client: sc.Client, fake: FakeActionsService,
                                               scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        old_id = session.session.session_id
        fake.evict_session(scale_set.id)
        fake.queue_job(scale_set.id)
        message = session.get_message(0, 1)
        assert message is not None and session.session.session_id != old_id
        assert fake.count("create_session") == 2 and fake.count("refresh_session") == 1


def test_evicted_session_without_auto_recover_raises_session_not_found(fake: FakeActionsService,
                                                                       clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False))
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    session = client.message_session(scale_set.id)
    fake.evict_session(scale_set.id)
    with pytest.raises(sc.SessionNotFoundError, match="gone on the server"):
        session.get_message(0, 1)
    client.close()


def test_sixteen_threads_with_an_expired_queue_token_cause_one_refresh(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    rid = fake.queue_job(scale_set.id)
    fake.expire_queue_tokens()
    fake.inject("refresh_session", Fault.delay(0.3))
    results = run_together(16, lambda: session.acquire_jobs([rid]))
    assert len(results) == 16 and all(isinstance(r, list) for r in results)
    assert fake.count("refresh_session") == 1
    assert sum(len(r) for r in results if isinstance(r, list)) == 1  # the job was acquired once
    session.close()


_UNUSABLE = {"sessionId": "11111111-1111-1111-1111-111111111111", "ownerName": "x", "messageQueueUrl": "",
             "messageQueueAccessToken": "", "statistics": {}}


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
    from .helpers import make_client
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


_ADMIN = "GitHub.Actions.Runtime.WebApi.RunnerAdminException, GitHub.Actions.Runtime.WebApi"


_EXPIRED = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, GitHub.Actions.Runtime.WebApi"


def _queued_message(fake: FakeActionsService, session: sc.MessageSession, scale_set_id: int) -> int:
    fake.queue_job(scale_set_id)
    message = session.get_message(0, 1)
    assert message is not None
    return message.message_id


@pytest.mark.parametrize("type_name", [_ADMIN, _EXPIRED])
def test_a_refresh_refused_with_a_gone_type_name_creates_a_new_session(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet, type_name: str) -> None:
    """Protocol §3.9: the eviction has been seen with these typeNames and a non-404 status; the
    type name alone must make the session be re-created (status 400 here, not 404)."""
    with client.message_session(scale_set.id) as session:
        old = session.session.session_id
        fake.evict_session(scale_set.id)
        fake.inject("refresh_session", Fault.error(400, type_name, "session is gone"))
        renewed = session.refresh()
        assert renewed.session_id != old
        assert fake.count("refresh_session") == 1 and fake.count("create_session") == 2


def test_a_refresh_refused_with_a_gone_type_name_and_no_auto_recover_is_session_not_found(
        fake: FakeActionsService, clock: object) -> None:
    from .helpers import make_client
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        session = client.message_session(scale_set.id)
        fake.inject("refresh_session", Fault.error(400, _EXPIRED, "gone"))
        with pytest.raises(sc.SessionNotFoundError) as info:
            session.refresh()
        assert info.value.status == 400 and fake.count("create_session") == 1
    finally:
        client.close()


def test_a_refresh_refused_with_another_400_is_raised_as_it_is(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("refresh_session", Fault.error(400, "GitHub.Actions.SomethingElseException", "bad"))
        with pytest.raises(sc.APIError) as info:
            session.refresh()
        assert not isinstance(info.value, sc.SessionNotFoundError) and info.value.status == 400
        assert fake.count("create_session") == 1


def test_a_refresh_that_keeps_failing_names_refresh_session(client: sc.Client, fake: FakeActionsService,
                                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject_always("refresh_session", Fault.error(503, message="busy"))
        with pytest.raises(sc.RetryExhaustedError) as info:
            session.refresh()
        assert str(info.value).startswith("refresh_session gave up")
        assert fake.count("refresh_session") == info.value.attempts > 1
        fake.clear_faults("refresh_session")


def test_an_unreadable_refresh_answer_names_refresh_session(client: sc.Client, fake: FakeActionsService,
                                                            scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("refresh_session", Fault.respond(200, b"not json", content_type="application/json"))
        with pytest.raises(sc.ResponseError) as info:
            session.refresh()
        assert info.value.operation == "refresh_session"
        fake.inject("refresh_session", Fault.respond(200, json_body={"sessionId": {}}))
        with pytest.raises(sc.ResponseError) as info:
            session.refresh()
        assert info.value.operation == "refresh_session"


@pytest.mark.parametrize("operation", ["get_message", "delete_message", "acquire_jobs"])
def test_a_queue_call_refused_401_after_renewal_is_a_queue_token_error(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet, operation: str) -> None:
    """Protocol §4.4: a repeated 401 on a queue call keeps the "message queue token expired" kind."""
    with client.message_session(scale_set.id) as session:
        mid = _queued_message(fake, session, scale_set.id)
        fake.inject(operation, Fault.respond(401), times=2)
        with pytest.raises(sc.MessageQueueTokenExpiredError):
            if operation == "get_message":
                session.get_message(0, 1)
            elif operation == "delete_message":
                session.delete_message(mid)
            else:
                session.acquire_jobs([1])
        assert fake.count(operation) == (3 if operation == "get_message" else 2)
        assert fake.count("refresh_session") == 1


_PROBLEMS = "messageQueueUrl is not an absolute http(s) URL, messageQueueAccessToken is empty"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_refreshed_session_that_is_unusable_is_logged(client: sc.Client, fake: FakeActionsService,
                                                        scale_set: sc.RunnerScaleSet,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with client.message_session(scale_set.id) as session:
        fake.inject("refresh_session", Fault.respond(200, json_body=_UNUSABLE))
        session.refresh()
    assert f"refreshed session is unusable ({_PROBLEMS}); re-creating" in _warnings(caplog)


def test_a_refresh_answered_404_creates_a_new_session_and_says_why(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    with client.message_session(scale_set.id) as session:
        old = session.session.session_id
        fake.inject("refresh_session", Fault.respond(404, json_body={"message": "no such session"}))
        assert session.refresh().session_id != old
        # The fake still held the old session (a 404 from a glitch): the create's 409 made us delete it.
        assert fake.count("create_session") == 3 and fake.count("delete_session") == 1
    assert f"session {old} of scale set {scale_set.id} is gone on the server (404); creating a new session" in (
        _warnings(caplog))


def test_without_auto_recovery_a_gone_session_is_an_error_that_names_it(fake: FakeActionsService,
                                                                       clock: object) -> None:
    from .helpers import make_client
    with make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False)) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        session = client.message_session(scale_set.id)
        sid = session.session.session_id
        fake.inject("refresh_session", Fault.respond(404, json_body={"message": "no such session"}))
        with pytest.raises(sc.SessionNotFoundError) as info:
            session.refresh()
        assert info.value.message == f"session {sid} of scale set {scale_set.id} is gone on the server: no such session"


def test_recover_renews_the_session_and_returns_it(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        renewed = session.recover()
        assert renewed is session.session and fake.count("refresh_session") == 1


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
