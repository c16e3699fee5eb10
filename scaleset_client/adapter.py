"""``ResilienceAdapter``: the one place where attempts are repeated.

It is a ``requests.adapters.HTTPAdapter`` with urllib3's own retries off. For every attempt:

    closing? -> deadline -> not-before gate -> breaker admission -> send -> read the body
    -> classify -> record on the breaker -> return | recover (re-sign) | back off and retry

Each prepared request carries a ``CallPolicy`` (operation, operation class, idempotent?,
recover hook). A recovery hook renews what expired (admin token, session) and hands back a
re-signed request; it runs at most once per call and never counts as a breaker failure. Calls
that are not idempotent are repeated only when the request provably never left (connect
errors) or was throttled. No lock is held across I/O.

The body is read inside ``send`` (bounded in size and by the attempt's deadline), so a body cut
short after a 200 is a failure the breaker sees, not an error raised later by requests.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, ProtocolError

from ._http import error_from_response, origin_of
from .breaker import BreakerRegistry, Outcome
from .clock import Clock
from .config import ResilienceConfig
from .errors import (
    CircuitOpenError,
    RateLimitedError,
    ResponseError,
    RetryExhaustedError,
    ScalesetError,
    TransportError,
)
from .retry import RateGate, RetryBudget, hint_seconds, is_throttle
from .secrets import redact, redact_url

__all__ = ["CallPolicy", "ResilienceAdapter", "attach_policy"]

log = logging.getLogger(__name__)

RecoverHook = Callable[[requests.PreparedRequest, requests.Response], "requests.PreparedRequest | None"]
_POLICY_ATTR = "_scaleset_policy"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How one call may be repeated and recovered.

    ``operation_class`` is the breaker partition within the origin: ``long_poll``, ``session``,
    ``queue_ops``, ``admin`` or ``github_api``. ``json_body`` says a 200/201 must carry JSON (an
    empty or non-JSON 200 is then a retryable failure). ``retry_unauthorized`` retries 401/403
    without counting them against the breaker (runner registration right after a token is
    minted). ``read_timeout`` overrides the client's (the long poll).
    """

    operation: str
    operation_class: str
    idempotent: bool
    json_body: bool = True
    recover: RecoverHook | None = None
    retry_unauthorized: bool = False
    read_timeout: float | None = None
    queue_operation: bool = False
    github_api: bool = False


def attach_policy(request: requests.PreparedRequest, policy: CallPolicy) -> requests.PreparedRequest:
    setattr(request, _POLICY_ATTR, policy)
    return request


def policy_of(request: requests.PreparedRequest) -> CallPolicy:
    policy = getattr(request, _POLICY_ATTR, None)
    if isinstance(policy, CallPolicy):
        return policy
    method = (request.method or "GET").upper()
    return CallPolicy(operation=f"{method} request", operation_class="admin",
                      idempotent=method in _IDEMPOTENT, json_body=False)


