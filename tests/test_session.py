"""Opening and closing a message session (protocol §3.9) against the fake service: what create
sends and checks, a conflict and our own stale session, an unusable answer, the owner, close,
and what a repr or a log shows.
"""

from __future__ import annotations

import logging

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault


def test_session_is_created_before_message_session_returns(client: sc.Client, fake: FakeActionsService,
                                                           scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id, owner="host-1") as session:
        assert session.session.owner_name == "host-1" and session.session.statistics is not None
        assert fake.requests("create_session")[0].json() == {
            "sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "host-1"}
        assert fake.session_of(scale_set.id) is not None
    assert fake.session_of(scale_set.id) is None  # close deleted it


def test_second_session_conflicts_and_missing_scale_set_is_not_found(client: sc.Client,
                                                                     scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id):
        with pytest.raises(sc.SessionConflictError, match="already has an active session"):
            client.message_session(scale_set.id)
    with pytest.raises(sc.ScaleSetNotFoundError):
        client.message_session(9999)


def test_unusable_session_from_the_service_is_recreated(client: sc.Client, fake: FakeActionsService,
                                                        scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("create_session", Fault.respond(200, json_body={
        "sessionId": "11111111-1111-1111-1111-111111111111", "ownerName": "x", "messageQueueUrl": "",
        "messageQueueAccessToken": "", "statistics": {}}))
    with client.message_session(scale_set.id) as session:
        assert session.session.message_queue_url.startswith("http://127.0.0.1")
    assert fake.count("create_session") == 2


def test_close_of_an_expired_session_counts_as_closed(client: sc.Client, fake: FakeActionsService,
                                                      scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    fake.evict_session(scale_set.id)
    session.close()  # 400 RunnerScaleSetSessionExpiredException: fine
    session.close()  # idempotent
    assert fake.count("delete_session") == 1


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


def test_repr_names_the_session_but_no_token(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        text = repr(session)
        assert text == f"MessageSession(scale_set_id={scale_set.id}, session_id={session.session.session_id!r})"
        assert session.session.message_queue_access_token not in text


_EXPIRED = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, GitHub.Actions.Runtime.WebApi"


def test_active_is_true_while_open_and_false_once_closed(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    assert session.active and not session.closed
    session.close()
    assert not session.active and session.closed
    assert fake.count("delete_session") == 1
    session.close()  # a second close sends nothing
    assert fake.count("delete_session") == 1


@pytest.mark.parametrize("status,type_name", [(400, ""), (404, ""), (409, _EXPIRED)])
def test_a_close_answered_already_gone_logs_no_warning(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture, status: int, type_name: str) -> None:
    import logging
    session = client.message_session(scale_set.id)
    fake.inject("delete_session", Fault.error(status, type_name, "gone"))
    with caplog.at_level(logging.WARNING):
        session.close()
    assert fake.count("delete_session") == 1
    assert not any("could not delete session" in r.getMessage() for r in caplog.records)


def test_close_deletes_the_session_at_its_own_path(client: sc.Client, fake: FakeActionsService,
                                                   scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    sid = session.session.session_id
    session.close()
    assert fake.session_of(scale_set.id) is None
    assert [r.method for r in fake.requests("delete_session")] == ["DELETE"]
    assert fake.requests("delete_session")[0].path.endswith(f"/_apis/runtime/runnerscalesets/{scale_set.id}"
                                                            f"/sessions/{sid}")


def test_the_default_owner_is_the_host_name(client: sc.Client, fake: FakeActionsService,
                                            scale_set: sc.RunnerScaleSet) -> None:
    import socket
    with client.message_session(scale_set.id) as session:
        assert session.owner_name == socket.gethostname()
        assert fake.requests("create_session")[-1].json()["ownerName"] == socket.gethostname()


@pytest.mark.parametrize("host", ["", OSError("no name")])
def test_a_host_without_a_name_owns_its_session_by_a_fresh_uuid(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet,
        monkeypatch: pytest.MonkeyPatch, host: object) -> None:
    import socket
    import uuid

    def gethostname() -> str:
        if isinstance(host, BaseException):
            raise host
        return str(host)

    monkeypatch.setattr(socket, "gethostname", gethostname)
    with client.message_session(scale_set.id) as session:
        sent = fake.requests("create_session")[-1].json()["ownerName"]
        assert sent == session.owner_name and str(uuid.UUID(sent)) == sent


def test_a_session_for_a_bad_scale_set_id_is_refused_before_sending(client: sc.Client,
                                                                     fake: FakeActionsService) -> None:
    for bad in (0, -2, True):
        with pytest.raises(sc.ConfigError, match=r"^scale_set_id must be a positive integer"):
            client.message_session(bad)
    assert fake.count("create_session") == 0


def test_repr_names_the_scale_set_and_session_but_no_token(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        current = session.session
        assert repr(session) == f"MessageSession(scale_set_id={scale_set.id}, session_id={current.session_id!r})"
        assert current.message_queue_access_token not in repr(session)


def test_an_unreadable_create_answer_names_create_session(fake: FakeActionsService, clock: object) -> None:
    from .helpers import make_client
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        fake.inject("create_session", Fault.huge(8000))
        with pytest.raises(sc.ResponseError) as info:
            client.message_session(scale_set.id)
        assert info.value.operation == "create_session" and str(info.value).startswith("create_session: ")
    finally:
        client.close()


def test_a_plain_http_queue_url_under_an_https_client_is_never_used(tmp_path: object) -> None:
    """The queue token must not travel in clear text: the session is dropped and asked for again;
    twice unusable is a ResponseError saying why."""
    import ssl
    from pathlib import Path

    import trustme
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = Path(str(tmp_path)) / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    plain = {"sessionId": "11111111-1111-1111-1111-111111111111", "ownerName": "x",
             "messageQueueUrl": "http://127.0.0.1:9/scalesets/message", "messageQueueAccessToken": "tok-abcdef",
             "statistics": {}}
    with FakeActionsService(long_poll_hold=0.05, ssl_context=context) as tls_fake, sc.Client(
            tls_fake.config_url, token=tls_fake.token, verify=str(bundle)) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="tls"))
        tls_fake.inject("create_session", Fault.respond(200, json_body=plain))
        with client.message_session(scale_set.id) as session:
            assert session.session.message_queue_url.startswith("https://")
        assert tls_fake.count("create_session") == 2
        tls_fake.inject("create_session", Fault.respond(200, json_body=plain), times=2)
        with pytest.raises(sc.ResponseError) as info:
            client.message_session(scale_set.id)
        assert str(info.value) == ("create_session: the service returned an unusable session (messageQueueUrl is "
                                   "plain http while the client uses https (token would leak))")


def test_each_session_call_is_judged_by_its_own_circuit(client: sc.Client, fake: FakeActionsService,
                                                        scale_set: sc.RunnerScaleSet) -> None:
    """Design: breakers are partitioned by origin and operation class (session calls, the long
    poll, queue operations), so a failing long poll never blocks an ack. Seen in states()."""
    from urllib.parse import urlsplit

    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    actions, broker = origin(fake.actions_url), origin(fake.queue_url)
    before = set(client.circuit_breakers.states())

    def added() -> set[str]:
        return set(client.circuit_breakers.states()) - before

    session = client.message_session(scale_set.id)
    assert added() == {f"{actions} session"}
    session.refresh()
    assert added() == {f"{actions} session"}
    fake.queue_job(scale_set.id)
    message = session.get_message(0, 1)
    assert message is not None
    assert added() == {f"{actions} session", f"{broker} long_poll"}
    session.delete_message(message.message_id)
    assert added() == {f"{actions} session", f"{broker} long_poll", f"{broker} queue_ops"}
    session.acquire_jobs([1])
    every = {f"{actions} session", f"{broker} long_poll", f"{broker} queue_ops", f"{actions} queue_ops"}
    assert added() == every
    session.close()
    assert fake.count("delete_session") == 1 and added() == every


def test_an_unusable_create_answer_names_create_session(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    for answer in (Fault.respond(200, b"<html>", content_type="application/json"),
                   Fault.respond(200, json_body={"sessionId": {}})):
        fake.inject("create_session", answer)
        with pytest.raises(sc.ResponseError) as info:
            client.message_session(scale_set.id)
        assert info.value.operation == "create_session"


_PROBLEMS = "messageQueueUrl is not an absolute http(s) URL, messageQueueAccessToken is empty"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_every_session_request_names_the_scale_set_in_its_user_agent(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """Protocol §6: the User-Agent's scale_set_id is the set's id once it is known."""
    import json
    with client.message_session(scale_set.id) as session:
        session.get_message(0, 1)
        session.refresh()
    for operation in ("create_session", "get_message", "refresh_session", "delete_session"):
        agents = [json.loads(r.headers["User-Agent"]) for r in fake.requests(operation)]
        assert agents and all(a["scale_set_id"] == scale_set.id for a in agents), operation


def test_taking_over_our_stale_session_is_logged(client: sc.Client, fake: FakeActionsService,
                                                 scale_set: sc.RunnerScaleSet,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    first = client.message_session(scale_set.id, "me")
    stale = first.session.session_id
    with client.message_session(scale_set.id, "me", stale_session_id=stale):
        assert any(f"still has our previous session {stale}; deleting it" in m for m in _warnings(caplog))


def test_an_unusable_session_is_logged_with_its_problems_and_twice_is_an_error_of_create_session(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    fake.inject("create_session", Fault.respond(200, json_body=_UNUSABLE), times=2)
    with pytest.raises(sc.ResponseError) as info:
        client.message_session(scale_set.id)
    assert info.value.operation == "create_session"
    assert str(info.value) == f"create_session: the service returned an unusable session ({_PROBLEMS})"
    assert _warnings(caplog).count(f"session for scale set {scale_set.id} is unusable ({_PROBLEMS}); re-creating") == 2


def test_a_clean_close_logs_nothing_and_leaves_the_client_without_sessions(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    session = client.message_session(scale_set.id)
    assert client.health().components["session"].status == "ok"
    session.close()
    assert fake.count("delete_session") == 1 and _warnings(caplog) == []
    assert client.health().components["session"].status == "unknown"  # the client forgot it


def test_a_session_delete_that_keeps_failing_is_logged_with_the_operation(
        fake: FakeActionsService, clock: object, caplog: pytest.LogCaptureFixture) -> None:
    from .helpers import make_client
    resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=resilience) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        session = client.message_session(scale_set.id)
        fake.inject("delete_session", Fault.error(503), times=2)
        session.close()
        assert any(m.startswith(f"could not delete session {session.session.session_id}: delete_session gave up")
                   for m in _warnings(caplog))


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
