"""The fake speaks the service's dialect (issue 11 findings 1, 2, 3, 5, 7), over real sockets."""

from __future__ import annotations

import email.utils
import json
import socket

import pytest
import requests

import scaleset_client as sc
from scaleset_client._retry import hint_seconds
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import make_client


def _raw(port: int, head: str, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_header_names_are_case_insensitive_like_any_http_server(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    # Finding 1: the Go reference sends X-Scalesetmaxcapacity; the fake must not answer 400.
    with client.message_session(scale_set.id) as session:
        token = session.session.message_queue_access_token
        answer = requests.get(fake.queue_url, headers={"authorization": f"Bearer {token}",
                                                         "X-Scalesetmaxcapacity": "7"}, timeout=5)
    assert answer.status_code == 202
    assert fake.capacities[-1] == 7 and fake.violations == []


def test_chunked_request_bodies_are_read_and_the_connection_stays_in_step(fake: FakeActionsService) -> None:
    # Finding 2: the body arrives chunked; its bytes must not be parsed as a second request.
    body = json.dumps({"url": fake.config_url, "runner_event": "register"}).encode()
    head = ("POST /api/v3/actions/runner-registration HTTP/1.1\r\nHost: x\r\nAuthorization: RemoteAuth nope\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    second = "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = _raw(fake.servers["github"].port, head, chunks + second.encode())
    assert data.count(b"HTTP/1.1 ") == 2  # exactly two answers: the chunk bytes were the body
    logged = fake.requests("runner_registration")[-1]
    assert logged.json() == {"url": fake.config_url, "runner_event": "register"}
    fake.take_violations()  # the second request went to an unknown path on purpose


def test_a_request_whose_body_was_cut_short_is_neither_logged_nor_judged(
        fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    """A client stopped mid-POST (a listener's stop while it creates its session) sends fewer bytes
    than its Content-Length: the strict fake must not read that as a session without an owner."""
    path = f"/{fake.tenant}/_apis/runtime/runnerscalesets/{scale_set.id}/sessions?api-version=6.0-preview"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
            "Content-Type: application/json\r\nContent-Length: 69\r\n\r\n")
    with socket.create_connection(("127.0.0.1", fake.servers["actions"].port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"sessionId"')
        sock.shutdown(socket.SHUT_WR)  # and nothing more: the rest never comes
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    assert fake.count("create_session") == 0 and fake.violations == []


def test_answers_are_gzip_compressed_when_asked_and_the_client_asks(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    assert client.get_runner_scale_set_by_id(scale_set.id) is not None
    sent = fake.requests("get_runner_scale_set_by_id")[-1]
    assert sent.headers["Accept-Encoding"] == "gzip"
    plain = requests.get(f"{fake.actions_url}_apis/runtime/runnerscalesets/{scale_set.id}",
                         params={"api-version": "6.0-preview"}, timeout=5,
                         headers={"Accept-Encoding": "identity", "Authorization": sent.headers["Authorization"]})
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    zipped = requests.get(plain.url, timeout=5, headers={"Accept-Encoding": "gzip",
                                                        "Authorization": sent.headers["Authorization"]})
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.json()["id"] == scale_set.id


def test_a_partial_update_leaves_unset_fields_alone(client: sc.Client, fake: FakeActionsService) -> None:
    # Finding 3: RunnerScaleSet(runner_group_id=...) must not blank the name or strip the labels.
    group = fake.add_runner_group("gpu-group")
    made = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux", labels=[sc.Label("linux"), sc.Label("gpu")]))
    updated = client.update_runner_scale_set(made.id, sc.RunnerScaleSet(runner_group_id=group))
    assert fake.requests("update_runner_scale_set")[-1].json() == {"runnerGroupId": group}
    stored = fake.scale_set(made.id)
    assert stored is not None and stored["name"] == "linux" and stored["runnerGroupId"] == group
    assert [lb["name"] for lb in stored["labels"]] == ["linux", "gpu"]
    assert updated.name == "linux" and [lb.name for lb in updated.labels] == ["linux", "gpu"]


def test_a_name_alone_keeps_the_labels_and_explicit_empty_labels_are_sent(
        client: sc.Client, fake: FakeActionsService) -> None:
    made = client.create_runner_scale_set(sc.RunnerScaleSet(name="a", labels=[sc.Label("route-me")]))
    client.update_runner_scale_set(made.id, sc.RunnerScaleSet(name="b"))
    assert fake.requests("update_runner_scale_set")[-1].json() == {"name": "b"}
    assert [lb["name"] for lb in (fake.scale_set(made.id) or {})["labels"]] == ["route-me"]
    client.update_runner_scale_set(made.id, sc.RunnerScaleSet(labels=[]))
    assert fake.requests("update_runner_scale_set")[-1].json() == {"labels": []}


def test_an_update_that_sets_nothing_or_an_empty_name_is_refused_before_sending(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    with pytest.raises(sc.ConfigError):
        client.update_runner_scale_set(scale_set.id, sc.RunnerScaleSet())
    with pytest.raises(sc.ConfigError):
        client.update_runner_scale_set(scale_set.id, sc.RunnerScaleSet(name=""))
    assert fake.count("update_runner_scale_set") == 0


@pytest.mark.parametrize("body", [
    {"name": "", "labels": [{"type": "System", "name": "x"}]},
    {"name": "x", "runnerGroupId": 404},
    {"name": "x", "labels": [{"type": "System", "name": ""}]},
])
def test_the_service_refuses_malformed_scale_sets_and_strict_mode_records_it(
        client: sc.Client, fake: FakeActionsService, body: dict[str, object]) -> None:
    client.create_runner_scale_set(sc.RunnerScaleSet(name="warm-up"))  # an admin token for the raw call
    auth = fake.requests("create_runner_scale_set")[-1].headers["Authorization"]
    answer = requests.post(f"{fake.actions_url}_apis/runtime/runnerscalesets", params={"api-version": "6.0-preview"},
                           json=body, headers={"Authorization": auth}, timeout=5)
    assert answer.status_code == 400
    assert len(fake.take_violations()) == 1


def test_strict_mode_fails_the_test_that_sent_a_refused_request(clock: FakeClock) -> None:
    fake = FakeActionsService(clock=clock, strict=True).start()
    requests.get(f"{fake.actions_url}_apis/runtime/runnerscalesets/1", timeout=5)  # no api-version, no token
    with pytest.raises(AssertionError, match="api-version"):
        fake.close()


def test_a_session_nobody_polls_expires_server_side(clock: FakeClock) -> None:
    with FakeActionsService(clock=clock, long_poll_hold=0.05, strict=True, session_idle_timeout=120.0) as fake:
        client = make_client(fake, clock)
        made = client.create_runner_scale_set(sc.RunnerScaleSet(name="crashy"))
        client.message_session(made.id)  # the "crashed" owner: never polls, never deletes
        with pytest.raises(sc.SessionConflictError):
            client.message_session(made.id)
        clock.advance(121.0)
        with client.message_session(made.id) as second:
            assert second.get_message(0, 1) is None
        assert fake.count("create_session") == 3
        client.close()


def test_deleting_a_message_twice_is_an_assumed_404_that_the_client_tolerates(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    # Finding 7: the status is the fake's guess (marked ASSUMPTION); the fake must not raise on it.
    message_id = fake.push_message(scale_set.id, [])
    with client.message_session(scale_set.id) as session:
        session.delete_message(message_id)
        try:
            session.delete_message(message_id)
        except sc.APIError as exc:
            assert exc.status == 404
    assert fake.count("delete_message") == 2 and fake.violations == []


def _answer(headers: dict[str, str], status: int = 429) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


def test_a_date_form_retry_after_is_judged_by_githubs_clock() -> None:
    # Finding 5: this machine is an hour behind; GitHub says "retry at its now + 3 s".
    github_now = 1_800_000_000.0
    local_now = github_now - 3600
    answer = _answer({"Date": email.utils.formatdate(github_now, usegmt=True),
                      "Retry-After": email.utils.formatdate(github_now + 3, usegmt=True)})
    assert hint_seconds(answer, local_now) == pytest.approx(3.0)
    reset = _answer({"Date": email.utils.formatdate(github_now, usegmt=True), "x-ratelimit-remaining": "0",
                     "x-ratelimit-reset": str(int(github_now + 5))}, 403)
    assert hint_seconds(reset, local_now) == pytest.approx(5.0)
    no_date = _answer({"Retry-After": email.utils.formatdate(github_now + 3, usegmt=True)})
    assert hint_seconds(no_date, local_now, server_time=github_now) == pytest.approx(3.0)


def test_a_429_with_a_date_retry_after_waits_the_servers_seconds_over_the_wire(
        clock: FakeClock) -> None:
    # The fake's Date follows its own clock (GitHub's); the client's clock is an hour behind.
    github_clock = FakeClock(wall=clock.wall() + 3600)
    with FakeActionsService(clock=github_clock, long_poll_hold=0.05, strict=True) as fake:
        client = make_client(fake, clock)
        fake.inject("get_runner", Fault.respond(429, json_body={"message": "slow down"}, headers={
            "Retry-After": email.utils.formatdate(github_clock.wall() + 3, usegmt=True)}))
        start = clock.monotonic()
        with pytest.raises(sc.RunnerNotFoundError):
            client.get_runner(1)
        assert clock.monotonic() - start < 10  # about 3 s (+ up to 1 s jitter), not an hour
        client.close()
