"""``ResilienceAdapter``: the one place where attempts are repeated.

It is a ``requests.adapters.HTTPAdapter`` with urllib3's own retries off. For every attempt:

    cancelled or out of time? -> not-before gate -> breaker admission -> send -> read the body
    -> classify -> apply the decision: record on the breaker, then return | raise | recover
       (re-sign) | arm the gate | back off and retry

Deciding and doing are apart: ``_classify.classify`` is a pure function from the call's policy,
the attempt's response or exception and what the attempt knows to a ``Decision``; ``_apply``
here carries it out (breaker, gate, budget, sleeps, the recovery hook).

Each prepared request carries a ``CallPolicy`` (operation, operation class, idempotent?,
recover hook). A recovery hook renews what expired (admin token, session) and hands back a
re-signed request; it runs at most once per call, inside the call's remaining time, and never
counts as a breaker failure. Calls that are not idempotent are repeated only when the request
provably never left (connect errors) or was throttled. No lock is held across I/O.

Time belongs to the caller (see ``deadline.py``): a call ends by the earlier of its own
deadline (``RetryConfig.deadline``, plus the read timeout for a long poll) and the caller's
``Deadline`` scope. Every wait sleeps at most until then and wakes on cancel; every socket
timeout is capped at the time left; the watchdog shuts the socket of an attempt still in flight
at the deadline or on cancel. No attempt goes out with less than ``MIN_ATTEMPT_TIME`` left, and
a timeout the call inflicted on itself is never a breaker failure.

The body is read inside ``send`` (bounded in size and by the deadline, by ``_body``), so a body
cut short after a 200 is a failure the breaker sees, not an error raised later by requests.
The pool managers the attempts go through (tracked pools, keepalive, a lazy TLS context) are
wired by ``_pools``; this module is the attempt loop.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import _body, _pools
from ._breaker import BreakerRegistry, Outcome
from ._classify import Action, Attempt, Decision, SlowResponse, classify
from ._clock import Clock
from ._config import ResilienceConfig
from ._connections import CallInFlight, Interrupt, sending
from ._deadline import MIN_ATTEMPT_TIME, WATCHDOG, Deadline, current
from ._errors import (
    CallCancelledError,
    CircuitOpenError,
    DeadlineExceededError,
    RateLimitedError,
    ResponseError,
    RetryExhaustedError,
    ScalesetError,
    TransportError,
)
from ._http import origin_of
from ._jitter import exponential, half_to_full, plus_up_to
from ._policy import CallPolicy, PolicyRequest, policy_of, with_policy
from ._reachability import Reachability
from ._retry import RateGate, RetryBudget
from ._secrets import redact_url

__all__ = ["MIN_ATTEMPT_TIME", "ResilienceAdapter"]

log = logging.getLogger(__name__)



def _hand_over(response: requests.Response, body: bytes) -> None:
    """Give ``response`` the body ``_body.read_body`` read, as if requests had read it.

    requests has no public way to do this: ``Response.content`` reads ``raw`` itself, unbounded
    and blind to the deadline and to interrupts. The body is read by ``_body`` in bounded chunks
    and stored here where ``content`` looks, so ``.content``, ``.text`` and ``.json()`` work as usual.
    These two private attributes are this package's whole reliance on requests' internals."""
    response._content = body
    response._content_consumed = True


class _Progress:
    """What the loop remembers between attempts (``Attempt`` is the frozen view one attempt's
    classification reads). A plain slotted class: one per call, mutated in place, never compared
    (a dataclass cost the import of ``dataclasses`` and a compile at start-up, issue 28)."""

    __slots__ = ("last_error", "last_status", "number", "recovered", "stale_retry_used")

    def __init__(self) -> None:
        self.number = 0
        self.recovered = False
        self.stale_retry_used = False
        self.last_error: ScalesetError | None = None
        self.last_status = 0


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
        server_time: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._server_time = server_time  # GitHub's wall clock as the client knows it (skew-corrected)
        self._clock = clock
        self.breakers = breakers
        self.gate = RateGate(clock)
        self.budget = RetryBudget(config.retry.budget, clock)
        self._timeout = timeout
        self._closing = closing or threading.Event()
        self.reachability = Reachability(breakers, clock, config.circuit_breaker.reachability_check)
        self._calls: set[CallInFlight] = set()
        self._calls_lock = threading.Lock()
        self.attempts_sent = 0
        self.retries_sent = 0  # attempts that repeated a failed or throttled one
        self._count_lock = threading.Lock()
        super().__init__(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0, pool_block=False)

    # -- pools (the wiring is ``_pools``) ----------------------------------------------------
    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Build the connection pool with this adapter's TLS context and pool size.

        The TLS context (partial-chain trust: a bundle may hold only an intermediate) is built
        by the first HTTPS connection, not here: building one costs 0.5-1.4 ms of CPU, which a
        client that never opens an HTTPS connection (a plain-HTTP GHES, a test) need not pay.
        A context passed in ``pool_kwargs`` (a client certificate's) is used as it is."""
        _pools.keepalive_default(pool_kwargs)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        _pools.track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The proxy pool for ``proxy``, with a TLS context of its own like the direct pools'
        (built by its first HTTPS connection)."""
        fresh = proxy not in self.proxy_manager
        _pools.keepalive_default(proxy_kwargs)
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh:
            _pools.track(manager)
        return manager

    def look(self, origin: str, timeout: float = 2.0, *, force: bool = False) -> bool:
        """A TCP look at an origin that refused us (see ``_reachability``); True when it is back
        and its open breakers were put to a probe."""
        return self.reachability.look(origin, timeout, force=force)

    # -- interrupting calls from other threads ------------------------------------------------
    def _in_flight(self) -> list[CallInFlight]:
        with self._calls_lock:
            return list(self._calls)

    def interrupt_in_flight(self, why: Interrupt) -> int:
        """Interrupt every call in progress: ``close`` ends them, ``recover`` makes each retry at
        once on a fresh connection (a call blocked on a black-holed socket gains its retry now)."""
        calls = self._in_flight()
        for call in calls:
            call.interrupt(why)
        return len(calls)

    def wake_all(self) -> None:
        """End every backoff or break wait now (after ``recover()``); the woken calls re-check the
        gate and the breaker before sending anything."""
        for call in self._in_flight():
            call.wake()

    # -- the loop ----------------------------------------------------------------------------
    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: bool | str = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        """Send with breakers and retries; returns a response with its body read, or raises
        a ``ScalesetError`` (``CircuitOpenError``, ``RateLimitedError``, ``TransportError`` and its
        ``DeadlineExceededError`` / ``CallCancelledError``, ``RetryExhaustedError``,
        ``ResponseError``).

        Where this departs from ``HTTPAdapter.send``, and why:

        - ``timeout`` is ignored: each attempt's connect/read timeouts come from the client (the
          call's ``CallPolicy.read_timeout`` for the long poll) and are cut to the call's time
          left, so a caller's ``Deadline`` bounds the whole call, retries and backoffs included.
          A per-request timeout would bound one attempt only.
        - ``stream`` is ignored: the body is always read here, bounded in size and by the
          deadline, so a body cut short or oversized is classified (and retried or recorded on
          the breaker) like any other failure, instead of surfacing later from ``.content``.
        - Errors are ours, raised through requests unchanged (``Session.send`` does not wrap an
          adapter's exceptions): a ``CircuitOpenError`` or ``RateLimitedError`` carries what a
          caller needs (``retry_at``, ``origin``, the service's diagnostics), and the public
          errors do not depend on requests (its exceptions are kept as ``__cause__``). So code
          that sends through this adapter catches ``ScalesetError`` (``TransientError`` for what
          is worth waiting out), not ``requests.RequestException``.
        """
        policy = policy_of(request)
        read_t = policy.read_timeout if policy.read_timeout is not None else self._timeout[1]
        own = self._config.retry.deadline + (read_t if policy.read_timeout else 0.0)
        now = self._clock.monotonic()
        scope = current()
        expiry = now + own
        caller_expiry = scope.effective_expiry() if scope is not None else math.inf
        call = CallInFlight(self._clock, min(expiry, caller_expiry), caller_expiry < expiry)
        with self._calls_lock:
            self._calls.add(call)
        handles = scope.subscribe(lambda reason: call.interrupt(Interrupt.CANCEL)) if scope is not None else []
        if self._closing.is_set():
            call.interrupt(Interrupt.CLOSE)
        try:
            return self._loop(request, policy, call, scope, read_t, verify, cert, proxies)
        finally:
            if handles:
                Deadline.unsubscribe(handles)
            with self._calls_lock:
                self._calls.discard(call)

    def _loop(self, request: requests.PreparedRequest, policy: CallPolicy, call: CallInFlight, scope: Deadline | None,
              read_t: float, verify: Any, cert: Any, proxies: Any) -> requests.Response:
        clock = self._clock
        retry_cfg = self._config.retry
        connect_t = self._timeout[0]
        state = _Progress()
        while True:
            self._check(call, scope, request, state)
            origin = origin_of(request.url or "")
            gate_wait = self.gate.wait_for(origin)
            if gate_wait > 0:
                self._wait_hint(gate_wait, call, scope, origin, request, state)
                continue
            breaker = self.breakers.get(origin, policy.operation_class)
            left = call.left()
            try:
                permit = breaker.acquire(lease=min(connect_t + read_t, max(left, 0.0)) + 5.0)
            except CircuitOpenError as exc:
                reach = self.reachability
                if reach.unreachable(origin) and not proxies and self._config.circuit_breaker.reachability_check > 0:
                    # The origin refused connections: a bare TCP connect (no HTTP request) tells
                    # whether it is back; if so, this call becomes the probe now.
                    if self.look(origin, timeout=min(2.0, max(left, 0.0))):
                        continue
                    if exc.retry_after is not None:
                        exc.set_retry(retry_after=min(exc.retry_after, reach.next_look(origin)), now=clock.wall())
                wait = exc.retry_after
                if (state.number > 0 and wait is not None and wait <= retry_cfg.max_hint_wait
                        and wait + MIN_ATTEMPT_TIME < left):
                    self._sleep(plus_up_to(wait + 0.05, 0.5, clock.random()), call, scope, request, state)
                    continue
                if state.last_error is not None:
                    raise exc from state.last_error
                raise
            if left < MIN_ATTEMPT_TIME:
                breaker.record(permit, Outcome.NEUTRAL)
                self._check(call, scope, request, state, too_little=True)
            state.number += 1
            with self._count_lock:
                self.attempts_sent += 1
                if state.number > 1:
                    self.retries_sent += 1
            capped = (left < connect_t, left < read_t)  # (connect, read) timeouts cut short by the deadline
            # The watchdog cuts the attempt at the call's deadline, or earlier when one attempt
            # outlives its connect + read timeouts (a body dripped byte by byte).
            slow = connect_t + read_t < left
            reason = Interrupt.SLOW if slow else Interrupt.DEADLINE
            timer = WATCHDOG.schedule(min(left, connect_t + read_t), lambda: call.interrupt(reason))  # noqa: B023
            sending.call = call
            outcome: requests.Response | BaseException
            try:
                outcome = super().send(request, stream=True, timeout=(min(connect_t, left), min(read_t, left)),
                                       verify=verify, cert=cert, proxies=proxies)
                _hand_over(outcome, _body.read_body(outcome, policy, call, self._config.max_response_bytes))
            except (ResponseError, requests.RequestException, urllib3.exceptions.HTTPError, OSError) as raised:
                outcome = raised
            finally:
                sending.call = None
                cut = call.end_attempt()
                WATCHDOG.cancel(timer)
            outcome, why = self._settle(outcome, cut, call, connect_t + read_t)
            if isinstance(outcome, requests.Response) and log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %s (attempt %d, %s)", request.method, redact_url(request.url or ""),
                          outcome.status_code, state.number, policy.operation)
            decision = classify(policy, outcome, self._attempt(request, state, why, capped))
            done = self._apply(decision, outcome, request, policy, breaker, permit, state, call, scope)
            if isinstance(done, requests.Response):
                return done
            if isinstance(done, requests.PreparedRequest):
                request = done

    @staticmethod
    def _settle(outcome: requests.Response | BaseException, cut: bool, call: CallInFlight,
                bound: float) -> tuple[requests.Response | BaseException, Interrupt]:
        """The attempt's outcome as ``classify`` must see it, and why another thread cut it (NONE).

        A response read from a socket an interrupt shut is never handed back, whatever it looks
        like: the shutdown may have ended a body early where nothing frames it (a close-delimited
        body, a Connection: close response read to its end) or ended the headers half-way, which
        http.client turns into a 200 with the headers it had. It becomes the error its cause
        names. A "slow" cut (one attempt outlived its connect + read timeouts, the call still has
        time) is the service's doing: a ``SlowResponse`` the breaker counts, and the call retries."""
        why = call.interrupted if cut or isinstance(outcome, BaseException) else Interrupt.NONE
        if isinstance(outcome, requests.Response):
            if not cut:
                if call.interrupted is Interrupt.SLOW:
                    call.rearm()  # the timer fired after the response was complete: nothing was cut
                return outcome, Interrupt.NONE
            outcome.close()
            outcome = requests.exceptions.ConnectionError(
                f"the response was cut ({why or 'interrupted'}) before it was complete")
        if why is Interrupt.SLOW:  # not the caller's doing: one attempt outlived its timeouts
            call.rearm()
            slow = SlowResponse(f"the response was still arriving at the attempt deadline "
                                f"({bound:g}s: connect + read timeout)")
            slow.__cause__ = outcome
            return slow, Interrupt.NONE
        return outcome, why

    def _attempt(self, request: requests.PreparedRequest, state: _Progress, interrupted: Interrupt,
                 capped: tuple[bool, bool]) -> Attempt:
        """What this attempt knows, frozen for ``classify``."""
        return Attempt(method=request.method or "", url=redact_url(request.url or ""),
                       recovered=state.recovered, stale_retry_used=state.stale_retry_used, interrupted=interrupted,
                       capped=capped, wall=self._clock.wall(),
                       server_time=self._server_time() if self._server_time is not None else None,
                       strikes=self.gate.strikes(origin_of(request.url or "")))

    def _check(self, call: CallInFlight, scope: Deadline | None, request: requests.PreparedRequest, state: _Progress, *,
               too_little: bool = False, cause: BaseException | None = None, in_flight: bool = False) -> None:
        """Raise when the call may not go on: closed, cancelled, or out of time."""
        method, url = request.method or "", redact_url(request.url or "")
        delivered = None if in_flight else False
        last = f"; last error: {state.last_error}" if state.last_error is not None else ""
        why = call.interrupted
        error: TransportError | None = None
        if why is Interrupt.CLOSE or (self._closing.is_set() and why is not Interrupt.DEADLINE):
            during = " during the request" if in_flight else ""
            error = CallCancelledError(f"{method} {url}: the client was closed{during}{last}",
                                       method=method, url=url, delivered=delivered)
        elif why is Interrupt.CANCEL or (scope is not None and scope.cancelled):
            reason = scope.cancel_reason() if scope is not None else ""
            error = CallCancelledError(f"{method} {url} was cancelled ({reason or 'cancelled'}){last}",
                                       method=method, url=url, delivered=delivered)
        elif why is Interrupt.DEADLINE or too_little or call.left() <= 0:
            if call.caller_bound or state.number == 0:
                error = DeadlineExceededError(
                    f"{method} {url}: the caller's deadline passed" if call.caller_bound
                    else f"{method} {url}: the call's deadline passed", method=method, url=url, delivered=delivered)
            else:
                last_error = state.last_error
                raise RetryExhaustedError(
                    f"{policy_of(request).operation} gave up after {state.number} attempts: the call's "
                    f"{self._config.retry.deadline:.0f}s deadline passed{last}", attempts=state.number,
                    status=state.last_status, last_error=last_error) from (cause or last_error)
        if error is not None:
            raise error from (cause or state.last_error)

    # -- pieces of the loop ------------------------------------------------------------------
    def _apply(self, decision: Decision, outcome: requests.Response | BaseException,
               request: requests.PreparedRequest, policy: CallPolicy, breaker: Any, permit: Any,
               state: _Progress, call: CallInFlight,
               scope: Deadline | None) -> requests.Response | requests.PreparedRequest | None:
        """Carry out ``decision``: record it on the breaker, note whether the origin was reached,
        earn budget on a first-try success, then return, raise, recover, or wait and go round again
        (None: send ``request`` again; a request: send that one)."""
        breaker.record(permit, decision.outcome, decision.reason)
        origin = origin_of(request.url or "")
        self.reachability.note(origin, decision.reached)
        if decision.outcome is Outcome.SUCCESS:
            if state.number == 1:
                self.budget.earn(origin)
            self.gate.clear_strikes(origin)
        action, error = decision.action, decision.error
        if error is not None and action in (Action.RETRY, Action.THROTTLED, Action.RAISE):
            state.last_error, state.last_status = error, decision.status
        if action is Action.RETURN:
            assert isinstance(outcome, requests.Response)
            return outcome
        if action is Action.RAISE:
            assert error is not None
            raise error
        if action is Action.ENDED:
            assert error is not None and isinstance(outcome, BaseException)
            self._check(call, scope, request, state, cause=outcome, in_flight=True)  # cancelled or closed?
            raise error
        if action is Action.RESEND:
            call.rearm()
            state.number -= 1
            log.info("%s: interrupted by recover(); retrying on a fresh connection", policy.operation)
            return None
        if action is Action.RETRY_FRESH:
            state.stale_retry_used = True
            log.debug("%s %s: stale pooled connection, retrying on a new one", request.method,
                      redact_url(request.url or ""))
            return None
        if action is Action.RECOVER:
            assert isinstance(outcome, requests.Response)
            return self._recover(policy, state, call)
        if action is Action.THROTTLED:
            self._throttled(decision, origin, state)  # the gate check at the top of the loop waits
            return None
        self._backoff_or_raise(request, policy, state, call, scope, hint=decision.hint, cost=decision.cost)
        return None

    def _recover(self, policy: CallPolicy, state: _Progress, call: CallInFlight) -> requests.PreparedRequest:
        """Run the call's recovery once, inside the call's remaining time; the re-signed request
        (a renewal that fails raises its error, which ends the call)."""
        recovery = policy.recovery
        assert recovery is not None
        state.recovered = True
        log.info("%s: answered 401; renewing the %s", policy.operation, recovery.renews)
        # The recovery's own calls (a token or session renewal) run inside this call's time.
        with Deadline(max(0.0, call.left()), clock=self._clock, reason="recovery"):
            recovery.renew()
            renewed = recovery.resign()
        state.number -= 1  # the recovery's retry does not use up an attempt
        return renewed if isinstance(renewed, PolicyRequest) else with_policy(renewed, policy)

    def _throttled(self, decision: Decision, origin: str, state: _Progress) -> None:
        """Arm the origin's gate for the server's hint (or a backoff) plus up to 1 s, so a fleet does
        not return on the same second; raise when no attempt is left. The gate check at the top of
        the loop waits the hold out, or raises this error when it is longer than the call may wait."""
        self.gate.strike(origin)
        hint = decision.hint
        if hint is None:
            retry = self._config.retry
            hint = half_to_full(exponential(state.number, retry.backoff_base, retry.backoff_max), self._clock.random())
        wait = plus_up_to(hint, 1.0, self._clock.random())
        self.gate.arm(origin, wait)
        error = decision.error
        assert isinstance(error, RateLimitedError)
        now_wall = self._clock.wall()
        error.set_retry(retry_at=now_wall + wait, retry_after=wait, now=now_wall)
        if state.number >= self._config.retry.max_attempts:
            raise error

    def _wait_hint(self, wait: float, call: CallInFlight, scope: Deadline | None, origin: str,
                   request: requests.PreparedRequest, state: _Progress) -> None:
        if wait > self._config.retry.max_hint_wait or wait + MIN_ATTEMPT_TIME >= call.left():
            now_wall = self._clock.wall()
            if isinstance(state.last_error, RateLimitedError):
                raise state.last_error
            raise RateLimitedError(
                f"{origin} asked us to wait {wait:.0f}s, more than this call may wait; retry after that",
                retry_at=now_wall + wait, retry_after=wait, method=request.method or "",
                url=redact_url(request.url or ""))
        self._sleep(wait, call, scope, request, state)

    def _backoff_or_raise(self, request: requests.PreparedRequest, policy: CallPolicy, state: _Progress,
                          call: CallInFlight, scope: Deadline | None, hint: float | None = None,
                          cost: float = 1.0) -> None:
        cfg = self._config.retry
        origin = origin_of(request.url or "")
        wait = cfg.backoff(state.number, self._clock.random())
        if hint is not None and hint <= cfg.max_hint_wait:
            wait = max(wait, hint)
        why = ""
        if state.number >= cfg.max_attempts:
            why = f"after {state.number} attempts"
        elif wait + MIN_ATTEMPT_TIME >= call.left():
            if call.caller_bound:
                self._check(call, scope, request, state, too_little=True)
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
        self._sleep(wait, call, scope, request, state)

    def _sleep(self, seconds: float, call: CallInFlight, scope: Deadline | None, request: requests.PreparedRequest,
               state: _Progress) -> None:
        """Wait up to ``seconds`` (never past the deadline); a wake ends it early, a cancel raises."""
        self._check(call, scope, request, state)
        self._clock.sleep(max(0.0, min(seconds, call.left())), call.event)
        self._check(call, scope, request, state)
        call.rearm()


