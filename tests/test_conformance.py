"""The conformance suite: tests/conformance/exchanges.json drives two checks.

1. The client through a recording server: each exchange's canned answer is played by the fake
   (``Fault.respond``, which bypasses its logic), the request the client sent is compared with
   the one the protocol prescribes (headers case-insensitively), and the client's result or
   error class with the expected one.
2. The fake answering each exchange: the same request, sent raw the way the Go reference sends
   it (canonical header casing, chunked bodies, gzip accepted), must get the service's answer.

``test_every_difference_has_a_reason`` keeps the table honest; ``conformance_table`` prints it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

DATA = json.loads((Path(__file__).parent / "conformance" / "exchanges.json").read_text())
CASES: list[dict[str, Any]] = DATA["cases"]
CLIENT_CASES = [c for c in CASES if c.get("op")]
FAKE_CASES = [c for c in CASES if c.get("fake")]
QUEUE_OPS = {"get_message", "delete_message", "acquire_jobs"}


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in cases]


def test_every_difference_has_a_reason() -> None:
    seen = set()
    for case in CASES:
        assert case["id"] not in seen, f"duplicate case id {case['id']}"
        seen.add(case["id"])
        assert case.get("source"), f"{case['id']}: where does this fact come from?"
        ref = case["reference"]
        assert ref == "agree" or (isinstance(ref, dict) and len(ref.get("differs", "")) > 20), case["id"]
        if case.get("fake", {}).get("assumption") is not None:
            assert case["fake"]["assumption"].strip(), case["id"]


# -- 1. the client through a recording server ----------------------------------------------
@pytest.fixture
def recorder(clock: FakeClock) -> Iterator[tuple[FakeActionsService, sc.Client]]:
    with FakeActionsService(clock=clock, long_poll_hold=0.05, strict=True) as fake:
        client = sc.Client(fake.config_url, token=fake.token, clock=clock, timeout=(2.0, 5.0), long_poll_timeout=5.0,
                           resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2)))
        yield fake, client
        client.close()


def _answer(spec: dict[str, Any]) -> Fault:
    headers = dict(spec.get("headers", {}))
    if "body" in spec:
        return Fault.respond(spec["status"], json_body=spec["body"], headers=headers)
    if "text" in spec:
        return Fault.respond(spec["status"], spec["text"].encode("utf-8"), headers=headers,
                             content_type=spec.get("content_type"))
    return Fault.respond(spec["status"], headers=headers)


def _call(client: sc.Client, session: sc.MessageSession | None, case: dict[str, Any], message_id: int) -> Any:
    op, args = case["op"], dict(case.get("args", {}))
    args = {k: (message_id if v == "$message" else v) for k, v in args.items()}
    if op in ("create_runner_scale_set", "update_runner_scale_set"):
        scale_set_id = args.pop("scale_set_id", None)
        if "labels" in args:
            args["labels"] = [sc.Label(**lb) for lb in args["labels"]]
        model = sc.RunnerScaleSet(**args)
        return client.create_runner_scale_set(model) if scale_set_id is None else \
            client.update_runner_scale_set(scale_set_id, model)
    if op == "generate_jit_runner_config":
        return client.generate_jit_runner_config(sc.JitRunnerSetting(args["name"]), args["scale_set_id"])
    if op == "create_session":
        return client.message_session(args["scale_set_id"], args["owner"]).session
    if op in QUEUE_OPS:
        assert session is not None
        return getattr(session, op)(**args)
    return getattr(client, op)(**args)


def _matches(value: Any, expected: Any) -> bool:
    if isinstance(expected, list) and isinstance(value, list):  # a listing: item by item, in order
        return len(value) == len(expected) and all(_matches(v, e) for v, e in zip(value, expected, strict=True))
    if isinstance(expected, dict):
        return all(_matches(getattr(value, k) if not isinstance(value, dict) else value[k], v)
                   for k, v in expected.items())
    return bool(value == expected)


def _check_request(req: Any, spec: dict[str, Any], message_id: int) -> None:
    assert req.method == spec["method"]
    assert req.path.endswith(spec["path"].replace("$message", str(message_id)))
    if "query" in spec:
        assert req.query == spec["query"]
    for name, value in spec.get("headers", {}).items():
        assert name in req.headers, f"missing header {name}"  # the log's lookup is case-insensitive
        got = req.headers[name]
        ok = got.startswith(value[:-1]) and len(got) >= len(value) if value.endswith("*") else got == value
        assert ok, (name, got)
    for name in spec.get("headers_absent", []):
        assert name not in req.headers, f"header {name} must not be sent"
    if "body" in spec:
        assert req.json() == spec["body"]
    for key in spec.get("body_absent", []):
        assert key not in (req.json() or {}), f"{key} must not be sent"


@pytest.mark.parametrize("case", CLIENT_CASES, ids=_ids(CLIENT_CASES))
def test_client_exchange(case: dict[str, Any], recorder: tuple[FakeActionsService, sc.Client]) -> None:
    fake, client = recorder
    session, message_id = None, 0
    if case["op"] in QUEUE_OPS or case["op"] == "create_session":
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="ScaleSet", runner_group_id=1))
        assert scale_set.id == 1
    if case["op"] in QUEUE_OPS:
        session = client.message_session(1, "conformance")
        if case["op"] == "delete_message":
            message_id = fake.push_message(1, [])
    fake.clear_log()
    answer = case["answer"]
    if not answer.get("session"):
        fake.inject(case["op"], _answer(answer), times=answer.get("times", 1))
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(getattr(sc, expect["error"])) as info:
            _call(client, session, case, message_id)
        error = info.value
        if "status" in expect:
            assert getattr(error, "status", None) == expect["status"]
        if "type_name" in expect:
            assert error.type_name == expect["type_name"]  # type: ignore[attr-defined]
        for text in expect.get("contains", []):
            assert text in str(error)
    else:
        result = _call(client, session, case, message_id)
        if expect.get("none"):
            assert result is None
        else:
            assert _matches(result, expect["result"]), result
    sent = fake.requests(case["op"])
    assert len(sent) == case.get("attempts", 1)
    if case.get("then_refresh"):
        assert fake.count("refresh_session") == case["then_refresh"]
    if sent and "request" in case:
        _check_request(sent[0], case["request"], message_id)
    if session is not None:
        session.close()


# -- 2. the fake answering each exchange ---------------------------------------------------
_TEMPLATES: dict[str, tuple[str, str]] = {
    "get_runner_scale_set": ("GET", "_apis/runtime/runnerscalesets"),
    "get_runner_scale_set_by_id": ("GET", "_apis/runtime/runnerscalesets/{scale_set_id}"),
    "delete_runner_scale_set": ("DELETE", "_apis/runtime/runnerscalesets/{scale_set_id}"),
    "get_runner_group_by_name": ("GET", "_apis/runtime/runnergroups/"),
    "list_runner_scale_sets": ("GET", "_apis/runtime/runnerscalesets"),
    "list_runner_groups": ("GET", "_apis/runtime/runnergroups/"),
    "generate_jit_runner_config": ("POST", "_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig"),
    "get_runner": ("GET", "_apis/distributedtask/pools/0/agents/{runner_id}"),
    "get_runner_by_name": ("GET", "_apis/distributedtask/pools/0/agents"),
    "create_session": ("POST", "_apis/runtime/runnerscalesets/{scale_set_id}/sessions"),
    "get_message": ("GET", "/scalesets/message"),
}


def _raw_request(case: dict[str, Any]) -> dict[str, Any]:
    """The request of a case; cases that only give the call take the operation's template."""
    spec = dict(case.get("request") or {})
    if "method" not in spec:
        method, path = _TEMPLATES[case["op"]]
        spec.update(method=method, path=path)
        args = case.get("args", {})
        spec.setdefault("query", {"get_runner_scale_set": {"runnerGroupId": "1", "name": "ScaleSet"},
                                  "list_runner_scale_sets": {"runnerGroupId": "1"},
                                  "get_runner_group_by_name": {"groupName": "no-such-group"},
                                  "get_runner_by_name": {"agentName": "nobody"}}.get(case["op"], {}))
        if case["op"] == "generate_jit_runner_config":
            spec["body"] = {"name": args["name"], "workFolder": ""}
        if case["op"] == "create_session":
            spec["body"] = {"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "conformance"}
    return spec


class _Service:
    """A raw HTTP client of the fake that speaks like the Go reference (no scaleset_client)."""

    def __init__(self, fake: FakeActionsService) -> None:
        self.fake = fake
        self.http = requests.Session()
        api = f"{fake.servers['github'].url}/api/v3"
        reg = self.http.post(f"{api}/orgs/{fake.org}/actions/runners/registration-token",
                             headers={"Authorization": f"Bearer {fake.token}"}, timeout=5).json()
        admin = self.http.post(f"{api}/actions/runner-registration", data=json.dumps(
            {"url": fake.config_url, "runner_event": "register"}) + "\n",
            headers={"Authorization": f"RemoteAuth {reg['token']}", "Content-Type": "application/json"},
            timeout=5).json()
        self.svc, self.admin = admin["url"], admin["token"]
        self.queue_token = ""
        self.ids: dict[str, Any] = {"scale_set_id": 1, "runner_id": 1, "unknown_session":
                                    "3f6c2b1e-8d4a-4f7e-9c21-5b0a7d9e6f10", "message": 999}

    def send(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        path = path.replace("$message", str(self.ids["message"])).format(**self.ids)
        broker = path.startswith("/scalesets/")
        url = f"{self.fake.servers['broker'].url}{path}" if broker else f"{self.svc}{path}"
        params = dict(query or {})
        if not broker:
            params.setdefault("api-version", "6.0-preview")
        token = self.queue_token if broker or path.endswith("/acquirejobs") else self.admin
        sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if broker and method == "GET":
            sent = {"Authorization": f"Bearer {token}", "X-Scalesetmaxcapacity": "10"}
        if headers is not None and broker:  # the case's headers, as written (any casing)
            given = {k: v for k, v in headers.items() if "*" not in v and k.lower() != "authorization"}
            sent = {"Authorization": f"Bearer {token}", **given}
        data = None
        if body is not None:
            raw = json.dumps(body).encode()
            data = iter([raw[: len(raw) // 2], raw[len(raw) // 2:]])  # chunked framing
        return self.http.request(method, url, params=params, data=data, headers=sent, timeout=5)

    def setup(self, state: str) -> None:
        if state == "empty":
            return
        made = self.send("POST", "_apis/runtime/runnerscalesets", body={
            "name": "ScaleSet", "runnerGroupId": 1, "labels": [{"type": "System", "name": "ScaleSet"},
                                                               {"type": "System", "name": "gpu"}],
            "RunnerSetting": {}, "createdOn": "0001-01-01T00:00:00Z"})
        assert made.status_code == 200 and made.json()["id"] == 1
        if state == "runner":
            jit = self.send("POST", "_apis/runtime/runnerscalesets/1/generatejitconfig",
                            body={"name": "runner-1", "workFolder": ""})
            self.ids["runner_id"] = jit.json()["runner"]["id"]
        if state in ("session", "message"):
            session = self.send("POST", "_apis/runtime/runnerscalesets/1/sessions",
                                body={"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "x"}).json()
            self.queue_token = session["messageQueueAccessToken"]
        if state == "message":
            self.ids["message"] = self.fake.push_message(1, [])


@pytest.mark.parametrize("case", FAKE_CASES, ids=_ids(FAKE_CASES))
def test_fake_exchange(case: dict[str, Any]) -> None:
    want = case["fake"]
    with FakeActionsService(long_poll_hold=0.05) as fake:
        service = _Service(fake)
        service.setup(want["setup"])
        before = fake.scale_set(1)
        spec = _raw_request(case)
        spec["path"] = want.get("path", spec["path"])
        response = service.send(spec["method"], spec["path"], query=spec.get("query"), body=spec.get("body"),
                                headers=spec.get("headers"))
        assert response.status_code == want["status"], response.text
        if response.content:
            assert response.headers.get("Content-Encoding") == "gzip"  # requests asked for it
        body = response.json() if response.content and "json" in response.headers.get("Content-Type", "") else None
        if "type_name" in want:
            assert want["type_name"] in body["typeName"]
        for key in want.get("keys", []):
            assert key in body, f"{key} missing from {body}"
        for key in want.get("unchanged", []):
            assert before is not None and body[key] == before[key]
        violations = fake.take_violations()
        assert bool(violations) == bool(want.get("violation")), violations


def conformance_table() -> str:
    """The table for the issue note: ``tests.test_conformance.conformance_table()``, from the repository root."""
    rows = ["| exchange | reference | fake | source |", "|---|---|---|---|"]
    for case in CASES:
        ref = case["reference"]
        verdict = "agree" if ref == "agree" else f"deliberate difference: {ref['differs']}"
        fake = case.get("fake")
        fake_note = "-" if not fake else f"{fake['status']}" + (f" (assumption: {fake['assumption']})"
                                                                  if fake.get("assumption") else "")
        rows.append(f"| `{case['id']}` | {verdict} | {fake_note} | {case['source']} |")
    return "\n".join(rows)
