"""Every error the package raises, in one tree.

    ScalesetError                      root: catch this to catch everything of ours
    ├── ConfigError                    bad URL, credentials shape or setting (also a ValueError)
    ├── ResponseError                  a body that is malformed, truncated or too large
    ├── StateFileError                 the state file cannot be read or written
    │   └── StateFileLockedError       another process holds the state file (a skip, not a fault)
    ├── RecoveryError                  ``recover()`` could not restore a working state
    ├── APIError                       the service answered with an unexpected status
    │   ├── AuthenticationError        credentials rejected (PAT, App, registration)
    │   │   └── CredentialSourceError  a token provider or App signer kept failing
    │   ├── RateLimitedError  (T)      429 / GitHub rate limit
    │   ├── ServerError  (T)           5xx (but 501): the service failed, not the request
    │   ├── RunnerNotFoundError        AgentNotFoundException
    │   ├── RunnerExistsError          AgentExistsException
    │   ├── JobStillRunningError       JobStillRunningException ("try later", not a failure)
    │   ├── MessageQueueTokenExpiredError   401 from the message queue after one refresh
    │   ├── SessionConflictError       another session owns the scale set (409)
    │   ├── SessionNotFoundError       the session is gone or invalid server side
    │   ├── ScaleSetNotFoundError      RunnerScaleSetNotFoundException
    │   ├── ScaleSetExistsError        RunnerScaleSetExistsException: the name is taken (409)
    │   └── RunnerGroupNotFoundError   no runner group has the name asked for
    └── TransientError                 worth waiting out; ``retry_at`` / ``retry_after`` say how long
        ├── TransportError             the network failed and the call was not repeated
        │   ├── DeadlineExceededError  the caller's time ran out (``client.deadline``, ``duration``)
        │   └── CallCancelledError     the caller cancelled (``Listener.stop``, a closed client)
        ├── CircuitOpenError           the origin's breaker refuses calls
        ├── RetryExhaustedError        every allowed attempt failed; keeps the last error
        ├── RunSkippedError            a bounded run did not start: the service is known down
        ├── TokenUnavailableError      a token provider or App signer has no credential yet
        ├── RateLimitedError           (also an APIError, above)
        └── ServerError                (also an APIError, above)

When to retry, one convention on every ``TransientError``: ``retry_at`` is an absolute wall-clock
time (seconds since the epoch, as ``time.time()``) and ``retry_after`` the same wait in seconds
counted from when the error was raised; both None when nothing is known (back off as you like).

What is transient, and why: time alone can cure it (a network fault, a breaker's break, a rate
limit, a 5xx, attempts that ran out during an outage). ``CallCancelledError`` and
``DeadlineExceededError`` are transient too (they are ``TransportError`` s, and nothing is wrong
with the service), so a loop that catches ``TransientError`` checks its own stop first, as the
listener does. ``ResponseError`` is not: the same malformed or oversized body comes back however
long one waits (the listener sets such a message aside after ``poison_after`` tries). 4xx answers,
``ConfigError`` and ``StateFileError`` need someone to change something.

Outside the tree: ``ScalerInterruptedError`` (a ``RuntimeError``) is what an ``--exec`` scaler
raises when the listener stops it; it is the scaler's error, as any exception a scaler raises,
and leaves its message unacknowledged. The CLI's ``UsageError`` and ``_Stopped`` stay in
``_cli.py``: they never leave ``main()`` (one is an exit code, the other a control-flow signal).

Transport exceptions of requests/urllib3 are kept as ``__cause__``, never as base classes, so
the public API does not depend on them. Every error pickles (threads and process pools pass them
around), and no message contains a token: URLs are redacted and bodies are excerpts with known
secrets removed. ``APIError.recast`` builds an error of another class from one already raised
(a sharper class or message, the same diagnostics) instead of copying its fields by hand.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

__all__ = [
    "APIError",
    "AuthenticationError",
    "CallCancelledError",
    "CircuitOpenError",
    "ConfigError",
    "CredentialSourceError",
    "DeadlineExceededError",
    "JobStillRunningError",
    "MessageQueueTokenExpiredError",
    "RateLimitedError",
    "RecoveryError",
    "ResponseError",
    "RetryExhaustedError",
    "RunSkippedError",
    "RunnerExistsError",
    "RunnerGroupNotFoundError",
    "RunnerNotFoundError",
    "ScaleSetExistsError",
    "ScaleSetNotFoundError",
    "ScalerInterruptedError",
    "ScalesetError",
    "ServerError",
    "SessionConflictError",
    "SessionNotFoundError",
    "StateFileError",
    "StateFileLockedError",
    "TokenUnavailableError",
    "TransientError",
    "TransportError",
]

_E = TypeVar("_E", bound="APIError")


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    obj = cls.__new__(cls)
    BaseException.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class ScalesetError(Exception):
    """Root of every error raised by scaleset_client."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword arguments the default pickling cannot replay; rebuild from
        # the message and the attribute dict instead of calling __init__ again.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class TransientError(ScalesetError):
    """Worth waiting out: time alone may cure it (see the module docstring for what is and is not).

    ``retry_at`` is when a retry may go, as wall-clock seconds since the epoch; ``retry_after``
    the same wait in seconds from when the error was raised. Both are None when the error carries
    no hint (back off as you see fit); a ``CircuitOpenError`` held open by an operator has None too.
    """

    retry_at: float | None = None
    retry_after: float | None = None

    def set_retry(self, *, retry_at: float | None = None, retry_after: float | None = None,
                  now: float | None = None) -> None:
        """Set both halves of the convention from either one (for code that raises or narrows a
        hint); ``now`` is the raiser's wall clock (a fake clock in tests), ``time.time()`` when
        not given. Neither: no hint."""
        if retry_at is None and retry_after is None:
            self.retry_at = self.retry_after = None
            return
        wall = time.time() if now is None else now
        if retry_at is None:
            assert retry_after is not None
            retry_at = wall + retry_after
        elif retry_after is None:
            retry_after = max(0.0, retry_at - wall)
        self.retry_at = retry_at
        self.retry_after = retry_after


