"""Credentials: a PAT, a token provider or a GitHub App, and the Actions-service admin token they buy.

The admin token is fetched lazily and renewed 60 s before the ``exp`` in its (unverified) JWT
payload. Renewal is single-flight: when many threads find it expired together, one request
chain goes out (installation token for an App, registration token, runner registration) and
the others wait for its result. A failed renewal keeps the old token.

Two credential *sources* are the application's own code, called from inside that chain:

- a ``token_provider`` (``Client(token_provider=...)``): returns the current PAT or installation
  token, for tokens rotated outside the process (a mounted secret, a vault agent, a sidecar that
  mints installation tokens). It is asked on every renewal, and again when GitHub answers 401
  to the token it gave; the client never caches what it returns.
- an App ``signer`` (``GitHubAppAuth(signer=...)``): signs the App JWT's bytes with RS256, so the
  private key can stay in a KMS or HSM; the client never sees the key.

Both are called the same way (``ask_source``): a ``TransientError`` raised by the source means
"nothing now, but soon" and ends the call at once as ``TokenUnavailableError`` (transient: a
listener waits it out); any other exception is the source failing, and it is asked again
(``SOURCE_ATTEMPTS`` times in all, ``SOURCE_PAUSES`` apart) before the call ends with
``CredentialSourceError``, an ``AuthenticationError`` (permanent: a listener stops). Their
messages name the source and the exception type, with known secrets redacted; what a source
returns never appears in a message, a log line or a ``repr``.

``GitHubAppAuth``, ``GitHubCredentials`` and ``AdminToken`` are frozen value classes
(``_value_class.py``), not dataclasses: the same fields, validation, equality, ``repr`` and
``dataclasses.replace``, without the ``dataclasses`` import and the per-class compile that every
cron run paid at start-up (issue 28).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from ._errors import (
    ConfigError,
    CredentialSourceError,
    ResponseError,
    ScalesetError,
    TokenUnavailableError,
    TransientError,
)
from ._secrets import Secret, redact
from ._validate import check_id, check_instance
from ._value_class import ValueClass, value_field

__all__ = ["SOURCE_ATTEMPTS", "SOURCE_PAUSES", "AdminCredentials", "AdminToken", "AppSigner",
           "CredentialSourceError", "GitHubAppAuth", "GitHubCredentials", "SingleFlight", "TokenProvider",
           "TokenUnavailableError", "app_jwt", "ask_source", "jwt_expiry", "make_app_jwt"]

REFRESH_MARGIN = 60.0
SOURCE_ATTEMPTS = 3  # calls of a failing token provider or App signer before the call gives up
SOURCE_PAUSES = (0.25, 0.5)  # seconds between those calls
_T = TypeVar("_T")

TokenProvider = Callable[[], str]
"""``Client(token_provider=...)``: returns the current PAT or installation token (a ``str``).

