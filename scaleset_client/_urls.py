"""The configuration URL: which organization, repository or enterprise, and where its API is.

``parse_config_url`` follows docs/protocol.md §1: one path segment is an organization, two are a
repository, ``enterprises/<name>`` is an enterprise; github.com, www.github.com,
github.localhost and ``*.ghe.com`` are hosted (API at ``api.<host>``), every other host is
GitHub Enterprise Server (API at ``<host>/api/v3``), and ``GITHUB_ACTIONS_FORCE_GHES`` set to
anything, even empty, forces GHES. Plain ``http`` is refused for github.com and ``*.ghe.com``
(a token would travel unencrypted), allowed for loopback hosts, and for a GHES host only with
``SCALESET_ALLOW_HTTP=1``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit

from ._errors import ConfigError
from ._value_class import ValueClass

__all__ = ["GitHubConfig", "join_url", "parse_config_url"]

Scope = Literal["organization", "repository", "enterprise"]
_HOSTED = frozenset({"github.com", "www.github.com", "github.localhost"})
_LOCAL = frozenset({"localhost", "127.0.0.1", "[::1]", "github.localhost"})  # loopback: http allowed (tests, fakes)
_SHAPES = (
    "https://github.com/<org>, https://github.com/<owner>/<repo> or "
    "https://github.com/enterprises/<enterprise> (or the same paths on your GHES host)"
)


class GitHubConfig(ValueClass):
    """What a configuration URL names. ``config_url`` is the normalized form sent at registration.

    A frozen value class (``_value_class.py``), not a dataclass: the same value, without the
    ``dataclasses`` import and the per-class compile a cron run paid at start-up (issue 28)."""

    __slots__ = ()

    config_url: str
    scheme: str
    host: str
    scope: Scope
    organization: str = ""
    enterprise: str = ""
    owner: str = ""
    repository: str = ""
    is_hosted: bool = True

    @property
    def api_base(self) -> str:
        """Where the REST API is: ``api.<host>`` when hosted, ``<host>/api/v3`` on GHES."""
        if not self.is_hosted:
            return f"{self.scheme}://{self.host}/api/v3"
        if self.host.lower() == "www.github.com":
            return f"{self.scheme}://api.github.com"
        return f"{self.scheme}://api.{self.host}"

    @property
    def registration_token_url(self) -> str:
        """The REST endpoint that issues a runner registration token for this scope."""
        if self.scope == "organization":
            path = f"orgs/{quote(self.organization, safe='')}"
        elif self.scope == "enterprise":
            path = f"enterprises/{quote(self.enterprise, safe='')}"
        else:
            path = f"repos/{quote(self.owner, safe='')}/{quote(self.repository, safe='')}"
        return f"{self.api_base}/{path}/actions/runners/registration-token"

    @property
    def runner_registration_url(self) -> str:
        """The endpoint that trades a registration token for the Actions service URL."""
        return f"{self.api_base}/actions/runner-registration"

    def app_token_url(self, installation_id: int) -> str:
        """The endpoint that issues a GitHub App installation token."""
        return f"{self.api_base}/app/installations/{installation_id}/access_tokens"


def _invalid(url: str, why: str) -> ConfigError:
    return ConfigError(
        f"invalid config URL {url!r}: {why}; it should point to an enterprise, org, or repository: {_SHAPES}"
    )


def parse_config_url(url: str, environ: Mapping[str, str] | None = None) -> GitHubConfig:
    """Parse and validate a configuration URL; ``ConfigError`` names the URL and the accepted shapes."""
    if not isinstance(url, str):
        raise ConfigError(f"config URL must be a string, not {type(url).__name__}")
    env = os.environ if environ is None else environ
    text = url.strip().strip("/")
    if not text or any(c in text for c in "\r\n\t ") or "\x00" in text:
        raise _invalid(url, "it is empty or contains whitespace")
    try:
        parts = urlsplit(text)
        port = parts.port  # validates the port number
    except ValueError as exc:
        raise _invalid(url, f"it does not parse ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _invalid(url, "the scheme must be https (or http for a local server)")
    if not parts.hostname:
        raise _invalid(url, "it has no host")
    if parts.username or parts.password:
        raise _invalid(url, "credentials do not belong in the URL; pass token= or app=")
    if parts.query or parts.fragment:
        raise _invalid(url, "it must not carry a query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    segments = parts.path.strip("/").split("/")
    fields: dict[str, str] = {}
    scope: Scope
    if len(segments) == 1 and segments[0]:
        scope, fields["organization"] = "organization", segments[0]
    elif len(segments) == 2 and all(segments):
        if segments[0].lower() == "enterprises":
            scope, fields["enterprise"] = "enterprise", segments[1]
        else:
            scope, fields["owner"], fields["repository"] = "repository", segments[0], segments[1]
    else:
        raise _invalid(url, "the path must have one or two segments")
    hosted = netloc in _HOSTED or netloc.endswith(".ghe.com")
    if scheme == "http" and host not in _LOCAL:
        # A token must never travel unencrypted to GitHub's own hosts; a GHES reachable only over
        # plain http (a lab, a test instance) is an explicit opt-in.
        if hosted or host.endswith(".ghe.com") or host in _HOSTED:
            raise _invalid(url, "github.com and ghe.com are only reachable over https (a token would "
                                "travel unencrypted)")
        if env.get("SCALESET_ALLOW_HTTP", "") not in ("1", "true", "yes"):
            raise _invalid(url, "plain http would send the token unencrypted; use https, or set "
                                "SCALESET_ALLOW_HTTP=1 for a GitHub Enterprise Server that has no TLS")
    if "GITHUB_ACTIONS_FORCE_GHES" in env:
        hosted = False
    normalized = f"{scheme}://{netloc}/{'/'.join(segments)}"
    return GitHubConfig(config_url=normalized, scheme=scheme, host=netloc, scope=scope,
                        is_hosted=hosted, **fields)


def join_url(base: str, path: str, params: Mapping[str, object] | None = None) -> str:
    """``base`` and ``path`` with exactly one slash between; params sorted by key and form-encoded."""
    url = base.rstrip("/") + "/" + path.lstrip("/")
    if params:
        url += ("&" if "?" in url else "?") + urlencode(sorted((k, str(v)) for k, v in params.items()))
    return url
