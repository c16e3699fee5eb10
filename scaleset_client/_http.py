"""Small HTTP helpers shared by the adapter and the client: origins and error mapping (§5)."""

from __future__ import annotations

import functools
import json
from urllib.parse import urlsplit

import requests

from . import _errors as e
from ._secrets import redact_url
from ._wire import BOM, excerpt

__all__ = ["error_from_response", "origin_of"]

# typeName substrings (protocol §5.3), most specific first.
_TYPE_NAMES: tuple[tuple[str, type[e.APIError]], ...] = (
    ("AgentExistsException", e.RunnerExistsError),
    ("AgentNotFoundException", e.RunnerNotFoundError),
    ("JobStillRunningException", e.JobStillRunningError),
    ("RunnerScaleSetSessionConflictException", e.SessionConflictError),
    ("RunnerScaleSetNotFoundException", e.ScaleSetNotFoundError),
    ("RunnerScaleSetSessionExpiredException", e.SessionNotFoundError),
)
_KEPT_HEADERS = ("retry-after", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-resource",
                 "content-type", "activityid", "x-github-request-id", "date")


@functools.lru_cache(maxsize=512)
def origin_of(url: str) -> str:
    """``scheme://host:port`` with the port made explicit: the breaker's partition key.

    Cached: the adapter asks several times per attempt, and the URLs repeat call after call."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 0
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _parse_body(response: requests.Response) -> tuple[str, str]:
    """(type_name, message) from an error body, per protocol §5.1."""
    body = response.content or b""
    if body.startswith(BOM):
        body = body[len(BOM):]
    if not body.strip():
        return "", "unknown error"
    if "text/plain" in response.headers.get("content-type", "").lower():
        return "", excerpt(body.strip(), 1024)
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "", f"failed to parse error response body: {excerpt(body, 300)!r}"
    if not isinstance(data, dict):
        return "", excerpt(body, 300)
    type_name = data.get("typeName") or data.get("typename") or ""
    message = data.get("message") or data.get("errorMessage") or ""
    if not isinstance(type_name, str):
        type_name = ""
    if not isinstance(message, str) or not message:
        message = "unknown error" if not message else excerpt(str(message), 300)
    return excerpt(type_name, 300), excerpt(message, 1024)


def error_from_response(
    response: requests.Response,
    *,
    queue_operation: bool = False,
    github_api: bool = False,
    retry_at: float | None = None,
) -> e.APIError:
    """The typed error for an unexpected status, with diagnostics and no secrets."""
    request = response.request
    type_name, message = _parse_body(response)
    def make(cls: type[e.APIError]) -> e.APIError:
        return cls(
            message,
            status=response.status_code,
            reason=response.reason or "",
            type_name=type_name,
            activity_id=response.headers.get("ActivityId", ""),
            github_request_id=response.headers.get("X-GitHub-Request-Id", ""),
            method=(request.method or "") if request is not None else "",
            url=redact_url(request.url or "") if request is not None else "",
            body_excerpt=excerpt(response.content or b""),
            headers={k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS},
        )

    status = response.status_code
    if retry_at is not None:
        error = make(e.RateLimitedError)
        assert isinstance(error, e.RateLimitedError)
        error.set_retry(retry_at=retry_at)
        return error
    for needle, cls in _TYPE_NAMES:
        if needle in type_name:
            return make(cls)
    if status >= 500 and status != 501:  # the service failed, not the request: worth waiting out
        return make(e.ServerError)
    if status == 401 and queue_operation:
        return make(e.MessageQueueTokenExpiredError)
    if github_api and status in (401, 403):
        return make(e.AuthenticationError)
    return make(e.APIError)
