"""The call seam: how every request of the package is built, sent and checked.

Two objects, each complete when constructed:

- ``Calls`` builds a request (``prepare``), sends it through the one ``requests.Session`` with
  the mounted ``ResilienceAdapter`` (``send``: closed and fork checks, per-origin proxies), and
  checks the answer (``expect``, ``json``). The registration chain (GitHub API) and the message
  queue use it as it is.
- ``ActionsCalls`` adds the Actions service (docs/protocol.md §3.1): the tenant URL and ``api-version``
  from the admin credentials, the admin bearer, and the 401 recovery that renews the token and
  signs the request again. The Client's admin API and the message session use it.

They are two because the admin token is fetched *through* ``Calls`` (the registration chain),
so ``Calls`` must exist before the credentials that ``ActionsCalls`` signs with. Nothing here
reads a Client: the Client composes these, and the session and registration get only them.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from . import _wire
from ._adapter import ResilienceAdapter
from ._auth import AdminCredentials
from ._breaker import OperationClass
from ._errors import APIError, CallCancelledError
from ._http import error_from_response, origin_of
from ._policy import CallPolicy, Recovery, is_idempotent, policy_of, with_policy
from ._secrets import Secret, redact_url
from ._urls import join_url

__all__ = ["API_VERSION", "NO_BODY", "ActionsCalls", "Calls", "prepared_for"]

API_VERSION = "6.0-preview"
NO_BODY: Any = object()  # "send no body", distinct from a JSON ``null`` body


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


class Calls:
    """Build, send and check one request. Thread-safe; one per Client.

    ``user_agent`` is the default User-Agent (the Client replaces it on ``set_system_info``);
    ``log`` is the Client's logger, shared with the session and the registration chain."""

    def __init__(self, *, adapter: ResilienceAdapter, timeout: tuple[float, float], verify: bool | str,
                 proxies: Mapping[str, str] | None, closing: threading.Event, user_agent: str,
                 log: logging.Logger) -> None:
        self.user_agent = user_agent
        self.log = log
        self._adapter = adapter
        self._timeout = timeout
        self._verify = verify
        self._closing = closing
        http = requests.Session()
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        http.cookies.set_policy(_RefuseCookies())
        http.auth = _NoNetrc()
        if proxies is not None:
            http.proxies.update(dict(proxies))
            for proxy_url in proxies.values():  # a proxy password is a secret like any token
                password = urlsplit(proxy_url).password if isinstance(proxy_url, str) else None
                if password:
                    Secret(password)
        self._http = http
        self._pid = os.getpid()
        self._proxy_cache: dict[str, dict[str, str]] = {}

    def prepare(self, method: str, url: str, *, authorization: str | None, body: Any = NO_BODY,
                content_type: str | None = "application/json", extra: Mapping[str, str] | None = None,
                user_agent: str | None = None, trailing_newline: bool = False) -> requests.PreparedRequest:
        """The request as requests would prepare it, without the Session's defaults."""
        # Built without the Session's defaults, so ask for compression here: a long poll can carry
        # thousands of jobs, and urllib3 would otherwise send "Accept-Encoding: identity".
        headers = {"User-Agent": user_agent or self.user_agent, "Accept-Encoding": "gzip"}
        if content_type:
            headers["Content-Type"] = content_type
        if authorization:
            headers["Authorization"] = authorization
        if extra:
            headers.update(extra)
        data: bytes | None = None
        if body is not NO_BODY:
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

    def send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """Send through the resilient Session: fails fast once closed, never shares a parent's sockets."""
        if self._closing.is_set():
            raise CallCancelledError("the client is closed", method=prepared.method or "",
                                     url=redact_url(prepared.url or ""), delivered=False)
        if os.getpid() != self._pid:
            # Forked (cron wrappers, multiprocessing): never share the parent's sockets.
            self._pid = os.getpid()
            self._adapter.close()
        return self._http.send(prepared, timeout=self._timeout, verify=self._verify, allow_redirects=False,
                               proxies=self.proxies_for(prepared.url or ""))

    def proxies_for(self, url: str) -> dict[str, str]:
        """Proxies for ``url``'s origin: ``proxies=`` first, then HTTPS_PROXY/NO_PROXY, read once per
        origin (requests would re-read the environment on every call, about a third of its cost).
        With no proxy variable at all, ``proxies=`` alone, as requests would resolve it, without its
        three scans of the environment per origin (issue 28: nine in a cron run)."""
        origin = origin_of(url)
        found = self._proxy_cache.get(origin)
        if found is None:
            if not urllib.request.getproxies():  # what requests would read, scanned once here
                found = dict(self._http.proxies)
            else:
                found = requests.utils.resolve_proxies(prepared_for(url), self._http.proxies, True)
            self._proxy_cache[origin] = found
        return found

    @staticmethod
    def expect(response: requests.Response, expected: tuple[int, ...]) -> requests.Response:
        """``response`` when its status is one of ``expected``; otherwise the typed error (docs/protocol.md §5)."""
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

    @staticmethod
    def json(response: requests.Response, operation: str) -> Any:
        """The body as JSON, or ``ResponseError`` naming ``operation``."""
        return _wire.loads(response.content, operation=operation)

    def close(self) -> None:
        """Close the Session and, through it, the adapter's pools."""
        self._http.close()


