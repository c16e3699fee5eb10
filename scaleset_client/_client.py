"""``Client``: the admin API of the Actions service, tokens, and the resilience around them.

One Client per process is normal and it is thread-safe. It composes the parts and sends
nothing itself: its call seam (``_calls.Calls``) owns the one ``requests.Session``, whose single
``ResilienceAdapter`` is mounted at construction and never changed; ``ActionsCalls`` signs the
Actions-service calls of the admin API and of every message session with the admin token that
the registration chain (``Registration``, sending through the same seam) fetches. Everything
that varies per request (tokens, URLs, policy) travels on the prepared request, never on the
shared Session. ``verify`` is passed on every request so ``REQUESTS_CA_BUNDLE`` cannot override
an explicit CA bundle, cookies are refused, and ``.netrc`` is never consulted.

A client certificate (``client_cert``) is loaded once, at construction, into the TLS context
every origin's pool uses (``_tls.client_cert_context``) and into the one for the handshake with
an HTTPS proxy (``_tls.proxy_cert_context``): GitHub's API, the Actions service and the broker,
directly or through a proxy's CONNECT tunnel, and the proxy itself, all see the same certificate,
next to the CA (``verify``) and partial-chain trust they always had.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._adapter import ResilienceAdapter
from ._admin_api import AdminAPI
from ._auth import AdminCredentials, GitHubAppAuth, GitHubCredentials, SingleFlight
from ._breaker import BreakerRegistry
from ._calls import ActionsCalls, Calls
from ._clock import Clock, SystemClock
from ._config import ResilienceConfig
from ._connections import Interrupt
from ._deadline import Deadline, current, detached
from ._errors import RecoveryError, ScalesetError
from ._http import origin_of
from ._models import SystemInfo
from ._registration import Registration
from ._resilience_store import section_of
from ._session import MessageSession
from ._urls import GitHubConfig, parse_config_url
from ._validate import (
    check_instance,
    check_optional,
    check_positive_int,
    check_positive_number,
    resolve_verify,
    timeout_pair,
)

if TYPE_CHECKING:  # loaded by health() and recover(), and by a client certificate: a run that needs none skips them
    from ._health import HealthReport, RecoveryReport
    from ._tls import ClientCertInput

__all__ = ["Client"]

log = logging.getLogger(__name__)


class _ClientCertAdapter(ResilienceAdapter):
    """A ``ResilienceAdapter`` whose every pool uses one given TLS context (a client certificate's).

    The adapter builds a fresh partial-chain context for its direct pool and each proxy pool
    (when their first HTTPS connection opens); this one hands them the context that holds the
    certificate instead, and uses it for an HTTPS proxy's own handshake too (a TLS-terminating
    proxy may be what asks for it)."""

    def __init__(self, *, tls_context: ssl.SSLContext, proxy_tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.tls_context = tls_context  # read by init_poolmanager, which the base __init__ calls
        self.proxy_tls_context = proxy_tls_context  # also holds the trust: urllib3 loads none into it
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """The direct pools, presenting the client certificate."""
        pool_kwargs.setdefault("ssl_context", self.tls_context)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The pools through ``proxy``, presenting the client certificate to the origin (inside the
        tunnel) and, for an ``https://`` proxy, to the proxy."""
        proxy_kwargs.setdefault("ssl_context", self.tls_context)
        if proxy.lower().startswith("https://"):
            proxy_kwargs.setdefault("proxy_ssl_context", self.proxy_tls_context)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class Client(AdminAPI):
    """A thread-safe client for the runner scale set APIs.

    ``config_url`` names the organization, repository or enterprise (``https://github.com/org``);
    pass exactly one of ``token`` (a PAT), ``token_provider`` or ``app`` (``GitHubAppAuth``).
    Nothing is sent until the first call.

    ``token_provider`` is a callable returning the current PAT or installation token, for tokens
    rotated outside the process (a mounted secret, a vault agent). It is called whenever the
    admin token is renewed (single-flight: one call however many threads need it) and again
    when GitHub answers 401 to its token. To say "no token now, try later" it raises
    ``TransientError`` (the call fails with ``TokenUnavailableError``, which a ``Listener``
    waits out); any other exception is retried twice (0.25 s, then 0.5 s later) and then ends
    the call with ``CredentialSourceError``, an ``AuthenticationError``. Keep it fast: it runs
    inside a call's time.

    ``client_cert`` is a TLS client certificate for servers or proxies that demand one
    (mutual TLS): a path to a PEM file holding certificate and key, a ``(cert, key)`` or
    ``(cert, key, password)`` tuple of paths or PEM, or a ``ClientCertificate``. It is loaded
    at construction (``ConfigError`` when it cannot be) and presented to every origin, direct
    or through a proxy, with ``verify`` deciding the servers' trust as before.

    ``timeout`` is the (connect, read) timeout of ordinary calls;
    ``long_poll_timeout`` the read timeout of the message long poll (the service holds it ~50 s).
    ``pool_maxsize`` is how many idle connections are kept per origin (256): keep it above the
    number of listeners sharing the client, or long polls that end together discard connections
    and the next polls open new ones. An unused slot costs nothing.

    ``state_file`` (a path) makes breaker states, rate-limit gates and retry budgets survive the
    process, so a cron script's next run does not hammer a service this run found down. Read at
    construction (missing: fresh start; unreadable: a warning and a fresh start; bound to another
    configuration URL: a warning, and the file is never read or written); written by a
    background thread when a breaker changes state or a rate limit arms a gate (at most once a
    second, the first change at once) and on ``close()``. Writes are atomic. In one process,
    every client and listener on a file hand their parts to the file's one owner, which writes
    them (a listener on the same file saves this client's state with its cursor); another
    process's running listener keeps the file to itself. Only the ``resilience`` key of the file
    is this client's; a listener's cursor in the same file is kept as it is. See
    ``scaleset_client._state_owner`` and ``scaleset_client._resilience_store`` for the design.
    """

    def __init__(
        self,
        config_url: str,
        *,
        token: str | None = None,
        app: GitHubAppAuth | None = None,
        system_info: SystemInfo | None = None,
        resilience: ResilienceConfig | None = None,
        timeout: float | tuple[float, float] = (5.05, 30.0),
        long_poll_timeout: float = 75.0,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
        clock: Clock | None = None,
        pool_maxsize: int = 256,
        state_file: str | os.PathLike[str] | None = None,
        token_provider: Callable[[], str] | None = None,
        client_cert: ClientCertInput | None = None,
    ) -> None:
        self._github: GitHubConfig = parse_config_url(config_url)
        self._credentials = GitHubCredentials.from_arguments(token, app, token_provider)
        certificate = None
        if client_cert is not None:  # _tls loads only for a client certificate
            from ._tls import ClientCertificate

            certificate = ClientCertificate.of(client_cert)
        self._system_info = check_optional("system_info", system_info, SystemInfo) or SystemInfo()
        self._resilience = check_optional("resilience", resilience, ResilienceConfig) or ResilienceConfig()
        self.long_poll_timeout = check_positive_number("long_poll_timeout", long_poll_timeout)
        pool_maxsize = check_positive_int("pool_maxsize", pool_maxsize)
        self._timeout = timeout_pair(timeout)
        verify = resolve_verify(verify)
        tls_contexts = None
        if certificate is not None:
            from ._tls import client_cert_context, proxy_cert_context

            tls_contexts = (client_cert_context(certificate), proxy_cert_context(certificate, verify))
        self._log = logger or log
        self._clock: Clock = clock or SystemClock()
        self._info_lock = threading.Lock()
        self._closing = threading.Event()
        self._breakers = BreakerRegistry(self._resilience.circuit_breaker, self._clock)
        adapter_options: dict[str, Any] = dict(
            config=self._resilience, clock=self._clock, breakers=self._breakers, timeout=self._timeout,
            pool_maxsize=pool_maxsize, closing=self._closing, server_time=lambda: self.server_time())
        self._adapter = ResilienceAdapter(**adapter_options) if tls_contexts is None else \
            _ClientCertAdapter(tls_context=tls_contexts[0], proxy_tls_context=tls_contexts[1], **adapter_options)
        self._client_cert = tls_contexts is not None
        # The call seam first; the registration chain sends through it to fetch the admin token
        # that the Actions-service calls are then signed with.
        self._calls = Calls(adapter=self._adapter, timeout=self._timeout, verify=verify,
                            proxies=proxies, closing=self._closing, user_agent=self._system_info.user_agent(),
                            log=self._log)
        self._registration = Registration(self._calls, self._github, self._credentials, self._clock)
        self._admin = AdminCredentials(self._registration.fetch_admin_token, self._registration.server_time)
        self._service = ActionsCalls(self._calls, self._admin)
        self._sessions: list[MessageSession] = []
        self._sessions_lock = threading.Lock()
        self._recovery: SingleFlight[RecoveryReport] = SingleFlight()
        self.recoveries = 0
        self._pauses: set[threading.Event] = set()  # callers in pause(), woken by recover() and close()
        self._pauses_lock = threading.Lock()
        self._state_section = section_of(self, self._log)
        # Always told of changes: a client without a file of its own still has its section written
        # to a running listener's file (``ResilienceSection.join``); with no owner, nothing happens.
        self._breakers.add_listener(self._state_section.changed)
        self._adapter.gate.add_listener(self._state_section.changed)
        if state_file is not None:
            self._state_section.open(state_file)

    # -- public state ------------------------------------------------------------------------
    @property
    def config(self) -> GitHubConfig:
        """The parsed configuration URL (scope, hosts, API base)."""
        return self._github

    @property
    def system_info(self) -> SystemInfo:
        """What the client reports about itself in its User-Agent."""
        with self._info_lock:
            return self._system_info

    def set_system_info(self, info: SystemInfo) -> None:
        """Replace the User-Agent information (thread-safe; applies to the next request)."""
        check_instance("info", info, SystemInfo)
        with self._info_lock:
            self._system_info = info
            self._calls.user_agent = info.user_agent()

    @property
    def circuit_breakers(self) -> BreakerRegistry:
        """Read breaker states, or ``force_open`` / ``reset`` / ``disable`` them per origin."""
        return self._breakers

    @property
    def clock(self) -> Clock:
        """The clock every wait and timer of this client uses (a FakeClock in tests)."""
        return self._clock

    @property
    def resilience(self) -> ResilienceConfig:
        """The resilience settings this client was built with."""
        return self._resilience

    @property
    def admin_token_refreshes(self) -> int:
        """How many admin-token renewals went out (single-flight: one per expiry)."""
        return self._admin.refreshes

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called; every call then fails fast."""
        return self._closing.is_set()

    @property
    def clock_skew(self) -> float:
        """GitHub's clock minus this machine's, in seconds (0 until a difference over 30 s is seen)."""
        return self._registration.skew

    def server_time(self) -> float:
        """Wall time as GitHub sees it: used for JWT claims and token expiry checks."""
        return self._registration.server_time()

    @property
    def attempts_sent(self) -> int:
        """HTTP attempts this client sent, retries included."""
        return self._adapter.attempts_sent

    @property
    def retries_sent(self) -> int:
        """HTTP attempts that repeated a failed or throttled one (a subset of ``attempts_sent``)."""
        return self._adapter.retries_sent

    # -- scopes ------------------------------------------------------------------------------
    def deadline(self, seconds: float | None = None, *, cancel_on: threading.Event | None = None) -> Deadline:
        """A scope bounding every call this thread makes inside ``with``: by ``seconds`` (None: no
        limit of its own), and by ``cancel()`` or the ``cancel_on`` event from any thread.

        ``with client.deadline(10): ...`` ends every wait and socket inside by then; calls raise
        ``DeadlineExceededError`` (time ran out) or ``CallCancelledError`` (cancelled). Scopes nest
        and only ever shorten the time an outer scope allows. See ``scaleset_client._deadline``."""
        return Deadline(seconds, cancel_on=cancel_on, clock=self._clock)

    # -- sessions ----------------------------------------------------------------------------
    def message_session(self, scale_set_id: int, owner: str | None = None, *,
                        stale_session_id: str | None = None) -> MessageSession:
        """Create a message session for the scale set (raises ``SessionConflictError`` when taken).

        ``stale_session_id``: a session this application owned before (from its state file); on a
        conflict it is deleted and the session created again.
        """
        session = MessageSession(self, scale_set_id, owner, calls=self._service, stale_session_id=stale_session_id,
                                 on_close=self._forget_session)
        with self._sessions_lock:
            self._sessions.append(session)
        return session

    def _forget_session(self, session: MessageSession) -> None:
        with self._sessions_lock:
            if session in self._sessions:
                self._sessions.remove(session)

    def _open_sessions(self) -> list[MessageSession]:
        with self._sessions_lock:
            return list(self._sessions)

    # -- health and recovery -----------------------------------------------------------------
    def health(self) -> HealthReport:
        """Per-component health from local state at the moment of the call (sends nothing, so it
        is never cached and never stale: right after a breaker opens, it says so)."""
        from ._health import build_health_report

        return build_health_report(wall=self._clock.wall(), breakers=self._breakers.all(),
                                   github_api_base=self._github.api_base, admin=self._admin.peek(),
                                   sessions=self._open_sessions())

    def is_healthy(self) -> bool:
        """True when no component is down (an open breaker, no admin token after a failure)."""
        return self.health().healthy

    def recover(self, force: bool = False) -> RecoveryReport:
        """Bring the client back now instead of waiting out breaks and backoffs.

        Interrupts every call in flight (each retries at once on a fresh connection, so a call
        stuck on a black-holed socket gains its retry now), drops pooled connections, puts open
        breakers to a probe, wakes waiting calls, renews the admin token and re-establishes every
        open message session. Returns a ``RecoveryReport`` saying what it did; raises
        ``RecoveryError`` naming the step that failed. Concurrent callers join the recovery in
        flight and share its outcome; no lock is held across I/O. Runs inside the caller's
        ``deadline`` scope if any. ``force`` is accepted for compatibility and has no effect:
        every call recovers.
        """
        return self._recovery.do(self._recover_now)

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` on the client's clock, or less: ``recover()`` or ``close()`` from any
        thread ends the wait at once, and so does the end or cancel of the caller's ``deadline``
        scope. True when it was ended early (by those, not by the scope's time running out).

        For a loop of your own that waits out a ``CircuitOpenError`` (``retry_after``) or a backoff:
        with ``client.pause`` an operator's ``recover()`` takes effect now instead of after the
        wait (``Listener`` waits this way by itself)."""
        woken = threading.Event()
        scope = current()  # the caller's deadline scope, if any: its end and its cancel end the wait too
        handles = scope.subscribe(lambda reason: woken.set()) if scope is not None else []
        if scope is not None:
            seconds = min(seconds, scope.remaining())
        with self._pauses_lock:
            if self._closing.is_set():
                Deadline.unsubscribe(handles)
                return True
            self._pauses.add(woken)
        try:
            return self._clock.sleep(max(0.0, seconds), woken) or woken.is_set()
        finally:
            Deadline.unsubscribe(handles)
            with self._pauses_lock:
                self._pauses.discard(woken)

    def _wake_pauses(self) -> None:
        with self._pauses_lock:
            for woken in self._pauses:
                woken.set()

    def _recover_now(self) -> RecoveryReport:
        from ._health import RecoveryReport

        self.recoveries += 1
        done: list[str] = []
        interrupted = self._adapter.interrupt_in_flight(Interrupt.RECOVER)
        if interrupted:
            done.append(f"interrupted {interrupted} call(s) in flight")
        self._adapter.close()
        done.append("dropped pooled connections")
        probing = [f"{b.origin} {b.operation_class}" for b in self._breakers.all()
                   if b.state.value in ("open", "half_open")]
        self._breakers.probe_now()
        self._adapter.wake_all()
        self._wake_pauses()
        if probing:
            done.append("open circuits set to probe: " + ", ".join(probing))
        skipped: list[str] = []
        step = "renewing the admin token"
        try:
            current = self._admin.peek()
            self._admin.renew(current.generation if current else 0)
            done.append("renewed the admin token")
            sessions = self._open_sessions()
            if not sessions:
                skipped.append("no message session is open")
            for session in sessions:
                step = f"re-establishing the session of scale set {session.scale_set_id}"
                session.recover()
                done.append(f"re-established the session of scale set {session.scale_set_id}")
        except ScalesetError as exc:
            so_far = "; ".join(done)
            raise RecoveryError(f"recover() failed while {step}: {type(exc).__name__}: {exc} (done: {so_far})"
                                ) from exc
        return RecoveryReport(tuple(done), tuple(skipped), interrupted)

    def check_reachable(self, origin: str, timeout: float = 2.0, *, when_due: bool = False) -> bool:
        """Tell, without an HTTP request, whether an origin that was unreachable is back.

        Only for an origin whose last failure never got through (refused, DNS, connect timeout)
        and that is reached without a proxy: a TCP connect (closed at once) is made, and when it
        succeeds the origin's open breakers are put to a probe, so the next call goes now instead
        of at the end of a break of up to a minute. Returns True when that happened. Calls do
        this themselves while the breaker is open, on a jittered schedule (every
        ``reachability_check`` seconds, 10 by default, +-50 %, so a fleet does not return in one
        second), and a ``CircuitOpenError`` for such an origin
        says when the next look is due; ``when_due=True`` keeps to that schedule (a listener
        backing off does), otherwise the look goes now.
        """
        if self._calls.proxies_for(origin):
            return False
        return self._adapter.look(origin, timeout, force=not when_due)

    def export_resilience_state(self) -> dict[str, Any]:
        """Breakers, rate-limit gates and retry budgets as plain JSON-able data (no secrets).

        A cron job saves this and hands it to the next process's ``import_resilience_state``, so a
        service found down by the last run is not hammered by the next.
        """
        return {
            "version": 1,
            "saved_wall": self._clock.wall(),
            "breakers": self._breakers.snapshot(),
            "gates": self._adapter.gate.snapshot(),
            "budget": self._adapter.budget.snapshot(),
        }

    def import_resilience_state(self, state: Mapping[str, Any]) -> None:
        """Load ``export_resilience_state`` output; unknown, stale (> 24 h) or broken parts are ignored."""
        if not isinstance(state, Mapping) or state.get("version") != 1:
            return
        try:
            age = self._clock.wall() - float(state.get("saved_wall", 0.0))
        except (TypeError, ValueError):
            return
        if not 0 <= age < 86_400:
            return
        breakers = state.get("breakers")
        if isinstance(breakers, list):
            self._breakers.restore([b for b in breakers if isinstance(b, dict)])
        gates = state.get("gates")
        if isinstance(gates, dict):
            self._adapter.gate.restore(gates, cap=self._resilience.retry.max_hint_wait * 30)
        budget = state.get("budget")
        if isinstance(budget, dict):
            self._adapter.budget.restore(budget)

    def origin(self, url: str) -> str:
        """The origin (scheme, host, port) of ``url``: the key of its breakers."""
        return origin_of(url)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Delete open message sessions (within 3 s), abort calls in flight (they raise
        ``CallCancelledError``) and close connections. Idempotent."""
        if self._closing.is_set():
            return
        # Deleting sessions is bounded (3 s) and runs even inside a cancelled scope: a stop
        # must still let the service know this listener is gone.
        with detached(3.0, clock=self._clock, reason="close"):
            for session in self._open_sessions():
                try:
                    session.close()
                except Exception:  # best effort: closing must not raise
                    self._log.debug("closing a message session failed", exc_info=True)
        self._closing.set()
        self._wake_pauses()
        self._adapter.interrupt_in_flight(Interrupt.CLOSE)  # each call's socket is shut; idle ones close below
        self._calls.close()
        self._state_section.close()  # the final resilience state, after the last call ended

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        credentials = self._credentials
        auth = "app" if credentials.app is not None else \
            "token_provider" if credentials.token_provider is not None else "token"
        cert = ", client_cert=yes" if self._client_cert else ""
        return f"Client({self._github.config_url!r}, auth={auth}{cert})"

