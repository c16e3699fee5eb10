"""A scale set deleted on the service's side while a listener serves it: by default the run ends
with ``ScaleSetNotFoundError``; with ``recreate_deleted`` the listener creates it again (same
name, runner group, labels, runner settings), moves its session and state file to the new id and
goes on, at most once per ``recreate_interval``, and never while the service answers 5xx."""

from __future__ import annotations

import json
import logging
import re
from itertools import pairwise
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client._listener_state import binding_key
from scaleset_client._state import StateFile
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .conftest import make_client, wait_until
from .helpers import RecordingScaler, Running, job, stats

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


def _recreated(fake: FakeActionsService, client: sc.Client, config: sc.ListenerConfig,
               scaler: RecordingScaler | None = None) -> tuple[int, int]:
    """Run a listener on ``config`` until it has created its deleted scale set again; the old id
    and the new one."""
    old_id = config.scale_set_id
    listener = sc.Listener(client, config)
    running = Running(listener, scaler or RecordingScaler())
    wait_until(lambda: fake.session_of(old_id) is not None)
    fake.delete_scale_set(old_id)
    wait_until(lambda: listener.scale_set_id != old_id and fake.session_of(listener.scale_set_id) is not None)
    running.finish()
    assert running.error is None
    return old_id, listener.scale_set_id


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
    _, new_id = _recreated(fake, client, config)
    second = sc.Listener(client, config)
    second.run(RecordingScaler(), until_idle=True)
    assert second.scale_set_id == new_id
    assert fake.count("create_runner_scale_set") == 2
    assert [int(r.path.split("/")[-2]) for r in fake.requests("create_session")][-1] == new_id
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
    _, new_id = _recreated(fake, client, config)
    fake.delete_scale_set(new_id)
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
    with pytest.raises(sc.ScaleSetNotFoundError) as info:
        healer.heal(sc.ScaleSetNotFoundError("404"), own_session=True)
    assert info.value.message == (
        f"scale set {old.id} no longer exists (deleted, or removed by GitHub after being offline): create it "
        "again or fix the id; the listener stops. (404); it cannot be created again: no session described it "
        "(recreate_deleted needs one session opened first)")
    assert fake.count("create_runner_scale_set") == 1
    client.close()


def test_a_second_deletion_within_the_interval_ends_the_run_saying_when_it_was_created_and_the_interval(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """A second deletion within ``recreate_interval`` ends the run; the error names the scale set,
    says it is gone and what to do, how long ago it was created again and the interval, in so
    many words."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True, recreate_interval=600))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    new_id = listener.scale_set_id
    fake.delete_scale_set(new_id)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sc.ScaleSetNotFoundError)
    assert re.fullmatch(
        rf"scale set {new_id} no longer exists \(deleted, or removed by GitHub after being offline\): create it "
        r"again or fix the id; the listener stops\. \(.+\); it was created again \d+s ago, and is not created "
        r"again within recreate_interval \(600s\)", running.error.message), running.error.message
    assert fake.count("create_runner_scale_set") == 2  # created once again, not twice
    client.close()


def test_a_restart_after_the_interval_creates_the_scale_set_again_when_it_is_deleted(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    """The interval counted across restarts also ends: a process started more than
    recreate_interval after the last re-creation creates the scale set again."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    config = sc.ListenerConfig(old.id, 5, state_file=tmp_path / "state.json", recreate_deleted=True,
                               recreate_interval=600)
    _, new_id = _recreated(fake, client, config)
    middle = new_id
    clock.advance(700.0)  # a restart well after the 600 s interval
    second = sc.Listener(client, config)
    running = Running(second, RecordingScaler())
    wait_until(lambda: fake.session_of(middle) is not None)
    fake.delete_scale_set(middle)
    wait_until(lambda: second.scale_set_id not in (old.id, middle) or not running.thread.is_alive())
    newest = second.scale_set_id
    wait_until(lambda: fake.session_of(newest) is not None or not running.thread.is_alive())
    running.finish()
    assert running.error is None and newest not in (old.id, middle)
    assert fake.count("create_runner_scale_set") == 3  # the test's, the first process's, the second's
    client.close()


def test_a_404_the_second_look_cannot_confirm_pauses_a_second_backoff_step_before_the_next_try(
        low: tuple[FakeActionsService, FakeClock]) -> None:
    """With recreate_deleted, a 404 whose look answers 5xx creates nothing and waits error_backoff x 2
    x (0.5 + 0.5 x draw) before the session is tried again: 100 s at the narrowest draw."""
    fake, clock = low
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    old = _scale_set(client)
    fake.inject("create_session", Fault.error(404, type_name=NOT_FOUND, message="not found"), times=1000)
    fake.inject_always("get_runner_scale_set_by_id", Fault.error(503, message="unavailable"))
    config = sc.ListenerConfig(old.id, 5, recreate_deleted=True, error_backoff=100.0, error_backoff_max=1000.0)
    sc.Listener(client, config).run(RecordingScaler(), duration=250.0)
    tries = [r.time for r in fake.requests("create_session")]
    assert [round(b - a, 3) for a, b in pairwise(tries)] == [100.0, 100.0]
    assert fake.count("create_runner_scale_set") == 1  # the test's own
    client.close()


