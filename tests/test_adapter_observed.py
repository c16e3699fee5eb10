"""Adapter promises an outside observer can check, pinned because mutation testing showed no test
would notice them breaking: the client's attempt counters equal what the service saw."""

from __future__ import annotations

from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client


def test_the_attempt_counters_match_the_requests_the_service_saw(fake: FakeActionsService,
                                                                 clock: FakeClock) -> None:
    client = make_client(fake, clock)
    assert (client.attempts_sent, client.retries_sent) == (0, 0)  # nothing sent yet
    fake.inject("get_runner_group_by_name", Fault.respond(503, "busy"))
    client.get_runner_group_by_name("Default")
    seen = fake.count("get_runner_group_by_name")
    assert seen == 2 and client.retries_sent == 1
    assert client.attempts_sent == fake.count()  # every request the client sent reached the fake
    client.close()
