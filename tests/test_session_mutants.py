"""MessageSession promises the mutation run showed no test pinned, each seen from outside: what
reaches the fake (paths, queries, counts), what the caller is told (error kind, operation named,
status), and the public ``active``/``closed`` properties. No private attribute is read."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault

_ADMIN = "GitHub.Actions.Runtime.WebApi.RunnerAdminException, GitHub.Actions.Runtime.WebApi"
_EXPIRED = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, GitHub.Actions.Runtime.WebApi"


def _queued_message(fake: FakeActionsService, session: sc.MessageSession, scale_set_id: int) -> int:
    fake.queue_job(scale_set_id)
    message = session.get_message(0, 1)
    assert message is not None
    return message.message_id


# -- a refresh the service answers "gone" to ------------------------------------------------

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
    from .conftest import make_client
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


# -- active / closed ------------------------------------------------------------------------

def test_active_is_true_while_open_and_false_once_closed(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    session = client.message_session(scale_set.id)
    assert session.active and not session.closed
    session.close()
    assert not session.active and session.closed
    assert fake.count("delete_session") == 1
    session.close()  # a second close sends nothing
    assert fake.count("delete_session") == 1


# -- operation names the caller is told -----------------------------------------------------

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
    from .conftest import make_client
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


# -- acknowledging a message ----------------------------------------------------------------

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
        current = session.session
        fake.inject("refresh_session", Fault.respond(200, json_body={
            "sessionId": current.session_id, "ownerName": current.owner_name,
            "messageQueueUrl": fake.queue_url + "/?code=abc",
            "messageQueueAccessToken": current.message_queue_access_token, "statistics": {}}))
        session.refresh()
        session.delete_message(mid)
        sent = fake.requests("delete_message")
        assert [(r.path, r.query) for r in sent] == [(f"/scalesets/message/{mid}", {"code": "abc"})]
        assert fake.unacked(scale_set.id) == []


def test_an_ack_strips_only_slashes_from_the_end_of_the_queue_path(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """A queue path ending in a letter keeps it: only the trailing slashes go before "/{id}"."""
    with client.message_session(scale_set.id) as session:
        current = session.session
        fake.inject("refresh_session", Fault.respond(200, json_body={
            "sessionId": current.session_id, "ownerName": current.owner_name,
            "messageQueueUrl": fake.queue_url + "X//",
            "messageQueueAccessToken": current.message_queue_access_token, "statistics": {}}))
        session.refresh()
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


# -- deleting the session -------------------------------------------------------------------

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


# -- the owner name and the poll's query ----------------------------------------------------

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


def test_a_poll_replaces_last_message_id_and_keeps_the_other_query_parameters(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """Protocol §4.1: lastMessageId is added or replaced, any other query parameter kept."""
    with client.message_session(scale_set.id) as session:
        current = session.session
        fake.inject("refresh_session", Fault.respond(200, json_body={
            "sessionId": current.session_id, "ownerName": current.owner_name,
            "messageQueueUrl": fake.queue_url + "?code=abc&lastMessageId=5",
            "messageQueueAccessToken": current.message_queue_access_token, "statistics": {}}))
        session.refresh()
        assert session.get_message(7, 1) is None
        assert session.get_message(0, 1) is None
        polls = fake.requests("get_message")
        assert [r.query for r in polls] == [{"code": "abc", "lastMessageId": "7"},
                                            {"code": "abc", "lastMessageId": "5"}]


def test_a_session_for_a_bad_scale_set_id_is_refused_before_sending(client: sc.Client,
                                                                     fake: FakeActionsService) -> None:
    for bad in (0, -2, True):
        with pytest.raises(sc.ConfigError, match=r"^scale_set_id must be a positive integer"):
            client.message_session(bad)
    assert fake.count("create_session") == 0


def test_max_capacity_outside_int32_is_refused_before_sending(client: sc.Client, fake: FakeActionsService,
                                                              scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        for bad in (-1, 2**31, True, 1.0):
            with pytest.raises(sc.ConfigError, match=r"^max_capacity must be an integer from 0 to 2147483647"):
                session.get_message(0, bad)  # type: ignore[arg-type]
        assert fake.count("get_message") == 0
        assert session.get_message(0, 0) is None
        assert fake.requests("get_message")[-1].headers.get("X-ScaleSetMaxCapacity") == "0"


def test_repr_names_the_scale_set_and_session_but_no_token(client: sc.Client, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        current = session.session
        assert repr(session) == f"MessageSession(scale_set_id={scale_set.id}, session_id={current.session_id!r})"
        assert current.message_queue_access_token not in repr(session)


def test_an_unreadable_create_answer_names_create_session(fake: FakeActionsService, clock: object) -> None:
    from .conftest import make_client
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(max_response_bytes=4096))
    try:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        fake.inject("create_session", Fault.huge(8000))
        with pytest.raises(sc.ResponseError) as info:
            client.message_session(scale_set.id)
        assert info.value.operation == "create_session" and str(info.value).startswith("create_session: ")
    finally:
        client.close()


def test_a_queue_token_echoed_in_an_error_is_redacted(client: sc.Client, fake: FakeActionsService,
                                                      scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        token = session.session.message_queue_access_token
        fake.inject("get_message", Fault.respond(400, json_body={"message": f"bad token {token}"}))
        with pytest.raises(sc.APIError) as info:
            session.get_message(0, 1)
        assert token not in str(info.value) and token not in repr(info.value)
        assert "bad token ***" in str(info.value)


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


def test_an_unusable_create_answer_names_create_session(client: sc.Client, fake: FakeActionsService,
                                                         scale_set: sc.RunnerScaleSet) -> None:
    for answer in (Fault.respond(200, b"<html>", content_type="application/json"),
                   Fault.respond(200, json_body={"sessionId": {}})):
        fake.inject("create_session", answer)
        with pytest.raises(sc.ResponseError) as info:
            client.message_session(scale_set.id)
        assert info.value.operation == "create_session"


# -- the full mutation run's survivors (session 4) ------------------------------------------

_UNUSABLE = {"sessionId": "11111111-1111-1111-1111-111111111111", "ownerName": "x", "messageQueueUrl": "",
             "messageQueueAccessToken": "", "statistics": {}}
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


def test_a_poll_with_no_arguments_asks_from_the_start_with_no_capacity(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with client.message_session(scale_set.id) as session:
        session.get_message()
        session.get_message(1, 0)
    first, second = fake.requests("get_message")
    assert "lastMessageId" not in first.query and first.headers["X-ScaleSetMaxCapacity"] == "0"
    assert second.query["lastMessageId"] == "1"  # 1 is a cursor, not "from the start"


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
    from .conftest import make_client
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
    from .conftest import make_client
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
    from .conftest import make_client
    resilience = sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01))
    with make_client(fake, clock, resilience=resilience) as client:
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        session = client.message_session(scale_set.id)
        fake.inject("delete_session", Fault.error(503), times=2)
        session.close()
        assert any(m.startswith(f"could not delete session {session.session.session_id}: delete_session gave up")
                   for m in _warnings(caplog))
