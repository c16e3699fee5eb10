"""Classifying what an attempt produced: one pure function from what happened to what to do.

``classify(policy, outcome, attempt)`` takes the call's ``CallPolicy``, the response or the
exception one attempt produced, and what the attempt knows (``Attempt``: whether the call
already recovered or used its stale-connection retry, whether the caller's end or ``recover()``
cut it, whether its socket timeouts were cut to the time left, the clocks a server hint is read
against, the origin's rate-limit strikes) and returns a frozen
``Decision``: the ``Action`` (return, raise, retry, recover, throttled, retry on a fresh
connection, resend, ended), the breaker ``Outcome`` with its reason, the server's hint in
seconds, the error to raise or remember, and whether the request reached the origin.

It reads and builds values only: no breaker, gate, budget, clock or sleep. ``ResilienceAdapter``
applies the decision (records on the breaker, arms the gate, spends or earns budget, sleeps,
runs the recovery), so the whole policy can be read, and tested as a table, in one place
(``tests/test_classify_table.py``). Small helpers below read exceptions and bodies: which
failures never reached the server, a stale pooled connection, a timeout the call inflicted on
itself, a short human cause for a log line, whether a 200's body can be JSON at all.

``Attempt`` and ``Decision`` are frozen value classes (``_value_class.py``), not dataclasses:
both are made on every attempt, so their ``__init__`` is written out (about 3x cheaper than a
dataclass's), and a cron run no longer imports ``dataclasses`` or compiles them (issue 28).
"""

from __future__ import annotations

import enum
import http.client
import json
import re

import requests
import urllib3
from urllib3.exceptions import ConnectTimeoutError, ProtocolError

from ._breaker import Outcome
from ._connections import Interrupt
from ._errors import DeadlineExceededError, ResponseError, ScalesetError, TransientError, TransportError
from ._http import error_from_response
from ._policy import CallPolicy
from ._retry import hint_seconds, is_throttle
from ._secrets import redact
from ._value_class import ValueClass, set_fields

MESSAGE_ID = re.compile(rb'"messageid"\s*:\s*(\d{1,18})', re.IGNORECASE)
# TLS alerts a server sends when it refuses (or wants) the client's certificate. A pattern, not
# a compiled one: only a TLS failure needs it, so ``re`` compiles (and caches) it then, not at start-up.
_CERTIFICATE_REFUSED = (r"ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|"
                        r"CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|ACCESS_DENIED)")


class SlowResponse(requests.exceptions.ReadTimeout):
    """One attempt outlived its connect + read timeouts while bytes kept arriving."""


def self_inflicted(exc: BaseException, capped: tuple[bool, bool]) -> bool:
    """A timeout that only happened because the socket timeout was cut to the time left.

    A read timeout in the body arrives as a ``requests.ConnectionError`` wrapping urllib3's
    ``ReadTimeoutError`` (requests keeps ``ReadTimeout`` for the headers), so the chain is read."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return capped[0]
    if not capped[1]:
        return False
    return isinstance(exc, requests.Timeout) or any(
        isinstance(x, urllib3.exceptions.ReadTimeoutError) for x in walk(exc))


def walk(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 16:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.append(cur)
        for nxt in (*[a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)],
                    getattr(cur, "reason", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return seen


def describe(exc: BaseException) -> str:
    """A short human cause ("connection refused") instead of urllib3's nested reprs."""
    if isinstance(exc, SlowResponse):
        return str(exc)
    chain = walk(exc)
    for kinds, text in (
        ((ConnectionRefusedError,), "connection refused"),
        ((urllib3.exceptions.NameResolutionError,), "the host name does not resolve"),
        ((requests.exceptions.ConnectTimeout, ConnectTimeoutError), "connecting timed out"),
        ((requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError), "no answer within the read timeout"),
        ((http.client.RemoteDisconnected,), "the server closed the connection without answering"),
        ((ConnectionResetError,), "the connection was reset"),
        ((requests.exceptions.ChunkedEncodingError, urllib3.exceptions.IncompleteRead),
         "the body was cut short"),
        ((requests.exceptions.ProxyError,), "the proxy failed"),
    ):
        if any(isinstance(x, kinds) for x in chain):
            return text
    return redact(f"{type(exc).__name__}: {exc}")[:200]


def never_delivered(exc: BaseException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(x, (ConnectTimeoutError, ConnectionRefusedError)) for x in walk(exc))


