"""A scale set deleted on the service's side while a listener serves it: by default the run ends
with ``ScaleSetNotFoundError``; with ``recreate_deleted`` the listener creates it again (same
name, runner group, labels, runner settings), moves its session and state file to the new id and
goes on, at most once per ``recreate_interval``, and never while the service answers 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until
from .helpers import RecordingScaler, Running

NOT_FOUND = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException, GitHub.Actions.Runtime.WebApi"


class Recorder:
    def __init__(self) -> None:
        self.recreated: list[tuple[int, int]] = []

    def record_scale_set_recreated(self, old: int, new: int) -> None:
        self.recreated.append((old, new))


def _scale_set(client: sc.Client) -> sc.RunnerScaleSet:
    return client.create_runner_scale_set(sc.RunnerScaleSet(
        name="gpu-x64", runner_group_id=1, labels=[sc.Label(name="gpu"), sc.Label(name="x64")],
        runner_setting=sc.RunnerSetting(disable_update=True)))


def test_a_deleted_scale_set_is_created_again_and_jobs_reach_the_scaler_on_the_new_one(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    state = tmp_path / "state.json"
    recorder = Recorder()
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, state_file=state, recreate_deleted=True),
                           metrics=recorder)
    scaler = RecordingScaler()
    running = Running(listener, scaler)
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    new_id = listener.scale_set_id
    again = fake.scale_set(new_id)
    assert again is not None and fake.scale_set(old.id) is None
    assert (again["name"], again["runnerGroupId"], again["RunnerSetting"]) == ("gpu-x64", 1, {"disableUpdate": True})
    assert sorted(label["name"] for label in again["labels"]) == ["gpu", "x64"]
    request = fake.queue_job(new_id)
    fake.start_job(request)
    wait_until(lambda: scaler.started == [request])
    running.finish()
    assert running.error is None and recorder.recreated == [(old.id, new_id)]
    assert fake.count("create_runner_scale_set") == 2  # the test's and the listener's, no more
    saved = json.loads(state.read_text())
    assert saved["binding"]["scale_set_id"] == new_id and saved["recreated_from"] == [old.id]
    client.close()


def test_a_restart_configured_with_the_old_id_follows_the_state_file_to_the_new_one(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    state = tmp_path / "state.json"
    config = sc.ListenerConfig(old.id, 5, state_file=state, recreate_deleted=True)
    first = sc.Listener(client, config)
    running = Running(first, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: first.scale_set_id != old.id and fake.session_of(first.scale_set_id) is not None)
    running.finish()
    new_id = first.scale_set_id
    second = sc.Listener(client, config)
    second.run(RecordingScaler(), until_idle=True)
    assert second.scale_set_id == new_id
    assert fake.count("create_runner_scale_set") == 2
    assert [int(r.path.split("/")[-2]) for r in fake.requests("create_session")][-1] == new_id
    client.close()


def test_a_second_deletion_within_the_interval_ends_the_run(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True, recreate_interval=600))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    fake.delete_scale_set(listener.scale_set_id)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sc.ScaleSetNotFoundError)
    assert "recreate_interval" in running.error.message
    assert fake.count("create_runner_scale_set") == 2
    client.close()


def test_nothing_is_created_while_the_service_answers_5xx_for_the_scale_set(
        fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    fake.inject("create_session", Fault.error(404, type_name=NOT_FOUND, message="not found"), times=1000)
    fake.inject_always("get_runner_scale_set_by_id", Fault.error(503, message="unavailable"))
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True))
    listener.run(RecordingScaler(), duration=120.0)
    assert fake.count("create_runner_scale_set") == 1  # the test's own
    assert fake.count("get_runner_scale_set_by_id") >= 1 and fake.scale_set(old.id) is not None
    client.close()


def test_by_default_a_deleted_scale_set_ends_the_run_and_nothing_is_created(
        fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sc.ScaleSetNotFoundError)
    assert fake.count("create_runner_scale_set") == 1
    client.close()


@pytest.mark.parametrize(("minimum", "maximum"), [(-1, 5), (6, 5)])
def test_min_runners_outside_zero_to_max_is_a_config_error(minimum: int, maximum: int) -> None:
    with pytest.raises(sc.ConfigError, match="min_runners"):
        sc.ListenerConfig(1, maximum, min_runners=minimum)


def test_a_scale_set_another_process_created_again_first_is_used_not_duplicated(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """Someone re-created the deleted scale set under the same name before the listener did: its
    create is refused (the name is taken) and it serves that one."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.inject("get_runner_scale_set_by_id", Fault.delay(0.5), times=2)  # the listener looks slowly
    fake.delete_scale_set(old.id)
    other = make_client(fake, clock)
    theirs = _scale_set(other)
    wait_until(lambda: listener.scale_set_id == theirs.id and fake.session_of(theirs.id) is not None)
    running.finish()
    assert running.error is None
    assert fake.count("create_runner_scale_set") == 3  # ours at first, theirs, ours refused
    other.close()
    client.close()


def test_a_restart_does_not_create_the_scale_set_again_within_the_interval(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    """The interval is counted across restarts: the state file says when the last re-creation was."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    config = sc.ListenerConfig(old.id, 5, state_file=tmp_path / "state.json", recreate_deleted=True)
    first = sc.Listener(client, config)
    running = Running(first, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: first.scale_set_id != old.id and fake.session_of(first.scale_set_id) is not None)
    running.finish()
    fake.delete_scale_set(first.scale_set_id)
    clock.advance(60.0)  # a restart a minute later: well within the 600 s interval
    with pytest.raises(sc.ScaleSetNotFoundError, match="recreate_interval"):
        sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
    assert fake.count("create_runner_scale_set") == 2
    client.close()


def test_a_scale_set_no_session_described_is_not_created_again(
        fake: FakeActionsService, clock: FakeClock) -> None:
    from scaleset_client._listener.healing import Healer
    from scaleset_client._listener.pacing import Pacer
    from scaleset_client._listener.sessions import SessionKeeper

    client = make_client(fake, clock)
    old = _scale_set(client)
    config = sc.ListenerConfig(old.id, 5, recreate_deleted=True)
    pacer = Pacer(client, config, clock)
    healer = Healer(config, clock, SessionKeeper(client, config, clock, pacer), pacer)
    healer.described(None)  # a session without its scale set tells nothing
    fake.delete_scale_set(old.id)
    with pytest.raises(sc.ScaleSetNotFoundError, match="no session described it"):
        healer.heal(sc.ScaleSetNotFoundError("404"), own_session=True)
    assert fake.count("create_runner_scale_set") == 1
    client.close()
