"""A run's start and end as seen from outside: the state file names the session as soon as it is
open, a cancelled enclosing ``client.deadline()`` scope ends the run, and a metrics recorder
hears the session's statistics first. Time is a FakeClock shared with the fake."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .conftest import make_client
from .test_listener import RecordingScaler, job, stats


def test_the_state_file_names_the_session_before_the_first_poll(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    """A process killed right after opening its session leaves the id behind, so the next one
    deletes that session instead of standing by behind it."""
    state = tmp_path / "state.json"
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    saved: list[tuple[int, str, str]] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            saved.append((fake.count("get_message"), json.loads(state.read_text())["session_id"],
                          listener.health().session_id))
            return super().handle_desired_runner_count(count)

    listener.run(Scaler(), until_idle=True)
    (polls, in_file, open_id), *_ = saved
    assert polls == 0 and open_id != "" and in_file == open_id
    client.close()


def test_cancelling_an_enclosing_deadline_scope_ends_the_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    scope = client.deadline()
    scaler = RecordingScaler(lambda _s, _k, _r: scope.cancel("the operator said so"))

    def run() -> None:
        with scope:
            listener.run(scaler)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the run outlived the scope it was cancelled by"
    assert scaler.started == [1] and fake.unacked(scale_set.id) == []
    client.close()


def test_a_metrics_recorder_hears_the_sessions_statistics_first(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(4))
    client = make_client(fake, clock)
    heard: list[int] = []

    class Recorder:
        def record_statistics(self, statistics: sc.RunnerScaleSetStatistic) -> None:
            heard.append(statistics.total_assigned_jobs)

    session = client.message_session(scale_set.id, owner="here")
    try:
        opened = session.session.statistics
        assert opened is not None
        sc.Listener(session, sc.ListenerConfig(scale_set.id, 3), metrics=Recorder()).run(RecordingScaler(),
                                                                                        until_idle=True)
    finally:
        session.close()
    assert heard[0] == opened.total_assigned_jobs
    client.close()