def stale_connection(exc: BaseException) -> bool:
    """The server closed a kept-alive connection before answering (no response bytes).

    A reset while the body arrives (``ChunkedEncodingError``: the headers came) is not one: the
    server was answering, and broke the answer."""
    if isinstance(exc, (requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return False
    chain = walk(exc)
    return any(isinstance(x, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for x in chain) and any(isinstance(x, ProtocolError) for x in chain)


def looks_like_json(body: bytes | None) -> bool:
    text = (body or b"").lstrip(b"\xef\xbb\xbf \t\r\n")
    return bool(text) and text[:1] in b'{["-0123456789tfn'


def unframed(response: requests.Response) -> bool:
    """No Content-Length and not chunked: the body ended where the connection closed (HTTP/1.0,
    ``Connection: close`` without a length), so a body cut short looks complete."""
    headers = response.headers
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()


def parses(body: bytes) -> bool:
    """Whether ``body`` is whole JSON (read only for unframed bodies: the framing proves the rest)."""
    try:
        json.loads(body.decode("utf-8-sig"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return False
    return True


# -- the decision -----------------------------------------------------------------------------
class Action(enum.Enum):
    """What the adapter does next."""

    RETURN = "return"  # hand the response to the caller (success, or an answer it reads as an error)
    RAISE = "raise"  # raise ``Decision.error`` now
    RETRY = "retry"  # back off (at least ``hint``) and send again, if attempts, time and budget allow
    RECOVER = "recover"  # run the call's ``Recovery``, then send the re-signed request (no attempt used)
    THROTTLED = "throttled"  # arm the origin's gate for ``hint`` (or a backoff) and send after it
    RETRY_FRESH = "retry_on_fresh_connection"  # once, at once: the pooled connection was stale
    RESEND = "resend"  # ``recover()`` cut the attempt: send again at once, no attempt used
    ENDED = "ended"  # the caller's end (deadline, cancel, close) cut it: raise what ended it


class Attempt(ValueClass):
    """What one attempt knows besides its outcome. (How many attempts were made is the adapter's
    business: a RETRY decision goes ahead only while attempts, time and budget allow.)

    ``interrupted`` is why another thread cut the attempt ("" when none did: "recover",
    "deadline", "cancel", "close"); ``capped`` whether the (connect, read) socket timeouts were cut
    to the call's time left; ``wall`` this machine's wall clock and ``server_time`` GitHub's (as
    the client knows it) to read server hints against; ``strikes`` the origin's secondary
    rate-limit hits before this answer."""

    __slots__ = ()

    method: str
    url: str  # redacted
    recovered: bool
    stale_retry_used: bool
    interrupted: Interrupt
    capped: tuple[bool, bool]
    wall: float
    server_time: float | None
    strikes: int

    def __init__(self, method: str, url: str, recovered: bool, stale_retry_used: bool, interrupted: Interrupt,
                 capped: tuple[bool, bool], wall: float, server_time: float | None, strikes: int) -> None:
        set_fields(self, (method, url, recovered, stale_retry_used, interrupted, capped, wall, server_time, strikes))


class Decision(ValueClass):
    """What to do with one attempt's outcome (see ``Action``).

    ``outcome`` and ``reason`` go to the breaker; ``hint`` is the server's wait in seconds
    (``Retry-After``, a rate-limit reset) or None; ``error`` is raised (RAISE, ENDED: the fallback
    when nothing more specific ended the call) or remembered as the last error (RETRY, THROTTLED);
    ``status`` the HTTP status (0 for a network failure); ``reached`` True when the request got
    through to the origin (it answered, or failed after connecting), False when it provably never
    did, None when this outcome says nothing new about it; ``cost`` the
    retry-budget tokens a retry takes."""

    __slots__ = ()

    action: Action
    outcome: Outcome
    reason: str = ""
    hint: float | None = None
    error: ScalesetError | None = None
    status: int = 0
    reached: bool | None = None
    cost: float = 1.0

    def __init__(self, action: Action, outcome: Outcome, reason: str = "", hint: float | None = None,
                 error: ScalesetError | None = None, status: int = 0, reached: bool | None = None,
                 cost: float = 1.0) -> None:
        set_fields(self, (action, outcome, reason, hint, error, status, reached, cost))


def classify(policy: CallPolicy, outcome: requests.Response | BaseException, attempt: Attempt) -> Decision:
    """The decision for one attempt's response or exception (pure: it only reads and builds)."""
    if isinstance(outcome, requests.Response):
        return _response(policy, outcome, attempt)
    return _exception(policy, outcome, attempt)


def _error(policy: CallPolicy, response: requests.Response) -> ScalesetError:
    return error_from_response(response, queue_operation=policy.queue_operation, github_api=policy.github_api)


def _response(policy: CallPolicy, response: requests.Response, attempt: Attempt) -> Decision:
    status = response.status_code
    may_repeat = policy.idempotent or policy.retry_unauthorized
    if 200 <= status < 300:
        if policy.json_body and status in (200, 201):
            body = response.content
            reason = ""
            if not looks_like_json(body):
                reason = f"HTTP {status} with an empty or non-JSON body"
            elif unframed(response) and not parses(body):
                # An unframed body is read whole before it is trusted: where only the close ends
                # it, a body cut short (or reset) looks complete to HTTP.
                reason = f"HTTP {status} with an unframed body that is not whole JSON (cut short?)"
            if reason:
                return Decision(Action.RETRY if may_repeat else Action.RETURN, Outcome.FAILURE, reason,
                                error=_error(policy, response), status=status)
        return Decision(Action.RETURN, Outcome.SUCCESS, status=status, reached=True)
    if status == 401 and policy.recovery is not None and not attempt.recovered:
        return Decision(Action.RECOVER, Outcome.NEUTRAL, status=status)
    if is_throttle(response):
        hint = hint_seconds(response, attempt.wall, attempt.strikes, server_time=attempt.server_time)
        # The server's instant here; the adapter sets the one it will honour (plus jitter, or a backoff).
        wait = hint or 0.0
        at = attempt.wall + wait
        error = error_from_response(response, queue_operation=policy.queue_operation, github_api=policy.github_api,
                                    retry_at=at)  # a retry_at makes it a RateLimitedError
        if isinstance(error, TransientError):
            error.set_retry(retry_at=at, retry_after=wait, now=attempt.wall)
        return Decision(Action.THROTTLED, Outcome.NEUTRAL, hint=hint, error=error, status=status)
    if policy.retry_unauthorized and status in (401, 403):
        return Decision(Action.RETRY, Outcome.NEUTRAL, error=_error(policy, response), status=status)
    if status >= 500 and status != 501:
        if not policy.idempotent:
            return Decision(Action.RETURN, Outcome.FAILURE, f"HTTP {status}", status=status, reached=True)
        hint = hint_seconds(response, attempt.wall, server_time=attempt.server_time) if status == 503 else None
        failed = _error(policy, response)
        if hint is not None and isinstance(failed, TransientError):  # raised as is when no retry is left
            failed.set_retry(retry_at=attempt.wall + hint, retry_after=hint, now=attempt.wall)
        return Decision(Action.RETRY, Outcome.FAILURE, f"HTTP {status}", hint=hint, error=failed,
                        status=status, reached=True)
    return Decision(Action.RETURN, Outcome.NEUTRAL, status=status)


def _exception(policy: CallPolicy, exc: BaseException, attempt: Attempt) -> Decision:
    method, url = attempt.method, attempt.url
    if isinstance(exc, ResponseError):  # an oversized body: says nothing about the service's health
        return Decision(Action.RAISE, Outcome.NEUTRAL, error=exc)
    delivered = not never_delivered(exc)
    if attempt.interrupted or self_inflicted(exc, attempt.capped):
        # Our own doing (the caller's deadline or cancel, a close, a recover): the service is not to blame.
        if attempt.interrupted == Interrupt.RECOVER and (policy.idempotent or not delivered):
            return Decision(Action.RESEND, Outcome.NEUTRAL)
        ended = DeadlineExceededError(f"{policy.operation}: the call's time ran out while the request was in flight",
                                      method=method, url=url, delivered=None)
        ended.__cause__ = exc
        return Decision(Action.ENDED, Outcome.NEUTRAL, error=ended)
    if isinstance(exc, requests.exceptions.SSLError):
        text = redact(str(exc))
        alert = re.search(_CERTIFICATE_REFUSED, text, re.IGNORECASE)
        hint = ("the server or a proxy refused this client's TLS certificate: pass client_cert= to Client "
                "(scaleset-listen: --client-cert/--client-key)" if alert else
                "If the server uses a private CA, pass verify='/path/to/ca-bundle.pem' to Client")
        shown = text[:300] if alert is None or alert.end() <= 300 else f"{text[:200]} ... {alert.group(0)}"
        return Decision(Action.RAISE, Outcome.NEUTRAL, error=_caused(TransportError(
            f"TLS failed for {url}: {shown}. {hint}", method=method, url=url, delivered=False), exc))
    if isinstance(exc, requests.exceptions.ProxyError) and "407" in str(exc):
        return Decision(Action.RAISE, Outcome.NEUTRAL, error=_caused(TransportError(
            f"the proxy for {url} requires authentication (407): put the credentials in the proxy URL "
            "(http://user:password@proxy:port)", method=method, url=url, delivered=False), exc))
    if stale_connection(exc) and not attempt.stale_retry_used and policy.idempotent:
        return Decision(Action.RETRY_FRESH, Outcome.NEUTRAL)
    reason = describe(exc)
    error = _caused(TransportError(f"{method} {url} failed: {reason}", method=method, url=url,
                                   delivered=None if delivered else False), exc)
    # A call that is not idempotent is repeated only when it provably never left.
    action = Action.RETRY if policy.idempotent or not delivered else Action.RAISE
    cost = 2.0 if isinstance(exc, requests.Timeout) else 1.0
    return Decision(action, Outcome.FAILURE, reason, error=error, reached=delivered, cost=cost)


def _caused(error: TransportError, cause: BaseException) -> TransportError:
    error.__cause__ = cause  # as ``raise error from cause`` would
    return error