class ActionsCalls:
    """Actions-service calls (docs/protocol.md §3.1) over ``calls``, signed with ``admin``'s token.

    Also hands out ``calls``' build, send and check, so a message session holds one object."""

    def __init__(self, calls: Calls, admin: AdminCredentials) -> None:
        self.calls = calls
        self.admin = admin
        self.log = calls.log

    def prepare(self, method: str, url: str, *, authorization: str | None, body: Any = NO_BODY,
                content_type: str | None = "application/json", extra: Mapping[str, str] | None = None,
                user_agent: str | None = None) -> requests.PreparedRequest:
        """``Calls.prepare``: a queue call brings its own URL and token."""
        return self.calls.prepare(method, url, authorization=authorization, body=body, content_type=content_type,
                                  extra=extra, user_agent=user_agent)

    def send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """``Calls.send``."""
        return self.calls.send(prepared)

    expect = staticmethod(Calls.expect)
    json = staticmethod(Calls.json)

    def actions_call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: Any = NO_BODY,
        expected: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation_class: OperationClass = OperationClass.ADMIN,
        bearer: Callable[[], str] | None = None,
        renew: Callable[[], object] | None = None,
        queue_operation: bool = False,
        user_agent: str | None = None,
    ) -> requests.Response:
        """One Actions-service call: tenant URL, api-version, admin bearer (or ``bearer()``), exact status.

        A 401 renews what the token depends on once (``renew``, or the admin token) and signs the
        request again, from the adapter's retry path."""
        may_repeat = is_idempotent(method) if idempotent is None else idempotent
        admin_credentials = self.admin

        def build() -> requests.PreparedRequest:
            admin = admin_credentials.get()
            url = join_url(admin.service_url, path, {**(params or {}), "api-version": API_VERSION})
            token = bearer() if bearer is not None else admin.token.reveal()
            recovery = Recovery("session token", renew, build) if renew is not None else \
                Recovery("admin token", lambda: admin_credentials.renew(admin.generation), build)
            policy = CallPolicy(operation=operation, operation_class=operation_class, idempotent=may_repeat,
                                json_body=200 in expected, recovery=recovery, queue_operation=queue_operation)
            prepared = self.calls.prepare(method, url, authorization=f"Bearer {token}", body=body,
                                          user_agent=user_agent)
            return with_policy(prepared, policy)

        return Calls.expect(self.calls.send(build()), expected)


def prepared_for(url: str) -> requests.PreparedRequest:
    """A bare prepared GET for ``url`` (for building policies in tests and tools)."""
    probe = requests.PreparedRequest()
    probe.url = url
    return probe