Raise ``TransientError`` (or ``TokenUnavailableError``) for "no token now, try later" (set its
``retry_after`` with ``set_retry`` to say when); any other exception counts as a failure."""


@runtime_checkable
class AppSigner(Protocol):
    """Signs a GitHub App JWT: ``sign(message)`` returns the RS256 signature of ``message``
    (RSASSA-PKCS1-v1_5 with SHA-256) as bytes, as long as the RSA modulus (256 bytes for a
    2048-bit key). A KMS or HSM call in real use: AWS KMS ``Sign`` with
    ``RSASSA_PKCS1_V1_5_SHA_256`` and ``MessageType=RAW``, Cloud KMS, Key Vault, PKCS#11.

    ``GitHubAppAuth(signer=...)`` takes an object with this method, a plain callable
    ``(bytes) -> bytes``, or a ``cryptography`` RSA private key object (an HSM-backed one, say)."""

    def sign(self, message: bytes) -> bytes: ...


def _describe(exc: BaseException) -> str:
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def ask_source(source: Callable[[], _T], what: str, sleep: Callable[[float], object]) -> _T:
    """Call an application's credential source (``what`` names it in errors) the documented way.

    ``source`` may raise ``TransientError`` (raised at once as ``TokenUnavailableError``, its
    retry hint kept) or a ``ScalesetError`` of its own (raised as it is); any other exception,
    or a ``ConfigError`` from checking what it returned, is a failure: it is called again after
    ``SOURCE_PAUSES`` (``sleep``, the client's clock), ``SOURCE_ATTEMPTS`` times in all, then
    ``CredentialSourceError`` is raised from the last failure."""
    last: BaseException | None = None
    for attempt in range(SOURCE_ATTEMPTS):
        if attempt:
            sleep(SOURCE_PAUSES[min(attempt, len(SOURCE_PAUSES)) - 1])
        try:
            return source()
        except TransientError as exc:
            unavailable = TokenUnavailableError(f"{what} has no credential now ({_describe(exc)}); retry later")
            unavailable.set_retry(retry_at=exc.retry_at, retry_after=exc.retry_after)
            raise unavailable from exc
        except ConfigError as exc:  # what it returned is not a credential
            last = exc
        except ScalesetError:
            raise
        except Exception as exc:  # the application's code failed: ask again, then give up
            last = exc
    assert last is not None
    raise CredentialSourceError(f"{what} failed {SOURCE_ATTEMPTS} times; last: {_describe(last)}") from last


class GitHubAppAuth(ValueClass):
    """GitHub App credentials: client id (or numeric app id), installation id, and either the RSA
    private key (PEM) or a ``signer`` that signs the App JWT where the key lives (see ``AppSigner``).

    ``private_key`` needs the ``app`` extra: ``pip install 'scaleset-client[app]'``; it is loaded
    once, at ``Client`` construction. A ``signer`` needs nothing: the JWT is assembled here and only
    its signing input goes to the signer, when an installation token is due (about hourly). Neither
    the key nor the signer appears in ``repr``; the signer's output is a credential and is never
    logged or put in an error.
    """

    __slots__ = ()

    client_id: str | int
    installation_id: int
    private_key: str | bytes | None = value_field(default=None, repr=False)
    signer: AppSigner | Callable[[bytes], bytes] | None = value_field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.client_id, bool) or not str(self.client_id).strip():
            raise ConfigError("GitHubAppAuth.client_id is empty: pass the App's client ID (Iv1...) or app ID")
        check_id("GitHubAppAuth.installation_id", self.installation_id)
        if self.signer is not None:
            if self.private_key is not None:
                raise ConfigError("GitHubAppAuth: pass private_key= or signer=, not both")
            if not callable(getattr(self.signer, "sign", None)) and not callable(self.signer):
                raise ConfigError("GitHubAppAuth.signer must have a sign(message: bytes) -> bytes method or be "
                                  f"a callable taking bytes; got {type(self.signer).__name__}")
            return
        if not self.private_key or not isinstance(self.private_key, (str, bytes)):
            raise ConfigError("GitHubAppAuth.private_key is empty: pass the App's PEM private key (str or bytes), "
                              "or signer= to sign where the key is kept")
        Secret(self.private_key.decode("ascii", "ignore") if isinstance(self.private_key, bytes)
               else self.private_key)  # register it with the redactor

    def jwt_signer(self) -> Callable[[bytes], bytes]:
        """A function signing JWT bytes with RS256: the loaded private key, or the ``signer``."""
        signer = self.signer
        if signer is None:
            key = self.load_key()
            return lambda message: _rs256(key, message)
        if _is_rsa_key(signer):
            return lambda message: _rs256(signer, message)
        method = getattr(signer, "sign", None)
        sign: Callable[[bytes], Any] = method if callable(method) else signer  # type: ignore[assignment]
        return lambda message: _checked_signature(sign(message))

    def load_key(self) -> Any:
        """The parsed RSA key; ``ConfigError`` if cryptography is missing or the PEM is wrong."""
        if self.private_key is None:
            raise ConfigError("GitHubAppAuth has a signer, not a private key: there is no key to load")
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


def _is_rsa_key(obj: object) -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        return False
    return isinstance(obj, rsa.RSAPrivateKey)


def _rs256(key: Any, message: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[no-any-return]


def _checked_signature(value: object) -> bytes:
    """A signer's output as bytes; ``ConfigError`` (never showing the value) when it cannot be one."""
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ConfigError(f"GitHubAppAuth.signer returned {type(value).__name__}; it must return the raw RS256 "
                          "signature as bytes (not base64 text)")
    if not 128 <= len(value) <= 1024:
        raise ConfigError(f"GitHubAppAuth.signer returned {len(value)} bytes; an RS256 signature is as long as the "
                          "RSA modulus (256 bytes for a 2048-bit key)")
    return value


class GitHubCredentials(ValueClass):
    """What the registration chain signs with: a PAT, a token provider, or a GitHub App and the
    function that signs its JWTs (the parsed key, or the App's signer).

    Handed to ``Registration`` on its own, so the chain gets its credentials and nothing else of
    the client. Never shows a secret in ``repr``."""

    __slots__ = ()

    pat: Secret | None = value_field(default=None, repr=False)
    app: GitHubAppAuth | None = None
    app_signer: Callable[[bytes], bytes] | None = value_field(default=None, repr=False)
    token_provider: Callable[[], str] | None = value_field(default=None, repr=False)

    @classmethod
    def from_arguments(cls, token: object, app: object, token_provider: object = None) -> GitHubCredentials:
        """Exactly one of ``token`` (a PAT), ``token_provider`` (a callable returning the current
        token) or ``app`` (``GitHubAppAuth``, its key parsed now)."""
        given = [name for name, value in (("token", token), ("token_provider", token_provider), ("app", app))
                 if value is not None]
        if len(given) != 1:
            raise ConfigError("pass exactly one of token= (a personal access token), token_provider= (a callable "
                              "returning the current token) or app= (GitHubAppAuth)"
                              + (f"; got {' and '.join(given)}" if given else ""))
        if token is not None:
            return cls(pat=Secret(check_token(token, "token")))
        if token_provider is not None:
            if not callable(token_provider):
                raise ConfigError(f"token_provider must be a callable returning the token, "
                                  f"got {type(token_provider).__name__}")
            return cls(token_provider=token_provider)
        checked = check_instance("app", app, GitHubAppAuth)
        return cls(app=checked, app_signer=checked.jwt_signer())


def check_token(token: object, what: str, kind: str = "personal access token") -> str:
    """``token`` stripped, or ``ConfigError`` (never quoting it) when it cannot be a bearer token."""
    if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n \t"):
        got = type(token).__name__ if not isinstance(token, str) else "an empty or whitespace-holding string"
        raise ConfigError(f"{what} must be a non-empty {kind} string without whitespace; got {got}")
    return token.strip()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def app_jwt(client_id: str | int, sign: Callable[[bytes], bytes], now: float) -> str:
    """An RS256 App JWT: iat 60 s in the past (clock skew), exp 9 minutes after iat, iss a string;
    ``sign`` gets the signing input (header and claims) and returns the raw signature."""
    iat = int(now) - 60
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"iat": iat, "exp": iat + 540, "iss": str(client_id)},
                                separators=(",", ":")).encode())
    signature = _b64url(sign(f"{header}.{claims}".encode("ascii")))
    Secret(signature)  # a credential for ten minutes: redacted wherever it might be echoed
    return f"{header}.{claims}.{signature}"


def make_app_jwt(client_id: str | int, key: Any, now: float) -> str:
    """``app_jwt`` signed with a ``cryptography`` RSA private key."""
    return app_jwt(client_id, lambda message: _rs256(key, message), now)


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


class AdminToken(ValueClass):
    """The Actions service base URL and the admin token for it."""

    __slots__ = ()

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
