"""The listener renewing its session: when the queue turns it away or says it expired, the session
is renewed, named in the state file and delivery goes on; a renewal that meets a conflict stands
by, one refused for bad credentials or an eviction without auto-recover ends the run.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import RecordingScaler, Running, job, make_client, stats, wait_until


def test_a_persistently_refused_queue_token_renews_the_session_and_delivery_goes_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    # Two 401s: the session's own refresh-and-repeat uses one refresh, then the listener renews.
    fake.inject("get_message", Fault.respond(401, "Session expired", content_type="text/plain"), times=2)
    scaler = RecordingScaler()
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    assert fake.count("refresh_session") == 2 and fake.count("create_session") == 1
    client.close()


def test_an_evicted_session_without_auto_recover_ends_the_run_with_the_error(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(auto_recover_session=False))
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    scaler = RecordingScaler()

    def evict_then_start(s: RecordingScaler, kind: str, request_id: int) -> None:
        fake.evict_session(scale_set.id)

    scaler.hook = evict_then_start
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(2))
    with pytest.raises(sc.SessionNotFoundError):
        listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.count("create_session") == 1  # no new session was asked for
    client.close()


_T = "GitHub.Actions.Runtime.WebApi.{}, GitHub.Actions.Runtime.WebApi"


CONFLICT = _T.format("RunnerScaleSetSessionConflictException")


def times(fake: FakeActionsService, operation: str) -> list[float]:
    return [r.time for r in fake.requests(operation)]


def gaps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def test_a_renewal_that_meets_a_conflict_stands_by_then_renews_and_delivers(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"), times=2)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    scaler = RecordingScaler()
    listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    refreshes = times(fake, "refresh_session")
    assert len(refreshes) == 3 and fake.count("create_session") == 1  # renewed in place, no new session
    assert min(gaps(refreshes)) >= 0.8 * 30.0  # the standby interval between tries, not a hot loop
    assert not listener.health().standby
    client.close()


def test_a_renewal_that_stays_in_conflict_past_standby_timeout_ends_the_run(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject_always("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0,
                                                     standby_timeout=100.0))
    scaler = RecordingScaler()
    with pytest.raises(sc.SessionConflictError):
        listener.run(scaler, until_idle=True)
    refreshes = times(fake, "refresh_session")
    # Tries every 24-36 s for 100 s: 4 to 6 tries, then it gives up.
    assert 4 <= len(refreshes) <= 6 and refreshes[-1] - refreshes[0] >= 100.0 - 36.0
    assert listener.health().standby and scaler.desired == [0]
    assert fake.session_of(scale_set.id) is None  # the owned session was still deleted on the way out
    client.close()


def test_a_renewal_that_fails_otherwise_backs_off_and_polling_goes_on(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.error(400, "SomethingElseException", "bad request"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0))
    scaler = RecordingScaler()
    listener.run(scaler, until_idle=True)
    assert scaler.started == [5] and fake.unacked(scale_set.id) == []
    assert fake.count("refresh_session") == 1 and fake.count("create_session") == 1
    refresh = times(fake, "refresh_session")[0]
    after = [t for t in times(fake, "get_message") if t > refresh]
    assert after and 4.0 <= after[0] - refresh <= 8.0  # backoff(2) with error_backoff 4: 4-8 s
    client.close()


def test_a_renewal_refused_for_bad_credentials_ends_the_run(
        client: sc.Client, fake: FakeActionsService, scale_set: sc.RunnerScaleSet) -> None:
    # `client` already holds an admin token (it created the scale set): the run needs no new one.
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    # The refresh is refused, and renewing the admin token behind it is refused by GitHub.
    fake.inject("refresh_session", Fault.respond(401, "unauthorized", content_type="text/plain"))
    fake.inject_always("registration_token", Fault.respond(401, json_body={"message": "Bad credentials"}))
    scaler = RecordingScaler()
    with pytest.raises(sc.AuthenticationError):
        sc.Listener(client, sc.ListenerConfig(scale_set.id, 3)).run(scaler, until_idle=True)
    assert fake.count("refresh_session") == 1 and fake.count("get_message") == 1  # no retry of either


def test_a_bounded_run_whose_renewal_stands_by_ends_by_its_duration_without_error(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject_always("refresh_session", Fault.error(409, CONFLICT, "owned elsewhere"))
    started = clock.monotonic()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, standby_interval=30.0))
    listener.run(RecordingScaler(), duration=100.0)
    refreshes = times(fake, "refresh_session")
    assert 3 <= len(refreshes) <= 5 and refreshes[-1] - started <= 100.0
    assert clock.monotonic() - started <= 100.0 + 2.0 and fake.count("get_message") == 1
    client.close()


SESSION_EXPIRED = _T.format("RunnerScaleSetSessionExpiredException")


SESSION_GONE = _T.format("RunnerAdminException")


def test_a_session_the_queue_says_expired_is_renewed_and_named_in_the_state_file(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 1)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    fake.inject("get_message", Fault.error(404, SESSION_EXPIRED, "session expired"))
    fake.inject("refresh_session", Fault.error(404, SESSION_GONE, "no such session"))  # so a new one is made
    named: list[tuple[str, str]] = []
    first: list[str] = []

    class Scaler(RecordingScaler):
        def handle_desired_runner_count(self, count: int) -> int:
            first.append(listener.health().session_id)
            return super().handle_desired_runner_count(count)


    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        named.append((json.loads(state.read_text())["session_id"], listener.health().session_id))

    scaler = Scaler(hook)
    listener.run(scaler, until_idle=True)
    assert scaler.started == [1] and fake.count("create_session") >= 2  # ours, then the new one
    (in_file, open_now), = named
    assert in_file == open_now != first[0]
    client.close()


def test_a_renewed_session_is_in_the_state_file_before_the_next_message_is_handled(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake.push_message(scale_set.id, [job("JobStarted", 5)], statistics=stats(1))
    fake.push_message(scale_set.id, [job("JobStarted", 6)], statistics=stats(1))
    client = make_client(fake, clock)
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, state_file=state))
    seen: list[tuple[str, str]] = []

    def hook(_: RecordingScaler, kind: str, request_id: int) -> None:
        seen.append((json.loads(state.read_text())["session_id"], listener.health().session_id))
        if request_id == 5:
            fake.evict_session(scale_set.id)  # the next poll is turned away; the listener renews

    listener.run(RecordingScaler(hook), until_idle=True)
    (first_file, first_open), (second_file, second_open) = seen
    assert first_file == first_open and second_open != first_open
    assert second_file == second_open  # saved before the poll that brought message 6
    client.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings of the listener's loggers: the package's and its parts' (``_listener.sessions``, ...)."""
    return [r.getMessage() for r in caplog.records
            if r.name.split(".")[:2] == ["scaleset_client", "_listener"] and r.levelno >= logging.WARNING]


