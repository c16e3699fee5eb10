"""The call seam (``_calls.Calls``) prepares requests itself (a twentieth of requests' cost): the result must be what
requests would have prepared, byte for byte on the wire."""

from __future__ import annotations

import pytest
import requests

import scaleset_client as sc

URLS = [
    "https://broker.example/message?sessionId=abc&lastMessageId=5",
    "https://x.example/tenant/_apis/runtime/runnerscalesets?name=linux%20x64&api-version=6.0-preview",
    "https://x.example/a b/c?q=with space&r=%7E",
    "http://127.0.0.1:8080/path/../odd;params?x=1#frag",
    "https://ünïcode.example/path",  # not ASCII: requests' own preparation
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(("method", "body"), [("GET", None), ("DELETE", None), ("POST", {"a": [1, 2]}),
                                              ("PATCH", {})])
def test_prepared_like_requests(url: str, method: str, body: object) -> None:
    client = sc.Client("https://github.com/org", token="ghp_x")
    kwargs = {} if body is None else {"body": body}
    ours = client._calls.prepare(method, url, authorization="Bearer t", extra={"X-ScaleSetMaxCapacity": "3"},
                                 **kwargs)  # type: ignore[arg-type]
    theirs = requests.Request(method, url, headers=dict(ours.headers), data=ours.body).prepare()
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)
    client.close()
