"""Credentials: a PAT or a GitHub App, and the Actions-service admin token they buy.

The admin token is fetched lazily and renewed 60 s before the ``exp`` in its (unverified) JWT
payload. Renewal is single-flight: when many threads find it expired together, one request
chain goes out (installation token for an App, registration token, runner registration) and
the others wait for its result. A failed renewal keeps the old token.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._errors import ConfigError, ResponseError
from ._secrets import Secret
from ._validate import check_id, check_instance

__all__ = ["AdminCredentials", "AdminToken", "GitHubAppAuth", "GitHubCredentials", "SingleFlight", "jwt_expiry",
           "make_app_jwt"]

REFRESH_MARGIN = 60.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class GitHubAppAuth:
    """GitHub App credentials: client id (or numeric app id), installation id, RSA private key (PEM).

    Needs the ``app`` extra: ``pip install 'scaleset-client[app]'``. The key is loaded once, at
    ``Client`` construction, and never appears in ``repr``.
    """

    client_id: str | int
    installation_id: int
    private_key: str | bytes = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.client_id, bool) or not str(self.client_id).strip():
            raise ConfigError("GitHubAppAuth.client_id is empty: pass the App's client ID (Iv1...) or app ID")
        check_id("GitHubAppAuth.installation_id", self.installation_id)
        if not self.private_key or not isinstance(self.private_key, (str, bytes)):
            raise ConfigError("GitHubAppAuth.private_key is empty: pass the App's PEM private key (str or bytes)")
        Secret(self.private_key.decode("ascii", "ignore") if isinstance(self.private_key, bytes)
               else self.private_key)  # register it with the redactor

    def load_key(self) -> Any:
        """The parsed RSA key; ``ConfigError`` if cryptography is missing or the PEM is wrong."""
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError:
            raise ConfigError(
                "GitHub App authentication needs the optional 'cryptography' package: "
                "pip install 'scaleset-client[app]'") from None
        pem = self.private_key.encode() if isinstance(self.private_key, str) else self.private_key
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                "GitHubAppAuth.private_key is not a readable PEM private key (PKCS#1 "
                "'BEGIN RSA PRIVATE KEY' or PKCS#8 'BEGIN PRIVATE KEY', unencrypted)") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("GitHubAppAuth.private_key must be an RSA key (GitHub Apps sign with RS256)")
        return key


@dataclass(frozen=True, slots=True)
class GitHubCredentials:
    """What the registration chain signs with: a PAT, or a GitHub App and its parsed key.

    Handed to ``Registration`` on its own, so the chain gets its credentials and nothing else of
    the client. Never shows a secret in ``repr``."""

    pat: Secret | None = field(default=None, repr=False)
    app: GitHubAppAuth | None = None
    app_key: Any = field(default=None, repr=False)

    @classmethod
    def from_arguments(cls, token: object, app: object) -> GitHubCredentials:
        """Exactly one of ``token`` (a PAT) or ``app`` (``GitHubAppAuth``, key parsed now)."""
        if (token is None) == (app is None):
            raise ConfigError("pass exactly one of token= (a personal access token) or app= (GitHubAppAuth)")
        if token is not None:
            if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n "):
                raise ConfigError("token must be a non-empty personal access token string without whitespace")
            return cls(pat=Secret(token.strip()))
        checked = check_instance("app", app, GitHubAppAuth)
        return cls(app=checked, app_key=checked.load_key())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_app_jwt(client_id: str | int, key: Any, now: float) -> str:
    """An RS256 App JWT: iat 60 s in the past (clock skew), exp 9 minutes after iat, iss a string."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    iat = int(now) - 60
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"iat": iat, "exp": iat + 540, "iss": str(client_id)},
                                separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64url(signature)}"


def jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT, read without verifying it (only a hint for renewal)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ResponseError("admin token is not a three-part JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload["exp"]
    except (ValueError, KeyError, TypeError):
        raise ResponseError("admin token has no readable 'exp' claim") from None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise ResponseError("admin token 'exp' claim is not a number")
    return float(exp)


class _Flight(Generic[_T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: _T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[_T]):
    """Run ``fn`` once for every caller that arrives while it runs; they all get its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flight: _Flight[_T] | None = None
        self.runs = 0

    def do(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` once for all threads calling now; every caller gets its result or error."""
        with self._lock:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight()
                self.runs += 1
        if leader:
            try:
                flight.result = fn()
            except BaseException as exc:
                flight.error = exc
            finally:
                with self._lock:
                    self._flight = None
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class AdminToken:
    """The Actions service base URL and the admin token for it."""

    service_url: str
    token: Secret
    expires_at: float
    generation: int


class AdminCredentials:
    """Holds the current admin token and renews it (single-flight) through ``fetch``.

    ``fetch()`` performs the registration chain and returns ``(service_url, token)``.
    """

    def __init__(self, fetch: Callable[[], tuple[str, str]], wall: Callable[[], float]) -> None:
        self._fetch = fetch
        self._wall = wall
        self._lock = threading.Lock()
        self._current: AdminToken | None = None
        self._flight: SingleFlight[AdminToken] = SingleFlight()

    @property
    def refreshes(self) -> int:
        """How many times the admin token was fetched (a test and metrics aid)."""
        return self._flight.runs

    def peek(self) -> AdminToken | None:
        """The current admin token if one is held, without fetching (None otherwise)."""
        with self._lock:
            return self._current

    def get(self) -> AdminToken:
        """A token valid for at least the refresh margin, renewing it when needed."""
        current = self.peek()
        if current is not None and self._wall() + REFRESH_MARGIN < current.expires_at:
            return current
        return self.renew(current.generation if current else 0)

    def renew(self, seen_generation: int) -> AdminToken:
        """Renew unless someone already did after ``seen_generation`` (a 401 on an old token)."""
        current = self.peek()
        if current is not None and current.generation > seen_generation \
                and self._wall() + REFRESH_MARGIN < current.expires_at:
            return current
        return self._flight.do(self._renew_now)

    def _renew_now(self) -> AdminToken:
        service_url, token = self._fetch()
        expires = jwt_expiry(token)
        with self._lock:
            generation = (self._current.generation if self._current else 0) + 1
            self._current = AdminToken(service_url, Secret(token), expires, generation)
            return self._current