# -- connections we can abort from another thread --------------------------------------------
class _LiveConnections:
    """Sockets of connections in this adapter's pools, so ``close`` can cut a blocked long poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()

    def add(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._conns.add(conn)

    def abort_all(self) -> int:
        with self._lock:
            conns = list(self._conns)
        cut = 0
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    cut += 1
                except OSError:
                    pass
        return cut


def _tracked_pool(base: type[HTTPConnectionPool], conn_base: type[HTTPConnection],
                  live: _LiveConnections) -> type[HTTPConnectionPool]:
    class TrackedConnection(conn_base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            live.add(self)

    class TrackedPool(base):  # type: ignore[valid-type,misc]
        ConnectionCls = TrackedConnection

    return TrackedPool


def _keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keepalive on pooled sockets: a NAT that silently drops idle flows is noticed."""
    opts: list[tuple[int, int, int]] = list(HTTPConnection.default_socket_options)
    opts.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (("TCP_KEEPIDLE", 45), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return opts


@dataclass(slots=True)
class _Attempt:
    """What the loop remembers between attempts."""

    number: int = 0
    recovered: bool = False
    stale_retry_used: bool = False
    last_error: ScalesetError | None = None
    last_status: int = 0


class ResilienceAdapter(HTTPAdapter):
    """A requests transport adapter with breakers, retries, budgets and recovery hooks."""

    def __init__(
        self,
        *,
        config: ResilienceConfig,
        clock: Clock,
        breakers: BreakerRegistry,
        timeout: tuple[float, float],
        pool_maxsize: int = 16,
        closing: threading.Event | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self.breakers = breakers
        self.gate = RateGate(clock)
        self.budget = RetryBudget(config.retry.budget, clock)
        self._timeout = timeout
        self._closing = closing or threading.Event()
        self._wake = threading.Event()  # set (and replaced) to cut every current wait short
        self._live = _LiveConnections()
        self.attempts_sent = 0
        self._count_lock = threading.Lock()
        super().__init__(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0, pool_block=False)

    # -- pools -------------------------------------------------------------------------------
    def _track(self, manager: Any) -> None:
        manager.pool_classes_by_scheme = {
            "http": _tracked_pool(HTTPConnectionPool, HTTPConnection, self._live),
            "https": _tracked_pool(HTTPSConnectionPool, HTTPSConnection, self._live),
        }

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        from ._tls import partial_chain_context  # local: keeps this hook self-contained

        pool_kwargs.setdefault("socket_options", _keepalive_options())
        pool_kwargs.setdefault("ssl_context", partial_chain_context())  # a bundle may hold only an intermediate
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self._track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        from ._tls import partial_chain_context

        proxy_kwargs.setdefault("socket_options", _keepalive_options())
        proxy_kwargs.setdefault("ssl_context", partial_chain_context())
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh:
            self._track(manager)
        return manager

    def abort_in_flight(self) -> int:
        """Shut down every pooled socket: a thread blocked in a long poll returns at once."""
        self.wake_all()
        return self._live.abort_all()

    def wake_all(self) -> None:
        """End every backoff or break wait now (after ``recover()``, or when closing); the woken
        calls re-check the gate and the breaker before sending anything."""
        woken, self._wake = self._wake, threading.Event()
        woken.set()

    # -- the loop ----------------------------------------------------------------------------
    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with breakers and retries; returns a response with its body read, or raises
        a ``ScalesetError`` (``CircuitOpenError``, ``RateLimitedError``, ``TransportError``,
        ``RetryExhaustedError``, ``ResponseError``)."""
        verify = kwargs.get("verify", True)
        cert = kwargs.get("cert")
        proxies = kwargs.get("proxies")
        policy = policy_of(request)
        clock = self._clock
        retry_cfg = self._config.retry
        connect_t = self._timeout[0]
        read_t = policy.read_timeout if policy.read_timeout is not None else self._timeout[1]
        deadline = clock.monotonic() + retry_cfg.deadline + (read_t if policy.read_timeout else 0.0)
        state = _Attempt()
        while True:
            if self._closing.is_set():
                raise TransportError("the client is closed", method=request.method or "",
                                     url=redact_url(request.url or ""), delivered=False)
            origin = origin_of(request.url or "")
            gate_wait = self.gate.wait_for(origin)
            if gate_wait > 0:
                self._wait_hint(gate_wait, deadline, origin, request, state)
                continue
            breaker = self.breakers.get(origin, policy.operation_class)
            try:
                permit = breaker.acquire(lease=connect_t + read_t + 5.0)
            except CircuitOpenError as exc:
                wait = exc.retry_after
                if (state.number > 0 and wait is not None and wait <= retry_cfg.max_hint_wait
                        and clock.monotonic() + wait < deadline):
                    self._sleep(wait + 0.05 + clock.random() * 0.5, request)
                    continue
                if state.last_error is not None:
                    raise exc from state.last_error
                raise
            state.number += 1
            with self._count_lock:
                self.attempts_sent += 1
            remaining = max(0.001, deadline - clock.monotonic())
            attempt_deadline = clock.monotonic() + min(remaining, connect_t + read_t)
            try:
                response = super().send(request, stream=True, timeout=(min(connect_t, remaining),
                                        min(read_t, remaining)), verify=verify, cert=cert, proxies=proxies)
                self._read_body(response, attempt_deadline, policy)
            except ResponseError:
                breaker.record(permit, Outcome.FAILURE, "oversized body")
                raise
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if self._closing.is_set():
                    breaker.record(permit, Outcome.NEUTRAL)
                    raise TransportError("the client was closed during the request", method=request.method or "",
                                         url=redact_url(request.url or ""), delivered=None) from exc
                self._on_exception(exc, request, policy, breaker, permit, state, deadline)
                continue
            done = self._on_response(response, request, policy, breaker, permit, state, deadline)
            if isinstance(done, requests.Response):
                return done
            if isinstance(done, requests.PreparedRequest):
                request = done

    # -- pieces of the loop ------------------------------------------------------------------
    def _read_body(self, response: requests.Response, deadline: float, policy: CallPolicy) -> None:
        limit = self._config.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise ResponseError(f"{policy.operation}: response of {declared} bytes exceeds the "
                                f"{limit}-byte limit", operation=policy.operation)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise ResponseError(f"{policy.operation}: response exceeds the {limit}-byte limit",
                                        operation=policy.operation)
                chunks.append(chunk)
                if self._clock.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout("the body was still arriving at the attempt deadline")
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)
        response._content_consumed = True
        response.raw.release_conn()

    def _on_exception(self, exc: BaseException, request: requests.PreparedRequest, policy: CallPolicy,
                      breaker: Any, permit: Any, state: _Attempt, deadline: float) -> None:
        method = request.method or ""
        url = redact_url(request.url or "")
        delivered = not _never_delivered(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            breaker.record(permit, Outcome.NEUTRAL)
            raise TransportError(
                f"TLS failed for {url}: {redact(str(exc))[:300]}. If the server uses a private CA, pass "
                "verify='/path/to/ca-bundle.pem' to Client", method=method, url=url, delivered=False) from exc
        if isinstance(exc, requests.exceptions.ProxyError) and "407" in str(exc):
            breaker.record(permit, Outcome.NEUTRAL)
            raise TransportError(
                f"the proxy for {url} requires authentication (407): put the credentials in the proxy URL "
                "(http://user:password@proxy:port)", method=method, url=url, delivered=False) from exc
        if _stale_connection(exc) and not state.stale_retry_used and policy.idempotent:
            # A kept-alive connection the server had closed: retry once on a fresh one.
            state.stale_retry_used = True
            breaker.record(permit, Outcome.NEUTRAL)
            log.debug("%s %s: stale pooled connection, retrying on a new one", method, url)
            return
        timeout = isinstance(exc, requests.Timeout)
        reason = _describe(exc)
        breaker.record(permit, Outcome.FAILURE, reason)
        state.last_status = 0
        state.last_error = TransportError(
            f"{method} {url} failed: {reason}", method=method, url=url, delivered=False if not delivered else None)
        state.last_error.__cause__ = exc
        if not (policy.idempotent or not delivered):
            raise state.last_error
        self._backoff_or_raise(request, policy, state, deadline, cost=2.0 if timeout else 1.0)

    def _on_response(self, response: requests.Response, request: requests.PreparedRequest, policy: CallPolicy,
                     breaker: Any, permit: Any, state: _Attempt,
                     deadline: float) -> requests.Response | requests.PreparedRequest | None:
        status = response.status_code
        origin = origin_of(request.url or "")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s (attempt %d, %s)", request.method, redact_url(request.url or ""), status,
                      state.number, policy.operation)
        if 200 <= status < 300:
            if policy.json_body and status in (200, 201) and not _looks_like_json(response.content):
                breaker.record(permit, Outcome.FAILURE, f"HTTP {status} with an empty or non-JSON body")
                return self._retry_status(response, request, policy, state, deadline, hint=None)
            breaker.record(permit, Outcome.SUCCESS)
            if state.number == 1:
                self.budget.earn(origin)
            self.gate.clear_strikes(origin)
            return response
        if status == 401 and policy.recover is not None and not state.recovered:
            breaker.record(permit, Outcome.NEUTRAL)
            state.recovered = True
            renewed = policy.recover(request, response)
            if renewed is None:
                return response
            state.number -= 1  # the recovery's retry does not use up an attempt
            return attach_policy(renewed, getattr(renewed, _POLICY_ATTR, policy))
        if is_throttle(response):
            breaker.record(permit, Outcome.NEUTRAL)
            self._throttled(response, request, policy, state, deadline)
            return None
        if policy.retry_unauthorized and status in (401, 403):
            breaker.record(permit, Outcome.NEUTRAL)
            return self._retry_status(response, request, policy, state, deadline, hint=None)
        if status >= 500 and status != 501:
            breaker.record(permit, Outcome.FAILURE, f"HTTP {status}")
            if not policy.idempotent:
                return response
            hint = hint_seconds(response, self._clock.wall()) if status == 503 else None
            return self._retry_status(response, request, policy, state, deadline, hint=hint)
        breaker.record(permit, Outcome.NEUTRAL)
        return response

    def _retry_status(self, response: requests.Response, request: requests.PreparedRequest, policy: CallPolicy,
                      state: _Attempt, deadline: float, hint: float | None) -> requests.Response | None:
        state.last_status = response.status_code
        state.last_error = error_from_response(response, queue_operation=policy.queue_operation,
                                               github_api=policy.github_api)
        if not policy.idempotent and not policy.retry_unauthorized:
            return response
        self._backoff_or_raise(request, policy, state, deadline, hint=hint)
        return None

    def _throttled(self, response: requests.Response, request: requests.PreparedRequest, policy: CallPolicy,
                   state: _Attempt, deadline: float) -> None:
        origin = origin_of(request.url or "")
        now_wall = self._clock.wall()
        strikes = self.gate.strike(origin) if response.status_code in (403, 429) else 0
        hint = hint_seconds(response, now_wall, strikes)
        if hint is None:
            hint = self._config.retry.backoff(state.number, 0.5 + 0.5 * self._clock.random())
        wait = hint + self._clock.random()  # up to 1 s so a fleet does not return on the same second
        self.gate.arm(origin, wait)
        state.last_status = response.status_code
        retry_at = now_wall + wait
        state.last_error = error_from_response(response, queue_operation=policy.queue_operation,
                                               github_api=policy.github_api, retry_at=retry_at)
        too_long = wait > self._config.retry.max_hint_wait or self._clock.monotonic() + wait >= deadline
        if too_long or state.number >= self._config.retry.max_attempts:
            raise state.last_error
        # The gate check at the top of the loop does the waiting.

    def _wait_hint(self, wait: float, deadline: float, origin: str, request: requests.PreparedRequest,
                   state: _Attempt) -> None:
        if wait > self._config.retry.max_hint_wait or self._clock.monotonic() + wait >= deadline:
            retry_at = self._clock.wall() + wait
            if isinstance(state.last_error, RateLimitedError):
                raise state.last_error
            raise RateLimitedError(
                f"{origin} asked us to wait {wait:.0f}s, more than this call may wait; retry after that",
                retry_at=retry_at, method=request.method or "", url=redact_url(request.url or ""))
        self._sleep(wait, request)

    def _backoff_or_raise(self, request: requests.PreparedRequest, policy: CallPolicy, state: _Attempt,
                          deadline: float, hint: float | None = None, cost: float = 1.0) -> None:
        cfg = self._config.retry
        origin = origin_of(request.url or "")
        wait = cfg.backoff(state.number, self._clock.random())
        if hint is not None and hint <= cfg.max_hint_wait:
            wait = max(wait, hint)
        why = ""
        if state.number >= cfg.max_attempts:
            why = f"after {state.number} attempts"
        elif self._clock.monotonic() + wait >= deadline:
            why = f"after {state.number} attempts: the call's {cfg.deadline:.0f}s deadline would pass"
        elif not self.budget.spend(origin, cost):
            why = f"after {state.number} attempts: the retry budget for {origin} is spent"
        if why:
            last = state.last_error
            if state.number == 1 and last is not None:
                raise last  # nothing was retried: the error itself says it best
            raise RetryExhaustedError(
                f"{policy.operation} gave up {why}; last error: {last}", attempts=state.number,
                status=state.last_status, last_error=last) from last
        log.debug("%s: retry %d in %.2fs (%s)", policy.operation, state.number, wait, state.last_error)
        self._sleep(wait, request)

    def _sleep(self, seconds: float, request: requests.PreparedRequest) -> None:
        if self._closing.is_set() or (self._clock.sleep(seconds, self._wake) and self._closing.is_set()):
            raise TransportError("the client was closed while waiting to retry", method=request.method or "",
                                 url=redact_url(request.url or ""), delivered=False)


def _walk(exc: BaseException) -> list[BaseException]:
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


def _describe(exc: BaseException) -> str:
    """A short human cause ("connection refused") instead of urllib3's nested reprs."""
    chain = _walk(exc)
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


def _never_delivered(exc: BaseException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(x, (ConnectTimeoutError, ConnectionRefusedError)) for x in _walk(exc))


def _stale_connection(exc: BaseException) -> bool:
    """The server closed a kept-alive connection before answering (no response bytes)."""
    return any(isinstance(x, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for x in _walk(exc)) and not isinstance(exc, requests.Timeout) and any(
        isinstance(x, ProtocolError) for x in _walk(exc))


def _looks_like_json(body: bytes | None) -> bool:
    text = (body or b"").lstrip(b"\xef\xbb\xbf \t\r\n")
    return bool(text) and text[:1] in b'{["-0123456789tfn'
