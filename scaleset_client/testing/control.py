"""A small HTTP control API for a ``FakeActionsService``, so tests in another process (the CLI,
a scaler written in another language, an operator rehearsing an outage) can drive the fake.

All bodies are JSON; every answer is JSON. Bound to loopback by default; it has no
authentication, so never expose it.

====== ======================================== ==================================================
method path                                     what
====== ======================================== ==================================================
GET    /                                        config_url, token, the servers' URLs
POST   /faults                                  ``{"target": "get_message", "fault": {...}, "times": 1,
                                                "always": false}``; fault: ``{"kind": "respond",
                                                "status": 503, "headers": {}, "body": ""}``, or kind
                                                ``drop``, ``reset``, ``hang`` (``seconds``), ``delay``
                                                (``seconds``), ``garbage``, ``bom``, ``truncated``
DELETE /faults[?target=T]                       clear injected faults (all, or one target)
POST   /servers/{github|actions|broker}/stop    stop one server (connections refused)
POST   /servers/{github|actions|broker}/start   start it again on the same port
POST   /scale-sets/{id}/jobs                    queue a job (``{"labels": [...]}``): ``{"request_id": N}``
POST   /jobs/{request_id}/start                 the job starts (``{"runner_name": "..."}``)
POST   /jobs/{request_id}/complete              the job ends (``{"result": "Succeeded"}``)
POST   /scale-sets/{id}/messages                queue any message (``{"jobs": [...], "statistics": {...}}``)
GET    /scale-sets/{id}/unacked                 ids of messages not yet acknowledged
POST   /scale-sets/{id}/evict-session           the service drops the scale set's session
POST   /expire-queue-tokens                     every queue token expires
GET    /requests[?operation=O&server=S]         the request log (method, path, operation, status kind)
DELETE /requests                                clear the request log
====== ======================================== ==================================================
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._faults import Fault
from .fake_service import FakeActionsService

__all__ = ["ControlServer", "fault_from_json"]

_SERVERS = ("github", "actions", "broker")


def fault_from_json(spec: Any) -> Fault:
    """Build a ``Fault`` from its JSON description; ``ValueError`` says what is wrong."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ValueError('a fault is an object with a "kind"')
    kind = spec["kind"]
    seconds = float(spec.get("seconds", 0.0))
    if kind == "respond":
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict):
            raise ValueError("headers must be an object")
        body = spec.get("json")
        if body is not None:
            return Fault.respond(int(spec.get("status", 200)), json_body=body, headers=headers)
        return Fault.respond(int(spec.get("status", 200)), str(spec.get("body", "")), headers=headers)
    simple = {"drop": Fault.drop, "reset": Fault.reset, "garbage": Fault.garbage, "bom": Fault.bom,
              "truncated": Fault.truncated}
    if kind in simple:
        return simple[kind]()
    if kind == "hang":
        return Fault.hang(seconds or 3600.0)
    if kind == "delay":
        return Fault.delay(seconds)
    if kind == "error":
        return Fault.error(int(spec.get("status", 500)), str(spec.get("type_name", "")),
                           str(spec.get("message", "injected error")))
    raise ValueError(f"unknown fault kind {kind!r}")


class ControlServer:
    """Serves the control API for ``fake`` on ``host:port`` (0: any free port) from a daemon thread."""

    def __init__(self, fake: FakeActionsService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        control = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                    status, answer = control.handle(self.command, self.path, body)
                except (ValueError, KeyError, TypeError) as exc:
                    status, answer = 400, {"error": f"{type(exc).__name__}: {exc}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-control", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The control API's base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving (the fake itself is closed by its owner)."""
        self._server.shutdown()
        self._server.server_close()

    def describe(self) -> dict[str, Any]:
        """What a client needs: the configuration URL, the token and where each server listens."""
        fake = self.fake
        return {"config_url": fake.config_url, "token": fake.token, "control_url": self.url,
                "servers": {name: fake.servers[name].url for name in _SERVERS}}

    def handle(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        """Route one request: (status, JSON answer)."""
        fake = self.fake
        parts = urlsplit(target)
        path, query = parts.path.rstrip("/") or "/", dict(parse_qsl(parts.query))
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if (method, path) == ("GET", "/"):
            return 200, self.describe()
        if path == "/faults" and method == "POST":
            fault = fault_from_json(body.get("fault"))
            target_name = str(body["target"])
            if body.get("always"):
                fake.inject_always(target_name, fault)
            else:
                fake.inject(target_name, fault, times=int(body.get("times", 1)))
            return 200, {"injected": target_name}
        if path == "/faults" and method == "DELETE":
            fake.clear_faults(query.get("target"))
            fake.release_hangs()
            return 200, {"cleared": query.get("target", "all")}
        match = re.fullmatch(r"/servers/(\w+)/(stop|start)", path)
        if match and method == "POST":
            name, action = match.groups()
            if name not in _SERVERS:
                return 404, {"error": f"no server {name!r}; one of {', '.join(_SERVERS)}"}
            fake.stop(name) if action == "stop" else fake.start_server(name)
            return 200, {name: "stopped" if action == "stop" else "started"}
        match = re.fullmatch(r"/scale-sets/(\d+)/(jobs|messages|unacked|evict-session)", path)
        if match:
            scale_set_id, what = int(match.group(1)), match.group(2)
            if what == "jobs" and method == "POST":
                return 200, {"request_id": fake.queue_job(scale_set_id, body.get("labels"))}
            if what == "messages" and method == "POST":
                mid = fake.push_message(scale_set_id, list(body.get("jobs") or []),
                                        statistics=body.get("statistics", "auto"))
                return 200, {"message_id": mid}
            if what == "unacked" and method == "GET":
                return 200, {"unacked": fake.unacked(scale_set_id)}
            if what == "evict-session" and method == "POST":
                fake.evict_session(scale_set_id)
                return 200, {"evicted": scale_set_id}
        match = re.fullmatch(r"/jobs/(\d+)/(start|complete)", path)
        if match and method == "POST":
            request_id = int(match.group(1))
            if match.group(2) == "start":
                fake.start_job(request_id, body.get("runner_name"))
            else:
                fake.complete_job(request_id, str(body.get("result", "Succeeded")))
            return 200, {"request_id": request_id}
        if (method, path) == ("POST", "/expire-queue-tokens"):
            fake.expire_queue_tokens()
            return 200, {"expired": True}
        if path == "/requests" and method == "GET":
            logged = fake.requests(query.get("operation"), query.get("server"))
            return 200, {"requests": [{"server": r.server, "operation": r.operation, "method": r.method,
                                       "path": r.path, "query": r.query, "fault": r.fault} for r in logged]}
        if path == "/requests" and method == "DELETE":
            fake.clear_log()
            return 200, {"cleared": True}
        return 404, {"error": f"no route {method} {path}"}