class ConfigError(ScalesetError, ValueError):
    """A configuration value is wrong; the message names it and says what is accepted."""


class ResponseError(ScalesetError):
    """The service sent a body that cannot be used (malformed, truncated or too large).

    Not a ``TransientError``: waiting does not change a body (the listener sets a message it
    cannot read aside after ``poison_after`` tries)."""

    def __init__(self, message: str, *, operation: str = "", body_excerpt: str = "",
                 message_id: int | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.body_excerpt = body_excerpt
        self.message_id = message_id  # set when a queue message had an id but could not be read


class StateFileError(ScalesetError):
    """The state file cannot be used: another process holds it, or it cannot be written."""


class StateFileLockedError(StateFileError):
    """Another process holds the state file's lock: another run of the same listener is active.
    A cron wrapper treats this as "skipped", not as a configuration error."""


class TransportError(TransientError):
    """The request failed on the network and was not repeated (or could not be).

    ``delivered`` is False when the request provably never reached the server (refused,
    DNS, connect timeout) and None when that is unknown (read timeout, reset after sending).
    """

    def __init__(
        self, message: str, *, method: str = "", url: str = "", delivered: bool | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.delivered = delivered


class DeadlineExceededError(TransportError):
    """The call ran out of the time its caller gave it (a ``client.deadline`` scope, a listener's
    ``duration``). Never a breaker failure: it says nothing about the service's health."""


class CallCancelledError(TransportError):
    """The call was cancelled by its caller (``Deadline.cancel``, ``Listener.stop``, a signal, or
    ``Client.close``) while waiting or in flight. Never a breaker failure."""


_API_FIELDS = ("status", "reason", "type_name", "activity_id", "github_request_id", "method", "url",
               "body_excerpt", "headers")


class APIError(ScalesetError):
    """The service answered with a status the operation does not accept.

    ``message`` is the service's own text (or "unknown error" for an empty body),
    ``type_name`` the .NET exception name when the Actions service sent one, ``url`` the
    request URL with any secret-bearing query values redacted.
    """

    def __init__(
        self,
        message: str = "unknown error",
        *,
        status: int = 0,
        reason: str = "",
        type_name: str = "",
        activity_id: str = "",
        github_request_id: str = "",
        method: str = "",
        url: str = "",
        body_excerpt: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.reason = reason
        self.type_name = type_name
        self.activity_id = activity_id
        self.github_request_id = github_request_id
        self.method = method
        self.url = url
        self.body_excerpt = body_excerpt
        self.headers = dict(headers or {})
        super().__init__(self._render())

    def _render(self) -> str:
        # Status 0: no answer was read (a wait refused before sending), so no "failed(status=...)".
        status_line = f"{self.status} {self.reason}".strip()
        parts = [f'status="{status_line}"'] if self.status else []
        if self.activity_id:
            parts.append(f'activity_id="{self.activity_id}"')
        if self.github_request_id:
            parts.append(f'github_request_id="{self.github_request_id}"')
        head = f"request {self.method} {self.url}" + (f" failed({', '.join(parts)})" if parts else "")
        detail = f"{self.type_name}: {self.message}" if self.type_name else self.message
        return f"{head}: {detail}"

    def recast(self, cls: type[_E], message: str | None = None) -> _E:
        """This error as ``cls`` (a sharper class, or a message that says what to do), with the
        same diagnostics: status, reason, type name, ids, method, URL, body excerpt and headers.
        Raise it ``from`` this one. The one way an error is rebuilt from another."""
        fields = {name: getattr(self, name) for name in _API_FIELDS}
        out = cls(self.message if message is None else message, **fields)
        if isinstance(self, TransientError) and isinstance(out, TransientError):
            out.set_retry(retry_at=self.retry_at, retry_after=self.retry_after)
        return out


class AuthenticationError(APIError):
    """GitHub rejected the credentials (PAT, App key, installation or registration token).

    Check that the token is valid and has the scope the config URL needs (org: admin:org or
    the App permission organization_self_hosted_runners: write; repo: repo; enterprise:
    manage_runners:enterprise).
    """


class RateLimitedError(APIError, TransientError):
    """GitHub or the Actions service asked us to wait longer than we are allowed to sleep.

    ``retry_at`` is the wall-clock time (seconds since the epoch) after which a request may go;
    ``retry_after`` the same as seconds from when it was raised.
    """

    def __init__(self, message: str = "rate limited", *, retry_at: float | None = None,
                 retry_after: float | None = None, **kw: Any) -> None:
        self.set_retry(retry_at=retry_at, retry_after=retry_after)
        super().__init__(message, **kw)


class ServerError(APIError, TransientError):
    """The service failed (a 5xx other than 501) and the call was not repeated (not idempotent,
    or no retry left). ``retry_at`` is set when the adapter read a 503's ``Retry-After`` while
    deciding on a retry; otherwise None (back off as you see fit)."""


class RunnerNotFoundError(APIError):
    """The runner does not exist (AgentNotFoundException); removing it is already done."""


class RunnerExistsError(APIError):
    """A runner with that name exists already (AgentExistsException)."""


class JobStillRunningError(APIError):
    """The runner is running a job (JobStillRunningException): try again later."""


class MessageQueueTokenExpiredError(APIError):
    """The message queue rejected the session token even after a session refresh."""


class SessionConflictError(APIError):
    """The scale set already has an active session, held by another listener or a stale one.

    A session left by a crashed process expires after about 90 seconds; a live listener keeps
    it. Scale set names must be unique per runner group and scope.
    """


class SessionNotFoundError(APIError):
    """The message session is gone or invalid on the server (evicted or expired)."""


class ScaleSetNotFoundError(APIError):
    """The runner scale set does not exist (deleted, removed for inactivity, or a wrong id)."""


class CircuitOpenError(TransientError):
    """The circuit breaker for ``origin`` is open: the call was refused without being sent.

    ``retry_after`` is the number of seconds until a probe may go and ``retry_at`` the same
    instant on the wall clock (both None: held open by an operator until reset).
    """

    def __init__(
        self, message: str, *, origin: str = "", operation_class: str = "", retry_after: float | None = None,
        retry_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.origin = origin
        self.operation_class = operation_class
        self.set_retry(retry_at=retry_at, retry_after=retry_after)


class RetryExhaustedError(TransientError):
    """Every allowed attempt failed. ``last_error`` is what the last attempt produced.

    ``status`` is the last HTTP status (0 when the last attempt failed on the network), so a
    503 outage can be told from a 500 bug; ``last_error`` keeps the body excerpt and headers.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        status: int = 0,
        last_error: ScalesetError | None = None,
        retry_at: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.last_error = last_error
        self.set_retry(retry_at=retry_at, retry_after=retry_after)


class RunSkippedError(TransientError):
    """A bounded run did not start: the service is known down past the run's end (``retry_at``;
    None: held open by an operator). ``scaleset-listen`` exits with "skipped", not a failure."""

    def __init__(self, message: str, *, retry_at: float | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.set_retry(retry_at=retry_at, retry_after=retry_after)


class RecoveryError(ScalesetError):
    """``recover()`` could not bring the client back; the message says why."""


class ScaleSetExistsError(APIError):
    """A scale set with this name already exists in the runner group (409,
    RunnerScaleSetExistsException): look it up with ``get_runner_scale_set`` instead."""


class RunnerGroupNotFoundError(APIError):
    """No runner group has the name asked for. The service answers such a lookup with an empty
    list (200), so the message says what was looked up rather than quoting a status."""

    def _render(self) -> str:
        return f"{self.message} ({self.method} {self.url})" if self.url else self.message


class TokenUnavailableError(TransientError):
    """A token provider or App signer has no credential now but expects to have one (it raised
    ``TransientError``): worth waiting out. ``retry_at`` / ``retry_after`` are the source's own
    hint when it gave one."""


class CredentialSourceError(AuthenticationError):
    """A token provider or App signer kept failing (``SOURCE_ATTEMPTS`` calls) or returned
    something that is not a credential: no request could be signed. The cause is chained."""

    def _render(self) -> str:
        return self.message  # no request was made: no method, URL or status to show


class ScalerInterruptedError(RuntimeError):
    """An ``--exec`` command was terminated because the listener is stopping."""
