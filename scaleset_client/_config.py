"""Resilience settings: immutable, validated at construction, every knob explained.

All durations are seconds (float). A ``ConfigError`` names the field and the accepted range.
Derive a changed copy with ``dataclasses.replace(config, field=value)``.

They are value classes (``_value_class.py``), not ``@dataclass``es: they behave as the frozen
dataclasses they were (``dataclasses.fields``/``replace``/``asdict`` included, validation in
``__post_init__``), and importing them costs neither ``dataclasses`` nor a compile per class,
which a cron run paid on every start (issue 28).
"""

from __future__ import annotations

from ._errors import ConfigError
from ._jitter import exponential, full
from ._validate import check_range
from ._value_class import ValueClass, value_field

__all__ = ["CircuitBreakerConfig", "ResilienceConfig", "RetryConfig"]


class CircuitBreakerConfig(ValueClass):
    """How one breaker partition (an origin and an operation class) trips and recovers.

    failure_threshold
        Consecutive failures that open the circuit (5). Only failures count: 5xx, timeouts,
        refused connections, garbage bodies. Throttles, expired tokens and 4xx never do.
    failure_ratio, window_size, minimum_calls
        The circuit also opens when, over the last ``window_size`` recorded calls (20), at
        least ``minimum_calls`` (10) were recorded and the share of failures is at least
        ``failure_ratio`` (0.5). This catches a flapping service that never fails 5 in a row.
    open_duration, max_open_duration
        The first break lasts ``open_duration`` (5 s); each re-trip from half-open doubles it,
        up to ``max_open_duration`` (60 s); every break gets ±``jitter`` (20 %) so a fleet does
        not probe in step. The doubling resets after ``reset_after`` (600 s) of being closed.
    half_open_max_calls
        Probe calls admitted at once after a break (1); everyone else fails fast. A probe's
        permit is a lease that expires with its call's deadline, so a hung probe cannot wedge
        the breaker.
    success_threshold
        Consecutive probe successes that close the circuit again (1).
    reachability_check
        While an origin refuses connections (its last failure never got through), a call that
        finds its breaker open makes a bare TCP connect (no HTTP request) about this often
        (10 s, each interval drawn from 0.5x-1.5x) and becomes the probe when it connects: one
        client is back a median ~5 s after the origin returns instead of at the end of a break of
        up to a minute. 0 turns the looks off. A fleet that lost the origin together returns
        spread over about this long, and the longer the spread the slower each client's
        return: for 100 clients (``python -m bench.herd``) 10 s peaks at 6.5-8x their steady
        rate with a median return of 4-4.5 s, 20 s at 4.5-6.5x with 7-9 s, 30 s at 4.5x with
        11 s (one seed). Independent jitter leaves a busiest second well above the mean rate,
        so the herd's 3x needs a median return beyond 10 s (docs/BENCHMARKS.md, "herd").
    return_spread
        When one client's breaker held back many threads (``--config``'s scale sets, a threaded
        runner sharing a client) and the origin is back, those threads get turns evenly over
        this many seconds (10 s) instead of all calling in the same second: 100 sessions of one
        client returned as 100 polls within 0.9 s. A thread before its turn is refused with
        ``CircuitOpenError`` (``retry_after``: its turn). A single caller, a caller never
        refused, ``reset()`` and ``Client.recover()`` are not held. 0 turns it off.
    """

    __slots__ = ()

    failure_threshold: int = 5
    failure_ratio: float = 0.5
    window_size: int = 20
    minimum_calls: int = 10
    open_duration: float = 5.0
    max_open_duration: float = 60.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    jitter: float = 0.2
    reset_after: float = 600.0
    reachability_check: float = 10.0
    return_spread: float = 10.0

    def __post_init__(self) -> None:
        check_range("failure_threshold", self.failure_threshold, 1, integer=True)
        check_range("reachability_check", self.reachability_check, 0.0)
        check_range("failure_ratio", self.failure_ratio, 0.0, 1.0)
        check_range("window_size", self.window_size, 1, 10_000, integer=True)
        check_range("minimum_calls", self.minimum_calls, 1, self.window_size, integer=True)
        check_range("open_duration", self.open_duration, 0.0)
        check_range("max_open_duration", self.max_open_duration, self.open_duration)
        check_range("half_open_max_calls", self.half_open_max_calls, 1, 10_000, integer=True)
        check_range("success_threshold", self.success_threshold, 1, 10_000, integer=True)
        check_range("jitter", self.jitter, 0.0, 1.0)
        check_range("reset_after", self.reset_after, 0.0)
        check_range("return_spread", self.return_spread, 0.0)


