"""``MessageSession``: one scale set's message queue session, renewed in place when it lapses.

The session is created before the constructor returns. Its queue token expires about hourly:
a 401 from the queue (poll, ack, acquire) refreshes the session once (PATCH, single-flight
across threads) and repeats the call with the new token and URL. When the service has lost the
session (refresh answers 404) and ``auto_recover_session`` is on, a new session is created in
its place. A session the service hands back without a queue URL or token is re-created.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from . import _wire
from ._auth import SingleFlight
from ._breaker import OperationClass
from ._calls import ActionsCalls
from ._config import ResilienceConfig
from ._errors import (
    APIError,
    ResponseError,
    SessionConflictError,
    SessionNotFoundError,
)
from ._messages import RunnerScaleSetMessage
from ._models import NIL_UUID, RunnerScaleSetSession, SystemInfo, parse
from ._policy import CallPolicy, Recovery, with_policy
from ._secrets import Secret
from ._urls import GitHubConfig
from ._validate import INT32_MAX, check_id, check_int, check_text

__all__ = ["MessageSession", "SessionOwner"]

_GONE_TYPES = ("RunnerAdminException", "RunnerScaleSetSessionExpiredException")


def default_owner() -> str:
    """The default session owner name: the host name."""
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    if name:
        return name
    import uuid  # only when the host has no name: it pulls in platform at import time

    return str(uuid.uuid4())


def with_query(url: str, **params: object) -> str:
    """``url`` with the given query parameters added or replaced, the others kept."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    pairs += [(k, str(v)) for k, v in params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


def with_path_suffix(url: str, suffix: str) -> str:
    """``url`` with ``suffix`` appended to its path, keeping the query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + suffix, parts.query, ""))


class SessionOwner(Protocol):
    """What a session reads from the client that opened it: public settings only.

    A Protocol, so this module does not import ``client`` (the Client imports it); the listener
    narrows ``MessageSession.client`` back to a ``Client`` with ``isinstance``."""

    long_poll_timeout: float

    @property
    def config(self) -> GitHubConfig:
        """The parsed configuration URL: a queue URL must keep its scheme."""

    @property
    def system_info(self) -> SystemInfo:
        """The User-Agent information, extended with the scale set id."""

    @property
    def resilience(self) -> ResilienceConfig:
        """Whether a lost session is re-created, and the long poll's message cap."""


