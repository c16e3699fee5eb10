"""``classify`` as a table: one row per kind of outcome, no sockets, no clock.

Each row is (the call's policy, what one attempt produced, what the attempt knew) -> the decision
the adapter applies. The end-to-end tests (test_retry, test_resilience, test_transport,
test_attempts) prove the adapter applies these decisions; this table pins the policy.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NameResolutionError, ProtocolError

import scaleset_client as sc
from scaleset_client._breaker import Outcome
from scaleset_client._classify import Action, Attempt, Decision, classify, describe, never_delivered
from scaleset_client._policy import CallPolicy, Recovery

WALL = 1_800_000_000.0
URL = "https://pipelines.actions.example/_apis/x"

GET = CallPolicy("get_runner", "admin", idempotent=True)
POST = CallPolicy("acquire_jobs", "queue_ops", idempotent=False, queue_operation=True)
NO_JSON = CallPolicy("remove_runner", "admin", idempotent=True, json_body=False)
LONG_POLL = CallPolicy("get_message", "long_poll", idempotent=True, queue_operation=True)
RECOVERING = replace(GET, recovery=Recovery("admin token", renew=lambda: None, resign=lambda: None))
REGISTER = CallPolicy("registration_token", "github_api", idempotent=False, retry_unauthorized=True,
                      github_api=True)


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "GET") -> Any:
    """A response as requests builds one, its body still in ``raw``."""
    response = requests.Response()
    response.status_code = status
    response.reason = http.HTTPStatus(status).phrase
    response.headers = CaseInsensitiveDict(headers or {})
    response.raw = io.BytesIO(body)
    response.request = requests.Request(method, URL).prepare()
    response.url = URL
    return response


def refused() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))


def stale() -> requests.exceptions.ConnectionError:
    closed = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", closed))


OVERSIZED = sc.ResponseError("get_message: response exceeds the 1024-byte limit", operation="get_message")


BASE = Attempt(method="GET", url=URL, recovered=False, stale_retry_used=False, interrupted="",
               capped=(False, False), wall=WALL, server_time=None, strikes=0)


@dataclass(frozen=True)
class Row:
    policy: CallPolicy
    outcome: Any
    expect: dict[str, Any]
    attempt: Attempt = BASE


def knew(**kw: Any) -> Attempt:
    return replace(BASE, **kw)


A, OUT = Action, Outcome
ROWS: dict[str, Row] = {
    "2xx returns and counts a success": Row(
        GET, answer(200, b'{"id": 1}'), dict(action=A.RETURN, outcome=OUT.SUCCESS, reason="", reached=True,
                                             error=None, hint=None)),
    "300 is no success (redirects are not followed)": Row(
        GET, answer(300), dict(action=A.RETURN, outcome=OUT.NEUTRAL, reason="")),
    "202 after a long poll is a success": Row(
        LONG_POLL, answer(202), dict(action=A.RETURN, outcome=OUT.SUCCESS, reached=True)),
    "200 with an empty body on a json_body call is retried as a failure": Row(
        GET, answer(200), dict(action=A.RETRY, outcome=OUT.FAILURE, reason="HTTP 200 with an empty or non-JSON body",
                               error=sc.APIError, status=200, reached=None)),
    "200 with HTML on a json_body POST is a failure handed back": Row(
        POST, answer(200, b"<html>maintenance</html>", method="POST"),
        dict(action=A.RETURN, outcome=OUT.FAILURE, reason="HTTP 200 with an empty or non-JSON body")),
    "200 empty on a call that wants no JSON is a success": Row(
        NO_JSON, answer(200), dict(action=A.RETURN, outcome=OUT.SUCCESS)),
    "401 with a recovery recovers, neutral": Row(
        RECOVERING, answer(401), dict(action=A.RECOVER, outcome=OUT.NEUTRAL, error=None)),
    "401 after the recovery ran is handed back": Row(
        RECOVERING, answer(401), dict(action=A.RETURN, outcome=OUT.NEUTRAL), knew(recovered=True)),
    "401 without a recovery is handed back": Row(
        GET, answer(401), dict(action=A.RETURN, outcome=OUT.NEUTRAL, error=None)),
    "401 with retry_unauthorized is retried, neutral": Row(
        REGISTER, answer(401, method="POST"),
        dict(action=A.RETRY, outcome=OUT.NEUTRAL, error=sc.AuthenticationError, status=401)),
    "403 with retry_unauthorized is retried, neutral": Row(
        REGISTER, answer(403, b'{"message": "Resource not accessible"}', method="POST"),
        dict(action=A.RETRY, outcome=OUT.NEUTRAL, error=sc.AuthenticationError, status=403)),
    "429 with Retry-After is throttled with the hint": Row(
        POST, answer(429, headers={"Retry-After": "7"}, method="POST"),
        dict(action=A.THROTTLED, outcome=OUT.NEUTRAL, hint=7.0, error=sc.RateLimitedError, status=429)),
    "403 with x-ratelimit-remaining 0 waits for the reset": Row(
        GET, answer(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(WALL) + 90)}),
        dict(action=A.THROTTLED, outcome=OUT.NEUTRAL, hint=90.0, error=sc.RateLimitedError)),
    "403 reset is read on GitHub's clock when the answer has no Date": Row(
        GET, answer(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(WALL) + 90)}),
        dict(action=A.THROTTLED, hint=30.0), knew(server_time=WALL + 60)),
    "403 secondary rate limit grows with the strikes": Row(
        GET, answer(403, b'{"message": "You have exceeded a secondary rate limit"}'),
        dict(action=A.THROTTLED, outcome=OUT.NEUTRAL, hint=240.0), knew(strikes=2)),
    "403 without a rate-limit sign is a permission answer": Row(
        GET, answer(403, b'{"message": "Must have admin rights"}'), dict(action=A.RETURN, outcome=OUT.NEUTRAL)),
    "5xx on an idempotent call is retried as a failure": Row(
        GET, answer(500), dict(action=A.RETRY, outcome=OUT.FAILURE, reason="HTTP 500", hint=None,
                               error=sc.ServerError, status=500, reached=True, cost=1.0)),
    "5xx on a POST is a failure handed back, never repeated": Row(
        POST, answer(502, method="POST"), dict(action=A.RETURN, outcome=OUT.FAILURE, reason="HTTP 502", reached=True)),
    "501 is an answer, not an outage": Row(
        GET, answer(501), dict(action=A.RETURN, outcome=OUT.NEUTRAL)),
    "503 with Retry-After carries the hint": Row(
        GET, answer(503, headers={"Retry-After": "5"}),
        dict(action=A.RETRY, outcome=OUT.FAILURE, reason="HTTP 503", hint=5.0, error=sc.ServerError)),
    "502 with Retry-After: the hint is read on 503 only": Row(
        GET, answer(502, headers={"Retry-After": "5"}), dict(action=A.RETRY, hint=None)),
    "other 4xx is handed back, neutral": Row(
        GET, answer(404), dict(action=A.RETURN, outcome=OUT.NEUTRAL, error=None, reached=None)),
    "connection refused on a POST is retried: it never left": Row(
        POST, refused(), dict(action=A.RETRY, outcome=OUT.FAILURE, reason="connection refused", reached=False,
                              error=sc.TransportError, delivered=False, cost=1.0), knew(method="POST")),
    "read timeout on a POST is raised: it may have been done": Row(
        POST, requests.exceptions.ReadTimeout("read timed out"),
        dict(action=A.RAISE, outcome=OUT.FAILURE, reason="no answer within the read timeout", reached=True,
             error=sc.TransportError, delivered=None), knew(method="POST")),
    "read timeout on a GET is retried at twice the budget cost": Row(
        GET, requests.exceptions.ReadTimeout("read timed out"),
        dict(action=A.RETRY, outcome=OUT.FAILURE, reason="no answer within the read timeout", cost=2.0)),
    "stale pooled connection is retried once on a fresh one, neutral": Row(
        GET, stale(), dict(action=A.RETRY_FRESH, outcome=OUT.NEUTRAL, error=None)),
    "stale connection a second time is a failure": Row(
        GET, stale(), dict(action=A.RETRY, outcome=OUT.FAILURE,
                           reason="the server closed the connection without answering"), knew(stale_retry_used=True)),
    "stale connection on a POST is raised": Row(
        POST, stale(), dict(action=A.RAISE, outcome=OUT.FAILURE, error=sc.TransportError), knew(method="POST")),
    "a read timeout cut short by the call's deadline is the call's end, neutral": Row(
        GET, requests.exceptions.ReadTimeout("read timed out"),
        dict(action=A.ENDED, outcome=OUT.NEUTRAL, error=sc.DeadlineExceededError), knew(capped=(False, True))),
    "a connect timeout cut short by the deadline is the call's end": Row(
        GET, requests.exceptions.ConnectTimeout("connect timed out"),
        dict(action=A.ENDED, outcome=OUT.NEUTRAL), knew(capped=(True, False))),
    "a timeout not cut short is the service's fault": Row(
        GET, requests.exceptions.ConnectTimeout("connect timed out"),
        dict(action=A.RETRY, outcome=OUT.FAILURE, reached=False), knew(capped=(False, True))),
    "cancelled in flight is the call's end, neutral": Row(
        GET, requests.exceptions.ConnectionError("cut"), dict(action=A.ENDED, outcome=OUT.NEUTRAL),
        knew(interrupted="cancel")),
    "cut by recover() on a GET is resent at once": Row(
        GET, requests.exceptions.ConnectionError("cut"), dict(action=A.RESEND, outcome=OUT.NEUTRAL),
        knew(interrupted="recover")),
    "cut by recover() on a POST that was sent ends the call": Row(
        POST, requests.exceptions.ConnectionError("cut"), dict(action=A.ENDED, outcome=OUT.NEUTRAL),
        knew(interrupted="recover", method="POST")),
    "cut by recover() on a POST still connecting is resent": Row(
        POST, refused(), dict(action=A.RESEND), knew(interrupted="recover", method="POST")),
    "an oversized body is raised as is, neutral": Row(
        LONG_POLL, OVERSIZED, dict(action=A.RAISE, outcome=OUT.NEUTRAL, error=OVERSIZED)),
    "a TLS failure is raised with what to do, neutral": Row(
        GET, requests.exceptions.SSLError("certificate verify failed"),
        dict(action=A.RAISE, outcome=OUT.NEUTRAL, error=sc.TransportError, delivered=False)),
    "a proxy asking for credentials is raised, neutral": Row(
        GET, requests.exceptions.ProxyError("Tunnel connection failed: 407 Proxy Authentication Required"),
        dict(action=A.RAISE, outcome=OUT.NEUTRAL, error=sc.TransportError, delivered=False)),
    "a refused connection to a port with 407 in it is no proxy answer": Row(
        GET, requests.exceptions.ConnectionError("127.0.0.1:4070: Connection refused"),
        dict(action=A.RETRY, outcome=OUT.FAILURE)),
}


def check(decision: Decision, expect: dict[str, Any]) -> None:
    for name, want in expect.items():
        if name == "delivered":
            assert isinstance(decision.error, sc.TransportError) and decision.error.delivered is want
        elif name == "error" and isinstance(want, type):
            assert type(decision.error) is want, decision
        elif name == "error" and want is not None:
            assert decision.error is want, decision
        else:
            assert getattr(decision, name) == want, (name, decision)


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_classification_table(row: Row) -> None:
    check(classify(row.policy, row.outcome, row.attempt), row.expect)


def test_a_throttle_error_carries_the_server_instant_until_the_adapter_adds_its_jitter() -> None:
    decision = classify(GET, answer(429, headers={"Retry-After": "7"}), knew())
    assert isinstance(decision.error, sc.RateLimitedError)
    assert (decision.error.retry_at, decision.error.retry_after) == (WALL + 7.0, 7.0)
    assert decision.error.status == 429 and decision.error.method == "GET"


def test_a_network_error_keeps_the_cause_and_names_no_secret() -> None:
    url = "https://pipelines.actions.example/_apis/x?sessionToken=***"
    decision = classify(GET, refused(), knew(url=url))
    assert decision.error is not None and isinstance(decision.error.__cause__, requests.exceptions.ConnectionError)
    assert str(decision.error) == f"GET {url} failed: connection refused"


def test_a_throttle_without_a_hint_leaves_the_wait_to_the_adapter() -> None:
    decision = classify(GET, answer(429), knew())
    assert decision.hint is None and isinstance(decision.error, sc.RateLimitedError)
    assert (decision.error.retry_at, decision.error.retry_after) == (WALL, 0.0)


def test_a_503_error_says_when_the_service_asked_to_come_back() -> None:
    decision = classify(GET, answer(503, headers={"Retry-After": "5"}), knew())
    assert isinstance(decision.error, sc.ServerError)
    assert (decision.error.retry_at, decision.error.retry_after) == (WALL + 5.0, 5.0)
    plain = classify(GET, answer(500), knew()).error
    assert isinstance(plain, sc.ServerError) and (plain.retry_at, plain.retry_after) == (None, None)


def test_the_call_end_error_names_the_operation_and_keeps_the_cause() -> None:
    cut = requests.exceptions.ReadTimeout("read timed out")
    decision = classify(GET, cut, knew(capped=(False, True)))
    assert str(decision.error) == "get_runner: the call's time ran out while the request was in flight"
    assert decision.error is not None and decision.error.__cause__ is cut


def test_tls_and_proxy_failures_say_what_to_do() -> None:
    detail = "certificate verify failed: " + "x" * 400
    tls = classify(GET, requests.exceptions.SSLError(detail), knew()).error
    assert str(tls) == (f"TLS failed for {URL}: {detail[:300]}. If the server uses a private CA, pass "
                        "verify='/path/to/ca-bundle.pem' to Client")
    proxy = classify(GET, requests.exceptions.ProxyError("407 Proxy Authentication Required"), knew()).error
    assert str(proxy) == (f"the proxy for {URL} requires authentication (407): put the credentials in the "
                          "proxy URL (http://user:password@proxy:port)")


def _chain(depth: int, bottom: BaseException) -> BaseException:
    """``depth`` exceptions, each the cause of the one above, ``bottom`` last."""
    top = bottom
    for n in range(depth - 1):
        above = RuntimeError(f"layer {n}")
        above.__cause__ = top
        top = above
    return top


def test_what_never_left_is_found_through_causes_reasons_and_repeats() -> None:
    from urllib3.exceptions import MaxRetryError

    retries = MaxRetryError(None, "/", reason=ConnectionRefusedError())  # type: ignore[arg-type]
    assert never_delivered(requests.exceptions.ConnectionError(retries))
    other = OSError("unrelated")
    twice = requests.exceptions.ConnectionError(ConnectionRefusedError(), other)
    twice.__cause__ = other  # met twice on the way: the second meeting is skipped, the walk goes on
    assert never_delivered(twice)
    assert never_delivered(_chain(16, ConnectionRefusedError()))
    assert not never_delivered(_chain(17, ConnectionRefusedError()))  # the walk is bounded (cycles, huge chains)


@pytest.mark.parametrize(("exc", "words"), [
    (requests.exceptions.ConnectionError(ConnectionRefusedError()), "connection refused"),
    (requests.exceptions.ConnectionError(NameResolutionError("h", None, OSError("nx"))),  # type: ignore[arg-type]
     "the host name does not resolve"),
    (requests.exceptions.ConnectTimeout("timed out"), "connecting timed out"),
    (requests.exceptions.ReadTimeout("timed out"), "no answer within the read timeout"),
    (stale(), "the server closed the connection without answering"),
    (requests.exceptions.ConnectionError(ConnectionResetError()), "the connection was reset"),
    (requests.exceptions.ChunkedEncodingError("cut"), "the body was cut short"),
    (requests.exceptions.ProxyError("bad gateway"), "the proxy failed"),
    (ValueError("odd: " + "y" * 300), "ValueError: odd: " + "y" * 183),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_a_failure_is_described_in_words(exc: BaseException, words: str) -> None:
    assert describe(exc) == words


def test_attempts_and_decisions_are_frozen_values() -> None:
    decision, attempt = classify(GET, answer(200, b"{}"), knew()), knew()
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reason = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        attempt.interrupted = "cancel"  # type: ignore[misc]
    assert not hasattr(decision, "__dict__") and not hasattr(attempt, "__dict__")  # slotted: nothing rides along