def test_a_stop_while_a_session_is_being_renewed_ends_the_run_quietly(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"))
    fake.inject("refresh_session", Fault.hang())
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3))
    running = Running(listener, scaler)
    wait_until(lambda: fake.count("refresh_session") == 1)
    caplog.clear()
    running.finish()
    fake.release_hangs()
    assert running.error is None
    assert fake.count("refresh_session") == 1 and fake.count("get_message") == 1  # no retry after the stop
    assert fake.count("delete_session") == 1 and fake.session_of(scale_set.id) is None  # still cleaned up
    assert warnings(caplog) == []  # our own stop is not a failure to report
    client.close()


def test_a_renewal_is_logged_whether_it_fails_or_succeeds(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        caplog: pytest.LogCaptureFixture) -> None:
    """An operator reading the log sees a failed renewal (a warning with the error) and a renewed
    session (with its id)."""
    client = make_client(fake, clock)
    fake.inject("get_message", Fault.error(409, CONFLICT, "owned elsewhere"), Fault.error(409, CONFLICT, "again"))
    fake.inject("refresh_session", Fault.error(400, "SomethingElseException", "bad request"))
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 3, error_backoff=4.0))
    with caplog.at_level(logging.INFO, logger="scaleset_client._listener"):
        listener.run(RecordingScaler(), until_idle=True)
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name.split(".")[:2] == ["scaleset_client", "_listener"]]
    assert any(level == logging.WARNING and text.startswith("session renewal failed: ") and "bad request" in text
               for level, text in said), said
    assert any(level == logging.INFO and text.startswith("session renewed: ") for level, text in said), said
    client.close()
