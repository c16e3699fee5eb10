"""Every admin operation of protocol §3.2 against the fake service: request shape, success, errors."""

from __future__ import annotations

import json

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, Fault


def test_requests_carry_api_version_user_agent_content_type_and_admin_bearer(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    client.set_system_info(sc.SystemInfo(system="mine", version="2.0", subsystem="controller"))
    client.get_runner_scale_set_by_id(scale_set.id)
    req = fake.requests("get_runner_scale_set_by_id")[-1]
    assert req.query == {"api-version": "6.0-preview"}
    assert req.path == f"/tenant/123/_apis/runtime/runnerscalesets/{scale_set.id}"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Authorization"].startswith("Bearer ey")
    ua = json.loads(req.headers["User-Agent"])
    assert (ua["system"], ua["version"], ua["subsystem"], ua["kind"]) == ("mine", "2.0", "controller", "scaleset")
    assert "Accept" not in req.headers or req.headers["Accept"] != "application/json; api-version=6.0-preview"


def test_get_scale_set_by_name_counts_zero_one_many(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    assert client.get_runner_scale_set(1, "nope") is None
    found = client.get_runner_scale_set(1, "linux-x64")
    assert found is not None and found.id == scale_set.id
    req = fake.requests("get_runner_scale_set")[-1]
    assert req.query == {"api-version": "6.0-preview", "name": "linux-x64", "runnerGroupId": "1"}
    fake.inject("get_runner_scale_set", Fault.respond(200, json_body={"count": 2, "value": [{}, {}]},
                                                      headers={"ActivityId": "a-1"}))
    with pytest.raises(sc.APIError, match="multiple runner scale sets") as info:
        client.get_runner_scale_set(1, "linux-x64")
    assert info.value.activity_id == "a-1"


def test_name_with_special_characters_is_encoded_not_reinterpreted(client: sc.Client, fake: FakeActionsService) -> None:
    assert client.get_runner_scale_set(1, "a&b#c d/é") is None
    assert fake.requests("get_runner_scale_set")[-1].query["name"] == "a&b#c d/é"


def test_get_scale_set_by_id_null_is_none_and_404_is_not_found(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.respond(200, "null", content_type="application/json"))
    assert client.get_runner_scale_set_by_id(5) is None
    with pytest.raises(sc.ScaleSetNotFoundError):
        client.get_runner_scale_set_by_id(5)
    fake.inject("get_runner_scale_set_by_id", Fault.respond(404))
    with pytest.raises(sc.ScaleSetNotFoundError):
        client.get_runner_scale_set_by_id(5)


def test_create_defaults_labels_to_name_and_label_types_to_system(client: sc.Client, fake: FakeActionsService) -> None:
    created = client.create_runner_scale_set(sc.RunnerScaleSet(name="arm", runner_group_id=1))
    assert created.id > 0 and created.labels == [sc.Label("arm", "System")]
    client.create_runner_scale_set(sc.RunnerScaleSet(name="gpu", labels=[sc.Label("cuda", "")]))
    body = fake.requests("create_runner_scale_set")[-1].json()
    assert body["labels"] == [{"type": "System", "name": "cuda"}] and body["createdOn"] == "0001-01-01T00:00:00Z"
    assert body["RunnerSetting"] == {} and "id" not in body


def test_create_without_name_and_labels_sends_nothing(client: sc.Client, fake: FakeActionsService) -> None:
    with pytest.raises(sc.ConfigError):
        client.create_runner_scale_set(sc.RunnerScaleSet(name=""))
    assert fake.count("create_runner_scale_set") == 0


def test_create_answers_200_not_201(client: sc.Client, fake: FakeActionsService) -> None:
    fake.inject("create_runner_scale_set", Fault.respond(201, json_body={"id": 1, "name": "x"}))
    with pytest.raises(sc.APIError) as info:
        client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    assert info.value.status == 201


def test_update_and_delete_scale_set(client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    updated = client.update_runner_scale_set(scale_set.id, sc.RunnerScaleSet(
        name="linux-x64", labels=[sc.Label("a", ""), sc.Label("b")], runner_setting=sc.RunnerSetting(True)))
    assert [lb.name for lb in updated.labels] == ["a", "b"] and updated.runner_setting.disable_update
    assert fake.requests("update_runner_scale_set")[-1].method == "PATCH"
    client.delete_runner_scale_set(scale_set.id)
    assert fake.scale_set(scale_set.id) is None
    with pytest.raises(sc.APIError, match="does not exist") as info:
        client.delete_runner_scale_set(scale_set.id)
    assert info.value.status == 400


def test_runner_group_by_name(client: sc.Client, fake: FakeActionsService) -> None:
    gid = fake.add_runner_group("my-group")
    group = client.get_runner_group_by_name("my-group")
    assert (group.id, group.name, group.is_default_group) == (gid, "my-group", False)
    assert fake.requests("get_runner_group_by_name")[-1].path.endswith("/runnergroups/")
    with pytest.raises(sc.APIError, match="no runner group found"):
        client.get_runner_group_by_name("missing")


def test_jit_config_runner_lookup_and_removal(client: sc.Client, fake: FakeActionsService,
                                             scale_set: sc.RunnerScaleSet) -> None:
    jit = client.generate_jit_runner_config(sc.JitRunnerSetting(name="runner-1"), scale_set.id)
    assert jit.runner.name == "runner-1" and jit.runner.runner_scale_set_id == scale_set.id
    assert jit.encoded_jit_config and jit.encoded_jit_config not in repr(jit)
    assert fake.requests("generate_jit_runner_config")[-1].json() == {"name": "runner-1", "workFolder": ""}
    with pytest.raises(sc.RunnerExistsError):
        client.generate_jit_runner_config(sc.JitRunnerSetting(name="runner-1"), scale_set.id)
    assert client.get_runner(jit.runner.id) == jit.runner
    assert client.get_runner_by_name("runner-1") == jit.runner
    assert client.get_runner_by_name("runner-2") is None
    client.remove_runner(jit.runner.id)
    with pytest.raises(sc.RunnerNotFoundError):
        client.remove_runner(jit.runner.id)
    with pytest.raises(sc.RunnerNotFoundError):
        client.get_runner(jit.runner.id)


def test_removing_a_busy_runner_is_job_still_running(client: sc.Client, fake: FakeActionsService,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    jit = client.generate_jit_runner_config(sc.JitRunnerSetting(name="busy"), scale_set.id)
    rid = fake.queue_job(scale_set.id)
    fake.start_job(rid, "busy")
    with pytest.raises(sc.JobStillRunningError):
        client.remove_runner(jit.runner.id)


def test_bom_prefixed_bodies_parse(client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    fake.inject("get_runner_scale_set_by_id", Fault.bom())
    found = client.get_runner_scale_set_by_id(scale_set.id)
    assert found is not None and found.name == "linux-x64"


@pytest.mark.parametrize("bad", [0, -1, True, "1", 2**63, None])
def test_invalid_ids_are_config_errors_before_sending(client: sc.Client, fake: FakeActionsService, bad: object) -> None:
    with pytest.raises(sc.ConfigError):
        client.get_runner(bad)  # type: ignore[arg-type]
    assert fake.count() == 0


def test_config_errors_at_construction_send_nothing(fake: FakeActionsService) -> None:
    with pytest.raises(sc.ConfigError, match="exactly one"):
        sc.Client(fake.config_url)
    with pytest.raises(sc.ConfigError, match="exactly one"):
        sc.Client(fake.config_url, token="x", app=sc.GitHubAppAuth("1", 1, "k"))
    with pytest.raises(sc.ConfigError):
        sc.Client("https://github.com", token="ghp_x")
    with pytest.raises(sc.ConfigError):
        sc.Client(fake.config_url, token="")
    with pytest.raises(sc.ConfigError):
        sc.Client(fake.config_url, token="ghp_x", timeout=-1)
    with pytest.raises(sc.ConfigError):
        sc.Client(fake.config_url, token="ghp_x", verify="/no/such/ca.pem")
    assert fake.count() == 0


def test_wrong_token_is_an_authentication_error(fake: FakeActionsService) -> None:
    with sc.Client(fake.config_url, token="ghp_wrong") as client:
        with pytest.raises(sc.AuthenticationError, match="Bad credentials") as info:
            client.get_runner(1)
    assert info.value.status == 401 and "ghp_wrong" not in str(info.value)


def test_wrong_org_says_what_to_check(fake: FakeActionsService) -> None:
    url = fake.config_url.rsplit("/", 1)[0] + "/other-org"
    with sc.Client(url, token=fake.token) as client:
        with pytest.raises(sc.AuthenticationError, match="does not exist or the credentials"):
            client.get_runner(1)


def test_client_repr_and_errors_hold_no_token(client: sc.Client, fake: FakeActionsService) -> None:
    assert fake.token not in repr(client)
    fake.inject("get_runner", Fault.respond(500, f"echo {fake.token}", content_type="text/plain"), times=5)
    with pytest.raises(sc.ScalesetError) as info:
        client.get_runner(1)
    text = str(info.value) + repr(info.value.__dict__)
    assert fake.token not in text


def test_a_leftover_runner_of_ours_is_replaced_on_request(client: sc.Client, fake: FakeActionsService,
                                                          scale_set: sc.RunnerScaleSet) -> None:
    first = client.generate_jit_runner_config(sc.JitRunnerSetting(name="r-1"), scale_set.id)
    again = client.generate_jit_runner_config(sc.JitRunnerSetting(name="r-1"), scale_set.id, replace_existing=True)
    assert again.runner.name == "r-1" and again.runner.id != first.runner.id
    assert [r["id"] for r in fake.runners()] == [again.runner.id]
    other = client.create_runner_scale_set(sc.RunnerScaleSet(name="other"))
    with pytest.raises(sc.RunnerExistsError, match="belongs to scale set"):
        client.generate_jit_runner_config(sc.JitRunnerSetting(name="r-1"), other.id, replace_existing=True)
