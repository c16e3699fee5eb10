"""From a PAT or a GitHub App key to an Actions-service admin token (protocol §2).

The chain: an installation token (App only, cached until 5 minutes before it expires), a
registration token for the configured org, repo or enterprise, then runner registration with
``RemoteAuth``, which names the Actions service URL and issues the admin JWT. Every call goes
through the call seam (``_calls.Calls``, the client's resilience adapter) as the ``github_api``
operation class. The chain is given the seam, the credentials and the clock, nothing else.

GitHub judges JWT claims and token lifetimes by its own clock, so ours is corrected with the
offset read from its ``Date`` header: a JWT rejected for its time claims is signed again
once with GitHub's time, and a skew that cannot be fixed is reported as the cause.

With a ``token_provider`` the bearer token is the provider's, asked for on every run of the
chain (the chain runs single-flight under ``AdminCredentials``, so threads that need a token
together cause one call) and never cached here. When GitHub answers 401 to it, the provider
is asked once more: a token rotated since the first answer is tried once; the same token
again means it really is rejected (``AuthenticationError``). An App ``signer`` is called
when an installation token is due. Both are called through ``_auth.ask_source``.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from typing import Any

import requests

from . import _wire
from ._auth import GitHubCredentials, app_jwt, ask_source, check_token
from ._breaker import OperationClass
from ._calls import Calls
from ._clock import Clock
from ._errors import APIError, AuthenticationError, ResponseError
from ._http import error_from_response
from ._policy import CallPolicy, with_policy
from ._secrets import Secret, redact_url
from ._urls import GitHubConfig

__all__ = ["Registration"]

SKEW_THRESHOLD = 30.0  # the Date header has 1 s resolution; smaller differences are latency


def _time_claim_rejected(error: APIError) -> bool:
    text = error.message.lower()
    return error.status == 401 and "claim" in text and ("'iat'" in text or "'exp'" in text)


class Registration:
    """The registration chain of one client, and what it learns about GitHub's clock."""

    def __init__(self, calls: Calls, github: GitHubConfig, credentials: GitHubCredentials, clock: Clock) -> None:
        self._calls = calls
        self._github = github
        self._credentials = credentials
        self._clock = clock
        self._log: logging.Logger = calls.log
        self.skew = 0.0  # GitHub's clock minus ours
        self._installation_token: tuple[Secret, float] | None = None
        self._lock = threading.Lock()

    def server_time(self) -> float:
        """The service's clock, estimated from its Date headers."""
        return self._clock.wall() + self.skew

    def observe_date(self, response: requests.Response) -> None:
        """Learn GitHub's clock from its Date header."""
        header = response.headers.get("Date")
        if not header:
            return
        try:
            server = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        offset = server - self._clock.wall()
        skew = offset if abs(offset) > SKEW_THRESHOLD else 0.0
        if skew and abs(skew - self.skew) > SKEW_THRESHOLD:
            self._log.warning("this machine's clock is %+.0fs off GitHub's (Date header); compensating. "
                              "Fix NTP.", -skew)
        self.skew = skew

    def _call(self, operation: str, url: str, authorization: str, *, body: Any = None, content_type: str,
              expected: tuple[int, ...], retry_unauthorized: bool = False) -> dict[str, Any]:
        policy = CallPolicy(operation=operation, operation_class=OperationClass.GITHUB_API, idempotent=True,
                            retry_unauthorized=retry_unauthorized, github_api=True)
        options: dict[str, Any] = {"content_type": content_type, "extra": {"Accept": "application/vnd.github+json"}}
        if body is not None:
            options.update(body=body, trailing_newline=True)  # JSON followed by a newline, as GitHub expects
        prepared = self._calls.prepare("POST", url, authorization=authorization, **options)
        response = self._calls.send(with_policy(prepared, policy))
        self.observe_date(response)
        if response.status_code not in expected:
            error = error_from_response(response, github_api=True)
            if response.status_code == 404 and operation == "registration_token":
                raise AuthenticationError(
                    f"GitHub answered 404 for the registration token of {self._github.config_url}: the "
                    f"{self._github.scope} does not exist or the credentials cannot administer its runners",
                    status=404, reason=error.reason, method=error.method, url=error.url,
                    github_request_id=error.github_request_id, body_excerpt=error.body_excerpt) from error
            raise error
        data = _wire.loads(response.content, operation=operation)
        if not isinstance(data, dict):
            raise ResponseError(f"{operation}: expected a JSON object", operation=operation)
        return data

    def provided_token(self) -> str:
        """The token provider's current token (asked now, never cached)."""
        provider = self._credentials.token_provider
        assert provider is not None

        def ask() -> str:
            token = check_token(provider(), "the token from token_provider", "token")
            Secret(token)
            return token

        return ask_source(ask, "token_provider", self._clock.sleep)

    def bearer_token(self) -> str:
        """The PAT, the token provider's token, or an installation token for the App (cached)."""
        credentials = self._credentials
        if credentials.pat is not None:
            return credentials.pat.reveal()
        if credentials.token_provider is not None:
            return self.provided_token()
        app, sign = credentials.app, credentials.app_signer
        assert app is not None and sign is not None
        with self._lock:
            cached = self._installation_token
            if cached is not None and self.server_time() < cached[1]:
                return cached[0].reveal()
        url = self._github.app_token_url(app.installation_id)
        data: dict[str, Any] = {}
        for attempt in (1, 2):
            skew_before = self.skew
            now = self.server_time()
            jwt = ask_source(lambda: app_jwt(app.client_id, sign, now), "GitHubAppAuth.signer",  # noqa: B023
                             self._clock.sleep)
            try:
                data = self._call("installation_token", url, f"Bearer {jwt}",
                                  content_type="application/vnd.github+json", expected=(201,))
                break
            except AuthenticationError as exc:
                if not _time_claim_rejected(exc):
                    raise
                if attempt == 1 and self.skew != skew_before:
                    continue  # the rejection told us GitHub's time: sign again with it
                raise exc.recast(
                    AuthenticationError,
                    f"GitHub rejected the App JWT's time claims ({exc.message}); this machine's clock is "
                    f"{-self.skew:+.0f}s off GitHub's. Fix the clock (NTP).") from exc
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise ResponseError("installation token response has no token", operation="installation_token")
        expires = self.server_time() + 1800.0
        expires_at = data.get("expires_at")
        if isinstance(expires_at, str):
            try:
                parsed = _wire.parse_time(expires_at)
                if parsed is not None:
                    expires = parsed.timestamp() - 300.0
            except ValueError:
                pass
        with self._lock:
            self._installation_token = (Secret(token), expires)
        return token

    def fetch_admin_token(self) -> tuple[str, str]:
        """Registration token, then runner registration: the Actions service URL and admin JWT."""
        github = self._github
        bearer = self.bearer_token()
        try:
            reg = self._call("registration_token", github.registration_token_url, f"Bearer {bearer}",
                             content_type="application/vnd.github.v3+json", expected=(201,))
        except AuthenticationError as exc:
            if exc.status != 401 or self._credentials.token_provider is None:
                raise
            rotated = self.provided_token()  # the token may have rotated since it was handed out
            if rotated == bearer:
                raise exc.recast(AuthenticationError, f"GitHub rejected the token from token_provider (401): "
                                 f"{exc.message}; the provider still returns the same token") from exc
            self._log.info("GitHub rejected the token from token_provider (401); trying the newer one it returned")
            reg = self._call("registration_token", github.registration_token_url, f"Bearer {rotated}",
                             content_type="application/vnd.github.v3+json", expected=(201,))
        reg_token = reg.get("token")
        if not isinstance(reg_token, str) or not reg_token:
            raise ResponseError("registration token response has no token", operation="registration_token")
        Secret(reg_token)
        conn = self._call("runner_registration", github.runner_registration_url, f"RemoteAuth {reg_token}",
                          body={"url": github.config_url, "runner_event": "register"},
                          content_type="application/json", expected=tuple(range(200, 300)),
                          retry_unauthorized=True)
        url, token = conn.get("url"), conn.get("token")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ResponseError("runner registration response is missing url", operation="runner_registration")
        if not isinstance(token, str) or not token:
            raise ResponseError("runner registration response is missing token", operation="runner_registration")
        if github.scheme == "https" and not url.startswith("https://"):
            raise ResponseError("runner registration pointed the admin API at plain http; refusing to send "
                                "credentials without TLS", operation="runner_registration")
        Secret(token)
        self._log.info("admin connection established to %s", redact_url(url))
        return url, token