def test_the_interval_within_a_run_is_counted_on_the_monotonic_clock_not_the_wall_clock(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """A wall clock stepped 700 s forward (an NTP correction) after a re-creation does not let a
    second deletion a moment later be created again: within a process the interval is counted on
    the monotonic clock."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True, recreate_interval=600))
    running = Running(listener, RecordingScaler())
    wait_until(lambda: fake.session_of(old.id) is not None)
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    clock.step_wall(700.0)
    fake.delete_scale_set(listener.scale_set_id)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sc.ScaleSetNotFoundError) and "recreate_interval" in running.error.message
    assert fake.count("create_runner_scale_set") == 2
    client.close()


def test_a_restart_with_the_wall_clock_set_back_counts_the_last_re_creation_as_just_now(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path) -> None:
    """A restart whose wall clock reads before the re-creation its state file records takes it as
    0 s ago (never negative), and does not create the scale set again."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    config = sc.ListenerConfig(old.id, 5, state_file=tmp_path / "state.json", recreate_deleted=True)
    _, new_id = _recreated(fake, client, config)
    fake.delete_scale_set(new_id)
    clock.step_wall(-100.0)  # the wall clock was set back before the restart
    with pytest.raises(sc.ScaleSetNotFoundError, match=r"; it was created again 0s ago, and is not created again"):
        sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
    assert fake.count("create_runner_scale_set") == 2
    client.close()


def test_a_re_creation_is_logged_as_a_warning_with_both_ids(
        fake: FakeActionsService, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(fake, clock)
    old = _scale_set(client)
    listener = sc.Listener(client, sc.ListenerConfig(old.id, 5, recreate_deleted=True))
    with caplog.at_level(logging.WARNING, logger="scaleset_client._listener"):
        running = Running(listener, RecordingScaler())
        wait_until(lambda: fake.session_of(old.id) is not None)
        fake.delete_scale_set(old.id)
        wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
        running.finish()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (f"scale set {old.id} (gpu-x64) was deleted on the service; created it again as "
            f"{listener.scale_set_id}") in said, said
    client.close()


def test_after_a_re_creation_the_cursor_record_is_the_new_scale_sets_and_a_restart_resumes_it(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The delivery record written on the new queue is bound to the new scale set, so the restart
    that follows the state file there keeps it (a record bound elsewhere is ignored, with a
    warning, and a message handled in part would be handed over again from its first event)."""
    client = make_client(fake, clock)
    state = tmp_path / "state.json"
    config = sc.ListenerConfig(_scale_set(client).id, 5, state_file=state, recreate_deleted=True)
    _, new_id = _recreated(fake, client, config)
    fake.push_message(new_id, [job("JobStarted", 7)], statistics=stats(1))
    scaler = RecordingScaler()
    sc.Listener(client, config).run(scaler, until_idle=True)
    assert scaler.started == [7]
    record = StateFile(state).load_cursor()
    assert record is not None and record.binding == binding_key(fake.config_url, new_id)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
    assert not [r for r in caplog.records if "cursor record" in r.getMessage()]
    client.close()


def test_acknowledgements_owed_on_the_old_queue_are_not_sent_to_the_new_one(
        fake: FakeActionsService, clock: FakeClock) -> None:
    """A message whose acknowledgement failed stays owed on its queue; once the scale set is
    created again, the new queue never gets a delete for it (its ids are another queue's)."""
    client = make_client(fake, clock)
    old = _scale_set(client)
    fake.inject_always("delete_message", Fault.error(400, message="no acks today"))
    mid = fake.push_message(old.id, [job("JobStarted", 1)], statistics=stats(1))
    scaler = RecordingScaler()
    config = sc.ListenerConfig(old.id, 5, recreate_deleted=True)
    listener = sc.Listener(client, config)
    running = Running(listener, scaler)
    wait_until(lambda: scaler.started == [1] and fake.count("delete_message") >= 1)
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    new_id = listener.scale_set_id
    new_queue = fake.session_of(new_id)
    assert new_queue is not None
    fake.clear_faults("delete_message")  # from now on an acknowledgement would be answered
    polls_on_new = fake.count("get_message")
    wait_until(lambda: fake.count("get_message") >= polls_on_new + 2)  # a few polls on the new queue
    running.finish()
    # The queues share one path; the new queue's token tells its requests apart.
    late = [r for r in fake.requests("delete_message") if r.path.endswith(f"/{mid}")
            and {k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {new_queue.token}"]
    assert late == [], f"message {mid} of scale set {old.id} was acknowledged on {new_id}'s queue"
    client.close()


def test_a_restart_right_after_a_re_creation_finds_the_delivery_record_already_moved(
        fake: FakeActionsService, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The re-creation itself rewrites the delivery record for the new scale set (nothing handled
    there yet): a restart before the first message on the new queue finds it its own, not the
    old scale set's record to be ignored with a warning."""
    client = make_client(fake, clock)
    state = tmp_path / "state.json"
    old = _scale_set(client)
    config = sc.ListenerConfig(old.id, 5, state_file=state, recreate_deleted=True)
    fake.push_message(old.id, [job("JobStarted", 1)], statistics=stats(1))
    scaler = RecordingScaler()
    listener = sc.Listener(client, config)
    running = Running(listener, scaler)
    wait_until(lambda: scaler.started == [1] and fake.count("delete_message") >= 1)  # handled on the old queue
    fake.delete_scale_set(old.id)
    wait_until(lambda: listener.scale_set_id != old.id and fake.session_of(listener.scale_set_id) is not None)
    running.finish()
    record = StateFile(state).load_cursor()
    assert record is not None and record.binding == binding_key(fake.config_url, listener.scale_set_id)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sc.Listener(client, config).run(RecordingScaler(), until_idle=True)
    assert not [r for r in caplog.records if "cursor record" in r.getMessage()]
    client.close()
