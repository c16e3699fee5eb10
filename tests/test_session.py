"""Message sessions and the queue (protocol §3.9, §3.10, §4) against the fake service."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, run_together


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
