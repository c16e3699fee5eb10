"""``Client``: the admin API of the Actions service, tokens, and the resilience around them.

One Client per process is normal and it is thread-safe: it owns one ``requests.Session`` whose
single ``ResilienceAdapter`` is mounted at construction and never changed. Everything that
varies per request (tokens, URLs, policy) travels on the prepared request, never on the shared
Session. ``verify`` is passed on every request so ``REQUESTS_CA_BUNDLE`` cannot override an
explicit CA bundle, cookies are refused, and ``.netrc`` is never consulted.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from ._http import error_from_response, origin_of
from ._policy import CallPolicy, Recovery, is_idempotent, policy_of, with_policy
from ._resilience_store import ResilienceStore
from ._validate import resolve_verify, timeout_pair
from .adapter import ResilienceAdapter
from .admin_api import AdminAPI
from .auth import AdminCredentials, GitHubAppAuth, SingleFlight
from .breaker import BreakerRegistry
from .clock import Clock, SystemClock
from .config import ResilienceConfig
from .deadline import Deadline, detached
from .errors import (
    APIError,
    CallCancelledError,
    ConfigError,
    RecoveryError,
    ScalesetError,
)
from .models import (
    SystemInfo,
)
from .registration import Registration
from .secrets import Secret, redact_url
from .urls import GitHubConfig, join_url, parse_config_url

if TYPE_CHECKING:
    from .health import HealthReport, RecoveryReport
    from .session import MessageSession

__all__ = ["Client"]

log = logging.getLogger(__name__)

API_VERSION = "6.0-preview"
_NO_BODY = object()


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep the shared Session's cookie jar empty: no state leaks between threads or calls."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class _NoNetrc(requests.auth.AuthBase):
    """Setting any Session.auth stops requests from reading ``.netrc`` over our headers."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class Client(AdminAPI):
    """A thread-safe client for the runner scale set APIs.

    ``config_url`` names the organization, repository or enterprise (``https://github.com/org``);
    pass exactly one of ``token`` (a PAT) or ``app`` (``GitHubAppAuth``). Nothing is sent until
    the first call. ``timeout`` is the (connect, read) timeout of ordinary calls;
    ``long_poll_timeout`` the read timeout of the message long poll (the service holds it ~50 s).
    ``pool_maxsize`` is how many idle connections are kept per origin (256): keep it above the
    number of listeners sharing the client, or long polls that end together discard connections
    and the next polls open new ones. An unused slot costs nothing.

    ``state_file`` (a path) makes breaker states, rate-limit gates and retry budgets survive the
    process, so a cron script's next run does not hammer a service this run found down. Read at
    construction (missing: fresh start; unreadable: a warning and a fresh start; bound to another
    configuration URL: a warning, and the file is never read or written); written by a
    background thread when a breaker changes state or a rate limit arms a gate (at most once a
    second, the first change at once) and on ``close()``. Writes are atomic and take the file's
    lock only for the write, waiting at most 0.1 s for it: while a ``Listener`` holds the same
    file, it writes the resilience state and this client leaves the file to it. Only the ``resilience``
    key of the file is this client's; a listener's cursor in the same file is kept as it is.
    See ``scaleset_client._resilience_store`` for the design.
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
    ) -> None:
        self._github: GitHubConfig = parse_config_url(config_url)
        if (token is None) == (app is None):
            raise ConfigError("pass exactly one of token= (a personal access token) or app= (GitHubAppAuth)")
        self._pat: Secret | None = None
        self._app = app
        self._app_key: Any = None
        if token is not None:
            if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n "):
                raise ConfigError("token must be a non-empty personal access token string without whitespace")
            self._pat = Secret(token.strip())
        else:
            if not isinstance(app, GitHubAppAuth):
                raise ConfigError(f"app must be a GitHubAppAuth, not {type(app).__name__}")
            self._app_key = app.load_key()
        if system_info is not None and not isinstance(system_info, SystemInfo):
            raise ConfigError("system_info must be a SystemInfo")
        if resilience is not None and not isinstance(resilience, ResilienceConfig):
            raise ConfigError("resilience must be a ResilienceConfig")
        if isinstance(long_poll_timeout, bool) or not isinstance(long_poll_timeout, (int, float)) \
                or long_poll_timeout <= 0:
            raise ConfigError(f"long_poll_timeout must be a positive number, got {long_poll_timeout!r}")
        if isinstance(pool_maxsize, bool) or not isinstance(pool_maxsize, int) or pool_maxsize < 1:
            raise ConfigError(f"pool_maxsize must be a positive integer, got {pool_maxsize!r}")
        self._log = logger or log
        self._clock: Clock = clock or SystemClock()
        self._resilience = resilience or ResilienceConfig()
        self._timeout = timeout_pair(timeout)
        self.long_poll_timeout = float(long_poll_timeout)
        self._verify = resolve_verify(verify)
        self._system_info = system_info or SystemInfo()
        self._user_agent = self._system_info.user_agent()
        self._info_lock = threading.Lock()
        self._closing = threading.Event()
        self._breakers = BreakerRegistry(self._resilience.circuit_breaker, self._clock)
        self._adapter = ResilienceAdapter(config=self._resilience, clock=self._clock, breakers=self._breakers,
                                          timeout=self._timeout, pool_maxsize=pool_maxsize, closing=self._closing,
                                          server_time=lambda: self.server_time())
        session = requests.Session()
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        session.cookies.set_policy(_RefuseCookies())
        session.auth = _NoNetrc()
        if proxies is not None:
            session.proxies.update(dict(proxies))
            for proxy_url in proxies.values():  # a proxy password is a secret like any token
                password = urlsplit(proxy_url).password if isinstance(proxy_url, str) else None
                if password:
                    Secret(password)
        self._session = session
        self._pid = os.getpid()
        self._proxy_cache: dict[str, dict[str, str]] = {}
        self._registration = Registration(self)
        self._admin = AdminCredentials(self._registration.fetch_admin_token, self._registration.server_time)
        self._sessions: list[MessageSession] = []
        self._sessions_lock = threading.Lock()
        self._recovery: SingleFlight[RecoveryReport] = SingleFlight()
        self.recoveries = 0
        self._store = ResilienceStore(state_file, self._github.config_url, self.export_resilience_state,
                                      self.import_resilience_state, self._log)
        if self._store.path is not None:
            self._breakers.add_listener(self._store.changed)
            self._adapter.gate.add_listener(self._store.changed)
            self._store.load()

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
        if not isinstance(info, SystemInfo):
            raise ConfigError("set_system_info takes a SystemInfo")
        with self._info_lock:
            self._system_info = info
            self._user_agent = info.user_agent()

    @property
    def resilience_store(self) -> ResilienceStore:
        """Where this client's resilience state is saved (``path`` None without a state file);
        a ``Listener`` saves and restores the resilience part of its own state file through it."""
        return self._store

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

    # -- plumbing ----------------------------------------------------------------------------
    def _prepare(self, method: str, url: str, *, authorization: str | None, body: Any = _NO_BODY,
                 content_type: str | None = "application/json", extra: Mapping[str, str] | None = None,
                 user_agent: str | None = None, trailing_newline: bool = False) -> requests.PreparedRequest:
        # Built without the Session's defaults, so ask for compression here: a long poll can carry
        # thousands of jobs, and urllib3 would otherwise send "Accept-Encoding: identity".
        headers = {"User-Agent": user_agent or self._user_agent, "Accept-Encoding": "gzip"}
        if content_type:
            headers["Content-Type"] = content_type
        if authorization:
            headers["Authorization"] = authorization
        if extra:
            headers.update(extra)
        data: bytes | None = None
        if body is not _NO_BODY:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            if trailing_newline:
                data += b"\n"
        if not url.isascii() or not url.startswith(("https://", "http://")) or "/." in url:
            # Not a plain URL like those we build: requests' full preparation (IDNA, dot segments).
            return requests.Request(method, url, headers=headers, data=data).prepare()
        # The same request requests would prepare, at a twentieth of the cost (its per-call URL
        # parsing, hook and cookie set-up dominate a loopback call): the URL is requoted, the
        # body framed; header values are still checked by http.client before they are sent.
        if data is not None:
            headers["Content-Length"] = str(len(data))
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = requote_uri(url)
        prepared.headers = CaseInsensitiveDict(headers)
        prepared.body = data
        prepared._cookies = RequestsCookieJar()  # read by requests when a redirect is seen
        return prepared

    def deadline(self, seconds: float | None = None, *, cancel_on: threading.Event | None = None) -> Deadline:
        """A scope bounding every call this thread makes inside ``with``: by ``seconds`` (None: no
        limit of its own), and by ``cancel()`` or the ``cancel_on`` event from any thread.

        ``with client.deadline(10): ...`` ends every wait and socket inside by then; calls raise
        ``DeadlineExceededError`` (time ran out) or ``CallCancelledError`` (cancelled). Scopes nest
        and only ever shorten the time an outer scope allows. See ``scaleset_client.deadline``."""
        return Deadline(seconds, cancel_on=cancel_on, clock=self._clock)

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        if self._closing.is_set():
            raise CallCancelledError("the client is closed", method=prepared.method or "",
                                     url=redact_url(prepared.url or ""), delivered=False)
        if os.getpid() != self._pid:
            # Forked (cron wrappers, multiprocessing): never share the parent's sockets.
            self._pid = os.getpid()
            self._adapter.close()
        return self._session.send(prepared, timeout=self._timeout, verify=self._verify, allow_redirects=False,
                                  proxies=self._proxies_for(prepared.url or ""))

    def _proxies_for(self, url: str) -> dict[str, str]:
        """Proxies for ``url``'s origin: ``proxies=`` first, then HTTPS_PROXY/NO_PROXY, read once per
        origin (requests would re-read the environment on every call, about a third of its cost)."""
        origin = origin_of(url)
        found = self._proxy_cache.get(origin)
        if found is None:
            found = requests.utils.resolve_proxies(prepared_for(url), self._session.proxies, True)
            self._proxy_cache[origin] = found
        return found

    @staticmethod
    def _expect(response: requests.Response, expected: tuple[int, ...]) -> requests.Response:
        if 300 <= response.status_code < 400 and response.status_code not in expected:
            # Never followed: a redirect would carry credentials to wherever it points.
            location = redact_url(response.headers.get("Location", "") or "(no Location)")
            raise APIError(f"the service answered with a redirect to {location}; redirects are not followed so "
                           "credentials never leave their origin (check the configuration URL)",
                           status=response.status_code, reason=response.reason or "",
                           method=response.request.method or "", url=redact_url(response.request.url or ""))
        if response.status_code not in expected:
            policy = policy_of(response.request)
            raise error_from_response(response, queue_operation=policy.queue_operation,
                                      github_api=policy.github_api)
        return response

    def _actions_call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: Any = _NO_BODY,
        expected: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation_class: str = "admin",
        bearer: Callable[[], str] | None = None,
        renew: Callable[[], object] | None = None,
        queue_operation: bool = False,
        user_agent: str | None = None,
    ) -> requests.Response:
        """One Actions-service call (§3.1): tenant URL, api-version, admin bearer, exact status."""
        may_repeat = is_idempotent(method) if idempotent is None else idempotent

        def build() -> requests.PreparedRequest:
            admin = self._admin.get()
            url = join_url(admin.service_url, path, {**(params or {}), "api-version": API_VERSION})
            token = bearer() if bearer is not None else admin.token.reveal()
            # 401: renew what this call's token depends on (once), then sign the request again.
            recovery = Recovery("session token", renew, build) if renew is not None else \
                Recovery("admin token", lambda: self._admin.renew(admin.generation), build)
            policy = CallPolicy(operation=operation, operation_class=operation_class, idempotent=may_repeat,
                                json_body=200 in expected, recovery=recovery, queue_operation=queue_operation)
            prepared = self._prepare(method, url, authorization=f"Bearer {token}", body=body,
                                     user_agent=user_agent)
            return with_policy(prepared, policy)

        prepared = build()
        response = self._send(prepared)
        return self._expect(response, expected)

    # -- sessions ----------------------------------------------------------------------------
    def message_session(self, scale_set_id: int, owner: str | None = None, *,
                        stale_session_id: str | None = None) -> MessageSession:
        """Create a message session for the scale set (raises ``SessionConflictError`` when taken).

        ``stale_session_id``: a session this application owned before (from its state file); on a
        conflict it is deleted and the session created again.
        """
        from .session import MessageSession

        session = MessageSession(self, scale_set_id, owner, stale_session_id=stale_session_id)
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
        from .health import build_health_report  # health's imports are only paid when asked

        return build_health_report(self)

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

    def _recover_now(self) -> RecoveryReport:
        from .health import RecoveryReport

        self.recoveries += 1
        done: list[str] = []
        interrupted = self._adapter.interrupt_in_flight("recover")
        if interrupted:
            done.append(f"interrupted {interrupted} call(s) in flight")
        self._adapter.close()
        done.append("dropped pooled connections")
        probing = [f"{b.origin} {b.operation_class}" for b in self._breakers.all()
                   if b.state.value in ("open", "half_open")]
        self._breakers.probe_now()
        self._adapter.wake_all()
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
        this themselves while the breaker is open, on a jittered schedule (every 15 s +-50 %, so
        a fleet does not return in one second), and a ``CircuitOpenError`` for such an origin
        says when the next look is due; ``when_due=True`` keeps to that schedule (a listener
        backing off does), otherwise the look goes now.
        """
        if self._proxies_for(origin):
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
        self._adapter.abort_in_flight()
        self._session.close()
        self._store.close()  # the final resilience state, after the last call ended

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = "app" if self._app is not None else "token"
        return f"Client({self._github.config_url!r}, auth={auth})"


def prepared_for(url: str) -> requests.PreparedRequest:
    """A bare prepared GET for ``url`` (for building policies in tests and tools)."""
    probe = requests.PreparedRequest()
    probe.url = url
    return probe
