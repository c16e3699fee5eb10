"""Branch coverage of the call seam (issue 12), observed at the fake service (the requests and
headers it received) and by the caller (what was returned or raised)."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client

OP = "get_runner_scale_set"


def test_a_cookie_the_service_sets_is_never_sent_back(client: sc.Client, fake: FakeActionsService) -> None:
    """The shared Session keeps no cookies: no state leaks from one call (or thread) to the next.
    (Pinned at the wire: today the seam's own request preparation would not attach the Session's
    jar either, so this fails only if both the refusing policy and that preparation change.)"""
    fake.inject(OP, Fault.respond(200, json_body={"count": 0, "value": []},
                                  headers={"Set-Cookie": "affinity=node-7; Path=/"}))
    assert client.get_runner_scale_set(1, "absent") is None
    assert client.get_runner_scale_set(1, "absent") is None
    sent = fake.requests(OP)
    assert len(sent) == 2
    assert all("cookie" not in {k.lower() for k in r.headers} for r in sent)


def test_a_repository_named_with_a_leading_dot_is_sent_as_named(clock: FakeClock) -> None:
    """A URL with a ``/.`` segment takes requests' full preparation; the repository ``.github``
    must still reach the service as it is spelled (a dot-led name is not a dot segment)."""
    with FakeActionsService(clock=clock, org="acme/.github", strict=True) as fake:
        client = make_client(fake, clock)
        try:
            with pytest.raises(sc.AuthenticationError, match=r"acme/\.github"):
                client.get_runner_group_by_name("default")  # the fake knows organizations only: a 404
            [sent] = fake.requests("registration_token")
            assert sent.path == "/api/v3/repos/acme/.github/actions/runners/registration-token"
            assert sent.method == "POST" and sent.headers.get("Authorization", "").startswith("Bearer ")
        finally:
            client.close()
