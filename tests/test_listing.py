"""Listing scale sets and runner groups: the request (as actions/scaleset PR #92 sends it), the
typed result, and every page followed when the service pages, against the fake over sockets."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault


def _make(client: sc.Client, *names: str, group: int = 1) -> list[int]:
    return [client.create_runner_scale_set(sc.RunnerScaleSet(name=n, runner_group_id=group)).id for n in names]


def test_list_runner_scale_sets_sends_the_group_and_no_name(fake: FakeActionsService, client: sc.Client) -> None:
    ids = _make(client, "alpha", "beta")
    fake.clear_log()
    found = client.list_runner_scale_sets(1)
    assert [s.name for s in found] == ["alpha", "beta"]
    assert [s.id for s in found] == ids
    assert all(isinstance(s, sc.RunnerScaleSet) and s.runner_group_id == 1 for s in found)
    assert found[0].labels == [sc.Label("alpha")]
    sent = fake.requests("list_runner_scale_sets")
    assert len(sent) == 1
    assert sent[0].path.endswith("/_apis/runtime/runnerscalesets")
    assert sent[0].query == {"api-version": "6.0-preview", "runnerGroupId": "1"}


def test_list_runner_scale_sets_keeps_to_the_group(fake: FakeActionsService, client: sc.Client) -> None:
    other = fake.add_runner_group("gpu")
    _make(client, "alpha")
    _make(client, "alpha", group=other)
    assert [s.runner_group_id for s in client.list_runner_scale_sets(other)] == [other]
    assert [s.runner_group_id for s in client.list_runner_scale_sets()] == [1, other]
    assert "runnerGroupId" not in fake.requests("list_runner_scale_sets")[-1].query


def test_an_empty_group_lists_nothing(client: sc.Client) -> None:
    assert client.list_runner_scale_sets(1) == []


def test_every_page_of_scale_sets_is_followed(fake: FakeActionsService, client: sc.Client) -> None:
    fake.list_page_size = 2
    names = [f"set-{n}" for n in range(5)]
    _make(client, *names)
    fake.clear_log()
    assert [s.name for s in client.list_runner_scale_sets(1)] == names
    sent = fake.requests("list_runner_scale_sets")
    assert [r.query.get("continuationToken") for r in sent] == [None, "2", "4"]
    assert all(r.query["runnerGroupId"] == "1" for r in sent)


def test_a_continuation_header_is_followed_and_duplicates_dropped(fake: FakeActionsService,
                                                                   client: sc.Client) -> None:
    first = {"count": 2, "value": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    second = {"count": 2, "value": [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]}
    fake.inject("list_runner_scale_sets", Fault.respond(200, json_body=first, headers={"X-MS-ContinuationToken": "t1"}),
                Fault.respond(200, json_body=second))
    assert [s.id for s in client.list_runner_scale_sets(1)] == [1, 2, 3]
    assert [r.query.get("continuationToken") for r in fake.requests("list_runner_scale_sets")] == [None, "t1"]


def test_a_continuation_token_that_repeats_is_a_response_error(fake: FakeActionsService, client: sc.Client) -> None:
    page = Fault.respond(200, json_body={"count": 1, "value": [{"id": 1, "name": "a"}]},
                         headers={"X-MS-ContinuationToken": "same"})
    fake.inject("list_runner_scale_sets", page, times=2)
    with pytest.raises(sc.ResponseError, match="same continuation token twice"):
        client.list_runner_scale_sets(1)
    assert fake.count("list_runner_scale_sets") == 2


def test_a_value_that_is_not_a_list_is_a_response_error(fake: FakeActionsService, client: sc.Client) -> None:
    fake.inject("list_runner_scale_sets", Fault.respond(200, json_body={"count": 1, "value": {"id": 1}}))
    with pytest.raises(sc.ResponseError, match="not a list"):
        client.list_runner_scale_sets(1)


def test_a_listing_is_retried_on_503_like_any_read(fake: FakeActionsService, client: sc.Client) -> None:
    _make(client, "alpha")
    fake.inject("list_runner_scale_sets", Fault.respond(503))
    assert [s.name for s in client.list_runner_scale_sets(1)] == ["alpha"]
    assert fake.count("list_runner_scale_sets") == 2


def test_list_runner_groups_returns_typed_groups(fake: FakeActionsService, client: sc.Client) -> None:
    gpu = fake.add_runner_group("gpu")
    fake.clear_log()
    groups = client.list_runner_groups()
    assert groups == [sc.RunnerGroup(id=1, name="Default", is_default_group=True),
                      sc.RunnerGroup(id=gpu, name="gpu")]
    sent = fake.requests("list_runner_groups")
    assert len(sent) == 1 and sent[0].path.endswith("/_apis/runtime/runnergroups/")
    assert sent[0].query == {"api-version": "6.0-preview"}
    assert fake.count("get_runner_group_by_name") == 0  # the by-name route is not confused with it


def test_every_page_of_runner_groups_is_followed(fake: FakeActionsService, client: sc.Client) -> None:
    fake.list_page_size = 1
    for name in ("gpu", "arm"):
        fake.add_runner_group(name)
    assert [g.name for g in client.list_runner_groups()] == ["Default", "gpu", "arm"]
    assert fake.count("list_runner_groups") == 3


def test_a_bad_group_id_is_a_config_error_before_any_request(fake: FakeActionsService, client: sc.Client) -> None:
    with pytest.raises(sc.ConfigError):
        client.list_runner_scale_sets(0)
    assert fake.count("list_runner_scale_sets") == 0
