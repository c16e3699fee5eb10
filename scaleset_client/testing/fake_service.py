"""``FakeActionsService``: the runner scale set protocol on three real loopback servers.

``github`` (the REST API, GHES-style under ``/api/v3``), ``actions`` (the Actions service
under a tenant prefix) and ``broker`` (the message queue) each listen on their own port, so
each is its own origin with its own breakers. The fake checks what the real service checks
(bearer tokens, RemoteAuth, ``api-version``, JWT claims of App tokens, one session per scale
set) and lets a test break any of it (``inject``, ``stop``/``start``, ``evict_session``,
``expire_*``, ``delete_scale_set``). Every request is logged (``requests``, ``count``) so tests
assert on what reached the server, and ``connections`` counts TCP connections per server.

Use it to test a scaler offline::

    with FakeActionsService() as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="linux"))
        fake.queue_job(scale_set.id)
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._clock import Clock, SystemClock
from ._admin_side import ACTIONS_TYPE, AdminSide
from ._faults import Fault, FaultBook
from ._github_side import GitHubSide
from ._jobs_side import FigureSent, JobRecord, JobsSide, MessageRecord, SessionRecord
from ._servers import LoggedRequest, LoopbackServer, write_fault, write_response
from ._strict import form_problem
from ._wire_in import BodyError, Headers, accepts_gzip, compress, read_body

__all__ = ["FakeActionsService", "Fault", "FigureSent", "LoggedRequest"]

BOM = b"\xef\xbb\xbf"
_SESSION_GONE = "GitHub.Actions.Runtime.WebApi.RunnerAdminException, GitHub.Actions.Runtime.WebApi"


class FakeActionsService(GitHubSide, JobsSide, AdminSide):
    """A fake of GitHub's REST API, the Actions service and the message broker on loopback.

    ``long_poll_hold`` is how long an empty poll is held before 202 (real: ~50 s);
    ``admin_token_ttl`` and ``queue_token_ttl`` are token lifetimes in seconds of ``clock``
    wall time (pass the client's ``FakeClock`` to expire tokens by advancing it);
    ``ssl_context`` (a server context) serves all three over HTTPS; ``max_log`` keeps only the
    newest requests in the log (for soak runs).

    ``strict``: every request the service would refuse for its form (see ``_strict.py``) is
    recorded in ``violations``, and ``close()`` raises ``AssertionError`` listing them, so the
    test that sent it fails. ``session_idle_timeout``: a session nobody polls, refreshes or acks
    for that many seconds (``clock`` wall time) expires server side, as after a listener died
    without deleting it; None keeps sessions until deleted. The real duration is unconfirmed.
    """

    def __init__(
        self,
        *,
        org: str = "fake-org",
        token: str = "ghp_fakeFAKEfake0123456789abcdefghijklmn",
        long_poll_hold: float = 0.3,
        admin_token_ttl: float = 600.0,
        queue_token_ttl: float = 3600.0,
        clock: Clock | None = None,
        tenant: str = "tenant/123",
        ssl_context: ssl.SSLContext | None = None,
        max_log: int | None = None,
        strict: bool = False,
        session_idle_timeout: float | None = None,
    ) -> None:
        self.org = org
        self.token = token
        self.long_poll_hold = long_poll_hold
        self.admin_token_ttl = admin_token_ttl
        self.queue_token_ttl = queue_token_ttl
        self.clock: Clock = clock or SystemClock()
        self.tenant = tenant.strip("/")
        self.strict = strict
        self.session_idle_timeout = session_idle_timeout
        self._violations: list[str] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        self._faults = FaultBook()
        self._log: deque[LoggedRequest] = deque(maxlen=max_log)
        self._totals: Counter[str] = Counter()
        self._secret = secrets.token_bytes(32)
        self._apps: dict[str, Any] = {}  # client_id -> public key
        self._installation_tokens: dict[str, float] = {}
        self._registration_tokens: dict[str, float] = {}
        self._admin_tokens: dict[str, float] = {}
        self._scale_sets: dict[int, dict[str, Any]] = {}
        self._groups: dict[str, dict[str, Any]] = {"default": {"id": 1, "name": "Default", "size": 0,
                                                               "isDefaultGroup": True}}
        self._runners: dict[int, dict[str, Any]] = {}
        self._sessions: dict[int, SessionRecord] = {}
        self._queue_tokens: dict[str, SessionRecord] = {}
        self._messages: dict[int, list[MessageRecord]] = {}
        self._jobs: dict[int, JobRecord] = {}
        self._ids = itertools.count(1)
        self._runner_ids = itertools.count(1001)
        self._message_ids = itertools.count(100_000_001)
        self._stamps = itertools.count(1)
        self._figures: dict[int, list[FigureSent]] = {}
        self._stated: dict[int, dict[str, int]] = {}
        self._request_ids = itertools.count(104_857_601)
        self.capacities: deque[int] = deque(maxlen=10_000)
        self.servers = {name: LoopbackServer(name, self._dispatch, ssl_context, wall=lambda: self.clock.wall())
                        for name in ("github", "actions", "broker")}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeActionsService:
        """Start the three servers (``with`` does this for you)."""
        for server in self.servers.values():
            server.start()
        self._started = True
        return self

    def close(self) -> None:
        """Stop the servers; in ``strict`` mode, raise ``AssertionError`` if any request broke the
        protocol (each is reported once)."""
        self._release.set()
        with self._cond:
            self._cond.notify_all()
        for server in self.servers.values():
            server.stop()
        with self._lock:
            found, self._violations = self._violations, []
        if self.strict and found:
            raise AssertionError("requests the service would refuse (strict FakeActionsService):\n  "
                                 + "\n  ".join(found))

    @property
    def violations(self) -> list[str]:
        """Requests refused for their form so far (recorded in every mode; raised on in strict)."""
        with self._lock:
            return list(self._violations)

    def take_violations(self) -> list[str]:
        """Return and forget the violations so far: for tests that send bad requests on purpose."""
        with self._lock:
            found, self._violations = self._violations, []
            return found

    def __enter__(self) -> FakeActionsService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self, server: str) -> None:
        """Take one server down: connections are refused until ``start_server``."""
        self.servers[server].stop()

    def start_server(self, server: str) -> None:
        """Bring a stopped server back on the same port."""
        self.servers[server].start()

    def release_hangs(self) -> None:
        """End every ``Fault.hang`` in progress (and any that start later)."""
        self._release.set()

    def cut_connections(self, server: str) -> int:
        """Close every open connection of ``server`` from the server side (idle keep-alives too)."""
        return self.servers[server].cut_connections()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def config_url(self) -> str:
        """The configuration URL to hand to a Client (a GHES-style org URL)."""
        return f"{self.servers['github'].url}/{self.org}"

    @property
    def actions_url(self) -> str:
        """The Actions service base URL, tenant prefix included."""
        return f"{self.servers['actions'].url}/{self.tenant}/"

    @property
    def queue_url(self) -> str:
        """The broker's message queue URL."""
        return f"{self.servers['broker'].url}/scalesets/message"

    def connections(self, server: str) -> int:
        """TCP connections accepted by ``server`` since the start."""
        return self.servers[server].accepted

    # -- faults and the log ------------------------------------------------------------------
    def inject(self, target: str, *faults: Fault, times: int = 1) -> None:
        """Queue faults for the next requests of an operation ("get_message") or a server ("broker")."""
        self._faults.add(target, faults, times)

    def inject_always(self, target: str, fault: Fault) -> None:
        """Apply ``fault`` to every request of ``target`` until ``clear_faults``."""
        self._faults.always(target, fault)

    def clear_faults(self, target: str | None = None) -> None:
        """Drop injected faults, for one target or all."""
        self._faults.clear(target)

    def requests(self, operation: str | None = None, server: str | None = None) -> list[LoggedRequest]:
        """The logged requests, optionally for one operation or server."""
        with self._lock:
            return [r for r in self._log if (operation is None or r.operation == operation)
                    and (server is None or r.server == server)]

    def count(self, operation: str | None = None, server: str | None = None) -> int:
        """How many logged requests match (kept log only; see ``total``)."""
        return len(self.requests(operation, server))

    def total(self, operation: str) -> int:
        """Requests of ``operation`` since the start (not capped by ``max_log``, not cleared)."""
        with self._lock:
            return self._totals[operation]

    def clear_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    # -- state for tests ---------------------------------------------------------------------
    def add_runner_group(self, name: str, group_id: int | None = None) -> int:
        """Create a runner group; returns its id."""
        with self._lock:
            gid = group_id or (max(g["id"] for g in self._groups.values()) + 1)
            self._groups[name.lower()] = {"id": gid, "name": name, "size": 0, "isDefaultGroup": False}
            return gid

    def scale_set(self, scale_set_id: int) -> dict[str, Any] | None:
        """The stored scale set as wire JSON, or None."""
        with self._lock:
            data = self._scale_sets.get(scale_set_id)
            return dict(data) if data else None

    def session_of(self, scale_set_id: int) -> SessionRecord | None:
        """The scale set's current session, or None."""
        with self._lock:
            return self._sessions.get(scale_set_id)

    def runners(self) -> list[dict[str, Any]]:
        """Every registered runner as wire JSON."""
        with self._lock:
            return [dict(r) for r in self._runners.values()]

    def poll_held_for(self, scale_set_id: int) -> float:
        """Seconds (real time) the scale set's newest long poll has been held so far; 0 when none is."""
        with self._lock:
            session = self._sessions.get(scale_set_id)
            if session is None or not session.polling:
                return 0.0
            return time.monotonic() - session.poll_since

    def evict_session(self, scale_set_id: int) -> None:
        """Forget the session server side: its token stops working and refresh answers 404."""
        with self._lock:
            session = self._sessions.pop(scale_set_id, None)
            if session:
                self._queue_tokens.pop(session.token, None)

    def expire_queue_tokens(self) -> None:
        """Every message queue token expires now (the next poll gets 401)."""
        with self._lock:
            for session in self._sessions.values():
                session.token_expires = self.clock.wall() - 1

    def expire_admin_tokens(self) -> None:
        """Every admin token expires now (the next call gets 401)."""
        with self._lock:
            for tok in self._admin_tokens:
                self._admin_tokens[tok] = self.clock.wall() - 1

    def delete_scale_set(self, scale_set_id: int) -> None:
        """Delete a scale set server side (its session and messages go with it)."""
        with self._lock:
            self._scale_sets.pop(scale_set_id, None)
            self.evict_session(scale_set_id)
            self._messages.pop(scale_set_id, None)

    # -- dispatch ----------------------------------------------------------------------------
    _ROUTES: tuple[tuple[str, str, str, str], ...] = (
        ("github", "POST", r"/api/v3/app/installations/(?P<inst>\d+)/access_tokens", "installation_token"),
        ("github", "POST", r"/api/v3/(?P<scope>orgs/[^/]+|repos/[^/]+/[^/]+|enterprises/[^/]+)"
                           r"/actions/runners/registration-token", "registration_token"),
        ("github", "POST", r"/api/v3/actions/runner-registration", "runner_registration"),
        ("actions", "GET", r"_apis/runtime/runnerscalesets", "get_runner_scale_set"),
        ("actions", "POST", r"_apis/runtime/runnerscalesets", "create_runner_scale_set"),
        ("actions", "GET", r"_apis/runtime/runnerscalesets/(?P<id>\d+)", "get_runner_scale_set_by_id"),
        ("actions", "PATCH", r"_apis/runtime/runnerscalesets/(?P<id>\d+)", "update_runner_scale_set"),
        ("actions", "DELETE", r"_apis/runtime/runnerscalesets/(?P<id>\d+)", "delete_runner_scale_set"),
        ("actions", "GET", r"_apis/runtime/runnergroups/", "get_runner_group_by_name"),
        ("actions", "POST", r"_apis/runtime/runnerscalesets/(?P<id>\d+)/generatejitconfig",
         "generate_jit_runner_config"),
        ("actions", "GET", r"_apis/distributedtask/pools/0/agents/(?P<rid>\d+)", "get_runner"),
        ("actions", "DELETE", r"_apis/distributedtask/pools/0/agents/(?P<rid>\d+)", "remove_runner"),
        ("actions", "GET", r"_apis/distributedtask/pools/0/agents", "get_runner_by_name"),
        ("actions", "POST", r"_apis/runtime/runnerscalesets/(?P<id>\d+)/sessions", "create_session"),
        ("actions", "PATCH", r"_apis/runtime/runnerscalesets/(?P<id>\d+)/sessions/(?P<sid>[^/]+)",
         "refresh_session"),
        ("actions", "DELETE", r"_apis/runtime/runnerscalesets/(?P<id>\d+)/sessions/(?P<sid>[^/]+)",
         "delete_session"),
        ("actions", "POST", r"_apis/runtime/runnerscalesets/(?P<id>\d+)/acquirejobs", "acquire_jobs"),
        ("broker", "GET", r"/scalesets/message", "get_message"),
        ("broker", "DELETE", r"/scalesets/message/(?P<mid>\d+)", "delete_message"),
    )

    # A look-up by name without the name is a listing (actions/scaleset PR #92 for scale sets;
    # the runner group listing is ASSUMED to follow the same pattern, upstream PR #125).
    _LISTINGS: tuple[tuple[str, str, str], ...] = (
        ("get_runner_scale_set", "name", "list_runner_scale_sets"),
        ("get_runner_group_by_name", "groupName", "list_runner_groups"),
    )

    def _route(self, server: str, method: str, path: str, query: str = "") -> tuple[str, dict[str, str]]:
        if server == "actions":
            prefix = f"/{self.tenant}/"
            if not path.startswith(prefix):
                return "unknown", {}
            path = path[len(prefix):]
        for srv, verb, pattern, operation in self._ROUTES:
            if srv == server and verb == method:
                match = re.fullmatch(pattern, path)
                if match:
                    for by_name, key, listing in self._LISTINGS:
                        if operation == by_name and key not in dict(parse_qsl(query)):
                            operation = listing
                    return operation, match.groupdict()
        return "unknown", {}

    def _dispatch(self, server: str, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        headers = Headers.of(handler.headers.items())
        try:
            body = read_body(handler, headers)
        except BodyError as exc:
            handler.close_connection = True
            write_response(handler, 400, str(exc).encode(), {"Content-Type": "text/plain"})
            return
        operation, params = self._route(server, handler.command, parts.path, parts.query)
        fault = self._faults.next(operation, server)
        entry = LoggedRequest(server, operation, handler.command, parts.path, dict(parse_qsl(parts.query)),
                              headers, body, self.clock.monotonic(), fault.kind if fault else "")
        with self._lock:
            group_ids = {g["id"] for g in self._groups.values()}
        problem = form_problem(server, operation, handler.command, entry.query, headers, body, group_ids)
        with self._lock:
            self._log.append(entry)
            self._totals[operation] += 1
            if problem is not None:
                self._violations.append(f"{handler.command} {parts.path} ({operation}): {problem[0]} {problem[1]}")
        if fault is not None and fault.kind not in ("delay", "bom"):
            write_fault(handler, fault, self._release)
            return
        if fault is not None and fault.kind == "delay":
            self._release.wait(fault.seconds)
        if problem is not None:
            status, payload, extra = problem[0], problem[1].encode(), {"Content-Type": "text/plain; charset=utf-8"}
        else:
            try:
                status, payload, extra = self._answer(operation, params, entry)
            except Exception as exc:  # a bug in the fake must answer, not hang the client
                status, payload, extra = 500, json.dumps({"message": f"fake error: {exc!r}"}).encode(), {}
        if fault is not None and fault.kind == "bom" and payload:
            payload = BOM + payload
        if payload and accepts_gzip(headers):
            # Only when asked, as HTTP servers do. ASSUMPTION: every GitHub origin compresses.
            payload = compress(payload)
            extra = {**extra, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        write_response(handler, status, payload, extra)

    def _answer(self, operation: str, params: dict[str, str], req: LoggedRequest
                ) -> tuple[int, bytes, dict[str, str]]:
        handler: Callable[[dict[str, str], LoggedRequest], tuple[int, Any]] | None = getattr(
            self, f"_op_{operation}", None)
        if handler is None:
            return 404, json.dumps({"message": "Not Found"}).encode(), {}
        if req.server == "actions" and operation != "acquire_jobs" and not self._admin_ok(req):
            return 401, b"", {}
        status, data = handler(params, req)
        headers = {"ActivityId": str(uuid.uuid4())} if req.server == "actions" else {
            "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper()}
        if isinstance(data, (bytes, bytearray)):
            if data:
                headers["Content-Type"] = "text/plain; charset=utf-8"
            return status, bytes(data), headers
        return status, (b"" if data is None and status in (202, 204) else json.dumps(data).encode()), headers

    def _admin_ok(self, req: LoggedRequest) -> bool:
        with self._lock:
            exp = self._admin_tokens.get(self._bearer(req))
            return exp is not None and exp > self.clock.wall()

    # -- sessions ----------------------------------------------------------------------------
    def _session_json(self, session: SessionRecord, source: str) -> dict[str, Any]:
        """The session as sent, with the statistics of this moment (protocol §3.9)."""
        stamp, stats = self._stamped_statistics(session.scale_set_id)
        self._sent(session.scale_set_id, stamp, stats, source)
        return {"sessionId": session.session_id, "ownerName": session.owner,
                "runnerScaleSet": self._scale_set_now(session.scale_set_id),
                "messageQueueUrl": self.queue_url, "messageQueueAccessToken": session.token,
                "statistics": stats}

    def _new_queue_token(self, session: SessionRecord) -> None:
        self._queue_tokens.pop(session.token, None)
        session.token = self._jwt({"sid": session.session_id, "n": uuid.uuid4().hex})
        session.token_expires = self.clock.wall() + self.queue_token_ttl
        self._queue_tokens[session.token] = session

    def _expire_idle_sessions(self) -> None:
        """Forget sessions nobody used for ``session_idle_timeout`` (an abandoned listener's)."""
        if self.session_idle_timeout is None:
            return
        horizon = self.clock.wall() - self.session_idle_timeout
        with self._lock:
            for scale_set_id, session in list(self._sessions.items()):
                if session.last_seen < horizon and not session.polling:
                    self.evict_session(scale_set_id)

    def _op_create_session(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        sid = int(params["id"])
        body = req.json() or {}
        self._expire_idle_sessions()
        with self._lock:
            if sid not in self._scale_sets:
                return self._error(404, ACTIONS_TYPE.format("RunnerScaleSetNotFoundException"),
                                   f"Runner scale set {sid} not found.")
            if sid in self._sessions:
                return self._error(409, ACTIONS_TYPE.format("RunnerScaleSetSessionConflictException"),
                                   f"The actions runner scaleset {self._scale_sets[sid]['name']} already has an "
                                   "active session.")
            session = SessionRecord(str(uuid.uuid4()), str(body.get("ownerName", "")), sid, "", 0.0,
                               last_seen=self.clock.wall())
            self._new_queue_token(session)
            self._sessions[sid] = session
            return 200, self._session_json(session, "create_session")

    def _op_refresh_session(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        self._expire_idle_sessions()
        with self._lock:
            session = self._sessions.get(int(params["id"]))
            if session is None or session.session_id != params["sid"]:
                return self._error(404, _SESSION_GONE,
                                   "runner referenced a session ID that doesn't exist in redis")
            session.last_seen = self.clock.wall()
            self._new_queue_token(session)
            return 200, self._session_json(session, "refresh_session")

    def _op_delete_session(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        self._expire_idle_sessions()
        with self._lock:
            session = self._sessions.get(int(params["id"]))
            if session is None or session.session_id != params["sid"]:
                return self._error(400, ACTIONS_TYPE.format("RunnerScaleSetSessionExpiredException"),
                                   f"The session identifier {params['sid']} is not valid.")
            self.evict_session(int(params["id"]))
        return 204, None

    def _queue_session(self, req: LoggedRequest) -> SessionRecord | None:
        self._expire_idle_sessions()
        with self._lock:
            session = self._queue_tokens.get(self._bearer(req))
            if session is None or session.token_expires <= self.clock.wall():
                return None
            session.last_seen = self.clock.wall()
            return session

    def _op_acquire_jobs(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        session = self._queue_session(req)
        if session is None or session.scale_set_id != int(params["id"]):
            return 401, b""
        ids = req.json()
        acquired = []
        with self._lock:
            for rid in ids:
                job = self._jobs.get(rid)
                if job is not None and job.state == "available" and job.scale_set_id == session.scale_set_id:
                    job.state = "acquired"
                    self._job_changed(job.scale_set_id)
                    acquired.append(rid)
            if acquired:  # as the service does: the assignment arrives as a message with fresh statistics
                self.push_message(session.scale_set_id,
                                  [self._job_fields(self._jobs[rid], "JobAssigned") for rid in acquired])
        return 200, {"count": len(acquired), "value": acquired}

    # -- the queue ---------------------------------------------------------------------------
    def _op_get_message(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        capacity = req.headers["X-ScaleSetMaxCapacity"]  # checked by _strict.form_problem
        session = self._queue_session(req)
        if session is None:
            return 401, b""
        self.capacities.append(int(capacity))
        last = int(req.query.get("lastMessageId", "0") or 0)
        deadline = time.monotonic() + self.long_poll_hold
        with self._cond:
            session.polling += 1
            session.poll_since = time.monotonic()
            try:
                return self._hold_poll(session, last, deadline)
            finally:
                session.polling -= 1
                session.last_seen = self.clock.wall()

    def _hold_poll(self, session: SessionRecord, last: int, deadline: float) -> tuple[int, Any]:
        with self._cond:
            while True:
                pending = [m for m in self._messages.get(session.scale_set_id, [])
                           if not m.deleted and m.message_id > last]
                if pending:
                    message = pending[0]
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self._release.is_set() or self._sessions.get(session.scale_set_id) is not session:
                    return 202, None
                self._cond.wait(left)
        self._sent(session.scale_set_id, message.stamp, message.statistics, f"message {message.message_id}")
        body = message.raw_body if message.raw_body is not None else json.dumps(message.jobs)
        envelope: dict[str, Any] = {"messageId": message.message_id, "messageType": message.message_type,
                                    "body": body}
        if message.statistics is not None:
            envelope["statistics"] = message.statistics
        return 200, envelope

    def _op_delete_message(self, params: dict[str, str], req: LoggedRequest) -> tuple[int, Any]:
        session = self._queue_session(req)
        if session is None:
            return 401, b""
        with self._lock:
            queue = self._messages.get(session.scale_set_id, [])
            for index, message in enumerate(queue):
                if message.message_id == int(params["mid"]) and not message.deleted:
                    message.deleted = True
                    del queue[index]  # acknowledged messages are gone for good
                    return 204, None
        # ASSUMPTION: what the broker answers for an unknown or already deleted message id is
        # unknown (the reference's test double answers 200 "null", which the client refuses).
        return 404, {"message": "message not found"}
