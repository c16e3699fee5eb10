"""The GitHub REST side of the fake: App installation tokens, registration tokens, runner
registration. A mixin of ``FakeActionsService``, kept apart because it is its own protocol."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from typing import Any

from .._clock import Clock

__all__ = ["GitHubSide", "b64", "unb64"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GitHubSide:
    """App JWT checks and the token chain that ends in an Actions-service admin token."""

    clock: Clock
    token: str
    org: str
    admin_token_ttl: float
    _lock: threading.RLock
    _secret: bytes
    _apps: dict[str, Any]
    _installation_tokens: dict[str, float]
    _registration_tokens: dict[str, float]
    _admin_tokens: dict[str, float]

    @property
    def actions_url(self) -> str:
        raise NotImplementedError

    @staticmethod
    def _bearer(req: Any) -> str:
        auth = req.headers.get("Authorization", "")
        return str(auth[7:]) if auth.startswith("Bearer ") else ""

    def register_app(self, client_id: str | int, public_key: Any) -> None:
        """Accept App JWTs signed by the private half of ``public_key`` with ``iss`` = client_id."""
        self._apps[str(client_id)] = public_key

    # -- tokens ------------------------------------------------------------------------------
    def _jwt(self, claims: dict[str, Any]) -> str:
        header = b64(b'{"alg":"HS256","typ":"JWT"}')
        payload = b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64(sig)}"

    def _verify_app_jwt(self, token: str) -> str:
        """'' when valid, else why not."""
        try:
            header_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(unb64(header_b64))
            claims = json.loads(unb64(claims_b64))
        except ValueError:
            return "A JSON web token could not be decoded"
        if header.get("alg") != "RS256":
            return "'alg' must be RS256"
        iss = claims.get("iss")
        if not isinstance(iss, str):
            return "'Issuer' claim ('iss') must be a string"
        key = self._apps.get(iss)
        if key is None:
            return "Integration not found"
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            key.verify(unb64(sig_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "A JSON web token could not be decoded"
        now = self.clock.wall()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + 60:
            return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
        if not isinstance(exp, int) or exp - iat > 600 or exp > now + 600:
            return "'Expiration time' claim ('exp') is too far in the future"
        if exp <= now:
            return "'Expiration time' claim ('exp') must be a numeric value representing the future time"
        return ""

    def _prune(self, tokens: dict[str, float]) -> None:
        """Forget tokens that expired more than an hour ago (long soak runs issue thousands)."""
        if len(tokens) > 64:
            horizon = self.clock.wall() - 3600
            for token in [t for t, exp in tokens.items() if exp < horizon]:
                del tokens[token]

    # -- GitHub REST -------------------------------------------------------------------------
    def _op_installation_token(self, params: dict[str, str], req: Any) -> tuple[int, Any]:
        auth = req.headers.get("Authorization", "")
        why = self._verify_app_jwt(auth[7:]) if auth.startswith("Bearer ") else "missing JWT"
        if why:
            return 401, {"message": why, "documentation_url": "https://docs.github.com/rest"}
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = self.clock.wall() + 3600
        with self._lock:
            self._installation_tokens[token] = expires
        return 201, {"token": token, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
                     "permissions": {"organization_self_hosted_runners": "write"}}

    def _op_registration_token(self, params: dict[str, str], req: Any) -> tuple[int, Any]:
        bearer = self._bearer(req)
        with self._lock:
            valid = bearer == self.token or self._installation_tokens.get(bearer, 0) > self.clock.wall()
        if not valid:
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        if params["scope"] not in (f"orgs/{self.org}", f"repos/{self.org}/api", f"enterprises/{self.org}"):
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
        token = "AABF" + secrets.token_hex(12).upper()
        with self._lock:
            self._prune(self._registration_tokens)
            self._registration_tokens[token] = self.clock.wall() + 3600
        return 201, {"token": token, "expires_at": "2099-01-01T00:00:00.000+00:00"}

    def _op_runner_registration(self, params: dict[str, str], req: Any) -> tuple[int, Any]:
        auth = req.headers.get("Authorization", "")
        token = auth[len("RemoteAuth "):] if auth.startswith("RemoteAuth ") else ""
        with self._lock:
            valid = self._registration_tokens.get(token, 0) > self.clock.wall()
        if not valid:
            return 401, {"message": "Bad credentials"}
        body = req.json()
        if not isinstance(body, dict) or body.get("runner_event") != "register" or not body.get("url"):
            return 422, {"message": "Validation Failed", "status": "422"}
        admin = self._jwt({"exp": int(self.clock.wall() + self.admin_token_ttl), "jti": uuid.uuid4().hex})
        with self._lock:
            self._prune(self._admin_tokens)
            self._admin_tokens[admin] = self.clock.wall() + self.admin_token_ttl
        return 201, {"url": self.actions_url, "token": admin}