class MessageSession:
    """A message session for one scale set. Thread-safe; a context manager that deletes the session.

    Opened by ``Client.message_session``, which hands it the call seam (``calls``) and
    ``on_close``, called once with the session when it is closed."""

    def __init__(self, client: SessionOwner, scale_set_id: int, owner: str | None = None, *,
                 calls: ActionsCalls, stale_session_id: str | None = None,
                 on_close: Callable[[MessageSession], None] | None = None) -> None:
        self.client = client
        self._calls = calls
        self._log = calls.log
        self._on_close = on_close
        self.scale_set_id = check_id("scale_set_id", scale_set_id)
        self.owner_name = default_owner() if owner is None else check_text("owner", owner)
        self._lock = threading.Lock()
        self._generation = 0
        self._flight: SingleFlight[RunnerScaleSetSession] = SingleFlight()
        self._closed = False
        self._user_agent = client.system_info.with_scale_set(scale_set_id).user_agent()
        self._stale_session_id = stale_session_id
        self._current = self._create()

    # -- state -------------------------------------------------------------------------------
    @property
    def session(self) -> RunnerScaleSetSession:
        """The current session (replaced whole on every refresh)."""
        with self._lock:
            return self._current

    @property
    def active(self) -> bool:
        """True while the session is open and not closed."""
        with self._lock:
            return not self._closed and not self._current.problems()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        with self._lock:
            return self._closed

    @property
    def generation(self) -> int:
        """Bumped on every renewal, so a caller can tell its session is stale."""
        with self._lock:
            return self._generation

    def _problems(self, session: RunnerScaleSetSession) -> list[str]:
        found = session.problems()
        if self.client.config.scheme == "https" and session.message_queue_url.startswith("http://"):
            found.append("messageQueueUrl is plain http while the client uses https (token would leak)")
        return found

    def _install(self, session: RunnerScaleSetSession) -> RunnerScaleSetSession:
        if session.message_queue_access_token:
            Secret(session.message_queue_access_token)
        with self._lock:
            self._current = session
            self._generation += 1
            return session

    def _path(self, suffix: str = "") -> str:
        return f"_apis/runtime/runnerscalesets/{self.scale_set_id}/sessions{suffix}"

    # -- session calls (docs/protocol.md §3.9) -------------------------------------------------------
    def _post_session(self, body: dict[str, str]) -> requests.Response:
        """POST the session. A 409 that names no exception type is taken as the session conflict:
        it is the one 409 this endpoint is known to answer (docs/protocol.md §3.9), and a proxy or a
        truncated error body should make a listener wait as a standby, not end its run.
        ASSUMPTION: no other 409 without a ``typeName`` exists here (docs/protocol-notes.md)."""
        try:
            return self._calls.actions_call("create_session", "POST", self._path(), body=body, idempotent=False,
                                            operation_class=OperationClass.SESSION, user_agent=self._user_agent)
        except APIError as exc:
            if exc.status == 409 and not exc.type_name and not isinstance(exc, SessionConflictError):
                raise exc.recast(SessionConflictError, f"{exc.message} (a 409 with no exception type: taken as "
                                 "another session owning the scale set)") from exc
            raise

    def _create(self) -> RunnerScaleSetSession:
        calls = self._calls
        body = {"sessionId": NIL_UUID, "ownerName": self.owner_name}
        for attempt in (1, 2):
            try:
                response = self._post_session(body)
            except SessionConflictError:
                stale, self._stale_session_id = self._stale_session_id, None
                if stale is None:  # none to delete, or deleted on the first attempt already
                    raise
                # Our own session, left by a process that died: delete it and take over.
                self._log.warning("scale set %d still has our previous session %s; deleting it",
                                    self.scale_set_id, stale)
                self._delete_quietly(stale)
                continue
            session = parse(RunnerScaleSetSession, calls.json(response, "create_session"), "create_session")
            problems = self._problems(session)
            if not problems:
                return self._install(session)
            # The service handed back an unusable session. Drop it and ask once more.
            self._log.warning("session for scale set %d is unusable (%s); re-creating", self.scale_set_id,
                                ", ".join(problems))
            if session.session_id and session.session_id != NIL_UUID:
                self._delete_quietly(session.session_id)
            if attempt == 2:
                raise ResponseError(f"create_session: the service returned an unusable session ({', '.join(problems)})",
                                    operation="create_session")
        raise AssertionError("unreachable")

    def refresh(self) -> RunnerScaleSetSession:
        """Renew the session token now (PATCH). Single-flight across threads."""
        return self._refresh(self.generation)

    def _refresh(self, seen_generation: int) -> RunnerScaleSetSession:
        with self._lock:
            if self._generation > seen_generation:
                return self._current
        return self._flight.do(self._refresh_now)

    def _refresh_now(self) -> RunnerScaleSetSession:
        calls = self._calls
        session_id = self.session.session_id
        try:
            response = calls.actions_call("refresh_session", "PATCH", self._path(f"/{session_id}"),
                                          operation_class=OperationClass.SESSION, idempotent=True,
                                          user_agent=self._user_agent)
        except APIError as exc:
            if exc.status == 404 or any(t in exc.type_name for t in _GONE_TYPES):
                gone = exc.recast(SessionNotFoundError, f"session {session_id} of scale set {self.scale_set_id} "
                                                        f"is gone on the server: {exc.message}")
                if self.client.resilience.auto_recover_session:
                    self._log.warning("session %s of scale set %d is gone on the server (%s); creating a new "
                                        "session", session_id, self.scale_set_id, exc.type_name or exc.status)
                    # Should the service still hold it after all (the create is a 409), it is ours to delete.
                    self._stale_session_id = session_id
                    return self._create()
                raise gone from exc
            raise
        session = parse(RunnerScaleSetSession, calls.json(response, "refresh_session"), "refresh_session")
        if self._problems(session):
            self._log.warning("refreshed session is unusable (%s); re-creating", ", ".join(self._problems(session)))
            # The session is still active on the server: without deleting it, the create is a 409 conflict.
            self._delete_quietly(session_id)
            return self._create()
        return self._install(session)

    def recover(self) -> RunnerScaleSetSession:
        """Bring the session back: refresh it, or create a new one when the service lost it."""
        return self.refresh()

    def _recover_401(self, seen_generation: int, build: Callable[[], requests.PreparedRequest]) -> Recovery:
        """401 from the queue: refresh the session once (unless another thread did), re-sign."""
        return Recovery("session", lambda: self._refresh(seen_generation), build)

    # -- queue calls (docs/protocol.md §4) -----------------------------------------------------------
    def get_message(self, last_message_id: int = 0, max_capacity: int = 0) -> RunnerScaleSetMessage | None:
        """Long-poll for the next message after ``last_message_id``; None when the poll ends empty.

        ``max_capacity`` (0 to 2**31-1) is sent as ``X-ScaleSetMaxCapacity`` so the service does
        not assign more jobs than the scale set can run.
        """
        check_int("last_message_id", last_message_id)
        check_int("max_capacity", max_capacity, high=INT32_MAX)
        calls, client = self._calls, self.client

        def build() -> requests.PreparedRequest:
            with self._lock:
                current, generation = self._current, self._generation
            url = current.message_queue_url
            if last_message_id > 0:
                url = with_query(url, lastMessageId=last_message_id)
            prepared = calls.prepare("GET", url, authorization=f"Bearer {current.message_queue_access_token}",
                                     content_type=None, user_agent=self._user_agent,
                                     extra={"Accept": "application/json; api-version=6.0-preview",
                                            "X-ScaleSetMaxCapacity": str(max_capacity)})
            policy = CallPolicy(operation="get_message", operation_class=OperationClass.LONG_POLL, idempotent=True,
                                recovery=self._recover_401(generation, build), queue_operation=True,
                                read_timeout=client.long_poll_timeout,
                                max_body=client.resilience.max_message_bytes)
            return with_policy(prepared, policy)

        prepared = build()
        response = calls.send(prepared)
        if response.status_code == 202:
            return None
        calls.expect(response, (200,))
        data = _wire.loads(response.content, operation="get_message")
        try:
            return parse(RunnerScaleSetMessage, data, "get_message")
        except ResponseError as exc:
            # Keep the id of a message we cannot read, so a listener can set it aside and ack it.
            if isinstance(data, dict):
                ident = data.get("messageId", data.get("messageid"))
                if isinstance(ident, int) and not isinstance(ident, bool) and ident > 0:
                    exc.message_id = ident
            raise

    def delete_message(self, message_id: int) -> None:
        """Acknowledge a message. A 404 (already deleted) counts as done."""
        check_id("message_id", message_id)
        calls = self._calls

        def build() -> requests.PreparedRequest:
            with self._lock:
                current, generation = self._current, self._generation
            url = with_path_suffix(current.message_queue_url, str(message_id))
            prepared = calls.prepare("DELETE", url, authorization=f"Bearer {current.message_queue_access_token}",
                                     user_agent=self._user_agent)
            policy = CallPolicy(operation="delete_message", operation_class=OperationClass.QUEUE_OPS, idempotent=True,
                                json_body=False, recovery=self._recover_401(generation, build), queue_operation=True)
            return with_policy(prepared, policy)

        prepared = build()
        response = calls.send(prepared)
        if response.status_code in (204, 404):
            return
        calls.expect(response, (204,))

    def acquire_jobs(self, request_ids: list[int]) -> list[int]:
        """Acquire jobs by ``runner_request_id``; returns the ids actually acquired (maybe fewer)."""
        ids = [check_id("request id", i) for i in request_ids]
        if not ids:
            return []
        calls = self._calls
        with self._lock:
            generation = self._generation

        def token() -> str:
            with self._lock:
                return self._current.message_queue_access_token

        response = calls.actions_call("acquire_jobs", "POST",
                                      f"_apis/runtime/runnerscalesets/{self.scale_set_id}/acquirejobs",
                                      body=ids, idempotent=False, operation_class=OperationClass.QUEUE_OPS,
                                      bearer=token,
                                      renew=lambda: self._refresh(generation), queue_operation=True,
                                      user_agent=self._user_agent)
        data = _wire.lower_keys(calls.json(response, "acquire_jobs"), "acquire_jobs")
        values = data.get("value") or []
        if not isinstance(values, list):
            raise ResponseError("acquire_jobs: value is not a list", operation="acquire_jobs")
        return [_wire.get_int({"v": v}, "v", "acquire_jobs.value") for v in values]

    # -- lifecycle ---------------------------------------------------------------------------
    def _delete_quietly(self, session_id: str) -> bool:
        try:
            self._calls.actions_call("delete_session", "DELETE", self._path(f"/{session_id}"), expected=(204,),
                                     operation_class=OperationClass.SESSION, user_agent=self._user_agent)
            return True
        except APIError as exc:
            if exc.status in (400, 404) or "SessionExpired" in exc.type_name:
                return True  # already gone
            self._log.warning("could not delete session %s: %s", session_id, exc)
            return False
        except Exception as exc:  # best effort: a close must never raise
            self._log.warning("could not delete session %s: %s", session_id, exc)
            return False

    def close(self) -> None:
        """Delete the server session, best effort (an expired session counts as deleted)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session_id = self._current.session_id
        self._delete_quietly(session_id)
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> MessageSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MessageSession(scale_set_id={self.scale_set_id}, session_id={self.session.session_id!r})"