class RetryConfig(ValueClass):
    """How a single call is repeated inside the resilience adapter.

    max_attempts
        Attempts per call including the first (5). 1 disables retries. Calls that are not
        idempotent (creating a session, acquiring jobs, JIT configs, creating a scale set)
        are repeated only when the request provably never reached the server.
    backoff_base, backoff_max
        Full-jitter exponential backoff: before retry n the wait is uniform in
        [0, min(backoff_max, backoff_base * 2**(n-1))] (0.5 s, 30 s).
    max_hint_wait
        A server hint (``Retry-After``, rate-limit reset, a breaker's open time) is honoured
        even above ``backoff_max``, up to this many seconds (120). A longer one raises at once
        with ``retry_at`` instead of holding the thread for minutes.
    deadline
        Upper bound on one call, all attempts and waits included (120 s; a long poll gets its
        read timeout on top). A hung endpoint cannot hold a call longer.
    budget
        Retry tokens per origin (10). A retry spends one (a timeout two); each first-try
        success earns back 0.2 and one token trickles back every 30 s. When the bucket is
        empty, first attempts still go out but nothing is retried, so many threads cannot
        multiply the load on a failing service. 0 disables the budget.
    """

    __slots__ = ()

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_hint_wait: float = 120.0
    deadline: float = 120.0
    budget: float = 10.0

    def __post_init__(self) -> None:
        check_range("max_attempts", self.max_attempts, 1, 100, integer=True)
        check_range("backoff_base", self.backoff_base, 0.0)
        check_range("backoff_max", self.backoff_max, self.backoff_base)
        check_range("max_hint_wait", self.max_hint_wait, 0.0)
        check_range("deadline", self.deadline, 0.001)
        check_range("budget", self.budget, 0.0)

    def backoff(self, retry_number: int, rand: float) -> float:
        """The wait before retry ``retry_number`` (1-based) given a uniform ``rand`` in [0, 1)."""
        return full(exponential(retry_number, self.backoff_base, self.backoff_max), rand)


class ResilienceConfig(ValueClass):
    """Everything about surviving a failing service, in one object.

    auto_recover_session
        Re-create a message session that the service lost (refresh answered 404, or the
        queue token is refused even after a refresh) instead of raising (True).
    circuit_breaker, retry
        See ``CircuitBreakerConfig`` and ``RetryConfig``.
    health_check_interval
        Kept for compatibility; ``Client.health()`` is no longer cached (it is built from local
        state and sends nothing, so every call reflects the moment it is made).
    max_response_bytes
        The largest body read for an admin or session call (4 MiB, counted after gzip is
        undone); a larger one ends the call with ``ResponseError``, the connection is discarded,
        and the breaker is not charged (a big answer says nothing about the service's health).
    max_message_bytes
        The largest message body a long poll may carry (64 MiB): a message can hold thousands of
        jobs (10,000 jobs are about 6 MiB). A message over it can never be read; the listener
        sets it aside by id (like a poison message) so it cannot wedge the queue.
    """

    __slots__ = ()

    auto_recover_session: bool = True
    circuit_breaker: CircuitBreakerConfig = value_field(default_factory=CircuitBreakerConfig)
    retry: RetryConfig = value_field(default_factory=RetryConfig)
    health_check_interval: float = 30.0
    max_response_bytes: int = 4 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.circuit_breaker, CircuitBreakerConfig):
            raise ConfigError("circuit_breaker must be a CircuitBreakerConfig")
        if not isinstance(self.retry, RetryConfig):
            raise ConfigError("retry must be a RetryConfig")
        check_range("health_check_interval", self.health_check_interval, 0.0)
        check_range("max_response_bytes", self.max_response_bytes, 1024, integer=True)
        check_range("max_message_bytes", self.max_message_bytes, 1024, integer=True)
