"""Time belongs to the caller: deadlines, cancellation, stop, duration and recover().

Each test puts the service in a state that would hold a call for minutes or hours (a hang, a
body dripped with Content-Length, an hour-long poll, a 60 s Retry-After) and checks that the
caller's bound ended it: the service is still holding when the call returns, so nothing but
the bound can have ended it. Joins use generous limits (many times the bound, a small fraction
of what the service would hold); no elapsed time is asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from .helpers import Outcome, RecordingScaler, Running, inside, make_client, run_together, stats, wait_until

HOUR = 3600.0


def _broker_failures(client: sc.Client) -> float | None:
    return client.health().components["broker"].last_failure


def _service_failures(client: sc.Client) -> float | None:
    return client.health().components["actions_service"].last_failure


@pytest.fixture
def live() -> Any:
    with FakeActionsService(long_poll_hold=0.05) as service:
        yield service


class Held:
    """A fake that holds every empty poll for an hour, a real-time client, and a scale set."""

    def __init__(self, fake: FakeActionsService) -> None:
        self.fake = fake
        self.client = sc.Client(fake.config_url, token=fake.token, long_poll_timeout=2 * HOUR)
        self.scale_set = self.client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))


@pytest.fixture
def held() -> Any:
    with FakeActionsService(long_poll_hold=HOUR) as fake:
        setup = Held(fake)
        yield setup
        fake.release_hangs()
        setup.client.close()


def test_a_body_dripped_with_content_length_ends_at_the_callers_deadline(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token, timeout=(2.0, 5.0))
    client.get_runner_by_name("warm")
    live.inject("get_runner_by_name", Fault.drip(0.1, size=36_000, chunked=False))  # an hour of bytes
    outcome = Outcome(lambda: _within(client, 1.0, lambda: client.get_runner_by_name("x"))).join()
    live.release_hangs()
    assert isinstance(outcome.error, sc.DeadlineExceededError), outcome.error
    assert _service_failures(client) is None  # our own time ran out: the service is not blamed
    client.close()


def test_an_attempt_dripping_past_connect_plus_read_timeout_is_a_retried_failure(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token, timeout=(0.5, 0.5),
                       resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=2, backoff_base=0.01)))
    client.get_runner_by_name("warm")
    live.inject("get_runner_by_name", Fault.drip(0.1, size=36_000, chunked=False), times=2)
    outcome = Outcome(lambda: client.get_runner_by_name("x")).join()
    live.release_hangs()
    assert isinstance(outcome.error, sc.RetryExhaustedError), outcome.error
    assert "still arriving" in str(outcome.error)
    assert live.count("get_runner_by_name") == 3  # the warm-up and two attempts
    assert _service_failures(client) is not None  # a slow service is the service's fault
    client.close()


def test_cancel_from_another_thread_ends_a_hung_call_without_blaming_the_service(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token, timeout=(2.0, HOUR))
    client.get_runner_by_name("warm")
    live.inject("get_runner_by_name", Fault.hang(HOUR))
    scope = client.deadline()
    outcome = Outcome(lambda: inside(scope, lambda: client.get_runner_by_name("x")))
    wait_until(lambda: live.count("get_runner_by_name") == 2)
    scope.cancel("test")
    outcome.join()
    live.release_hangs()
    assert isinstance(outcome.error, sc.CallCancelledError) and "test" in str(outcome.error)
    assert _service_failures(client) is None
    client.close()


def test_an_event_linked_to_a_scope_ends_a_long_poll(held: Held) -> None:
    session = held.client.message_session(held.scale_set.id)
    stop = threading.Event()
    outcome = Outcome(lambda: inside(held.client.deadline(cancel_on=stop), lambda: session.get_message(0, 1)))
    wait_until(lambda: held.fake.count("get_message") == 1)
    stop.set()
    outcome.join()
    assert isinstance(outcome.error, sc.CallCancelledError)
    assert _broker_failures(held.client) is None


def test_nested_scopes_only_shorten_and_waits_end_at_the_deadline(fake: FakeActionsService,
                                                                  clock: FakeClock) -> None:
    never_give_up = sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=100, budget=0),
        circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=1000, window_size=1000, minimum_calls=1000))
    client = make_client(fake, clock, resilience=never_give_up)
    client.get_runner_by_name("warm")
    fake.inject_always("get_runner_by_name", Fault.error(503))
    start = clock.monotonic()
    with client.deadline(30), client.deadline(600):  # the inner one cannot extend the outer
        with pytest.raises(sc.DeadlineExceededError):
            client.get_runner_by_name("x")
    assert clock.monotonic() - start <= 30  # virtual time: backoffs never slept past the bound
    client.close()


def test_a_recovery_that_leaves_too_little_time_sends_no_doomed_request(
        fake: FakeActionsService, clock: FakeClock, scale_set: sc.RunnerScaleSet,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(fake, clock)
    session = client.message_session(scale_set.id)
    fake.expire_queue_tokens()
    refresh = session._refresh_now

    def slow_refresh() -> sc.RunnerScaleSetSession:
        renewed = refresh()
        clock.advance(4.9)  # the renewal took nearly all of the caller's 5 s
        return renewed

    monkeypatch.setattr(session, "_refresh_now", slow_refresh)
    with client.deadline(5.0), pytest.raises(sc.DeadlineExceededError):
        session.get_message(0, 1)
    assert fake.count("refresh_session") == 1  # the session was renewed fine...
    assert fake.count("get_message") == 1  # ...but the re-signed poll was not sent with 0.1 s left
    assert _broker_failures(client) is None  # and the healthy broker was not charged a failure
    monkeypatch.undo()
    assert session.get_message(0, 1) is None  # the renewed session works at once
    assert fake.count("refresh_session") == 1
    client.close()


def test_a_broker_answering_empty_at_once_gets_about_one_poll_a_second(scale_set: sc.RunnerScaleSet,
                                                                        fake: FakeActionsService) -> None:
    clock = FakeClock(auto_advance=0.001)  # a hot loop would still see time pass, and end
    client = make_client(fake, clock)
    fake.push_message(scale_set.id, [], statistics=stats(2))
    fake.inject_always("get_message", Fault.respond(202))
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    listener.run(scaler, duration=120)
    polls = fake.count("get_message")
    assert 60 <= polls <= 120 / 0.8 + 2  # about one a second, never a burst
    assert len(scaler.desired) <= 120 / 30 + 2  # unchanged count: re-applied every 30 s, not per poll
    client.close()


def test_failing_polls_are_paced_too(scale_set: sc.RunnerScaleSet, fake: FakeActionsService) -> None:
    clock = FakeClock(auto_advance=0.001)
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(
        retry=sc.RetryConfig(max_attempts=1), circuit_breaker=sc.CircuitBreakerConfig(failure_threshold=10_000,
                                                                                       minimum_calls=20)))
    fake.inject_always("get_message", Fault.respond(400, json_body={"message": "nope"}))
    sc.Listener(client, sc.ListenerConfig(scale_set.id, 5, error_backoff=0.001, error_backoff_max=0.001)).run(
        RecordingScaler(), duration=60)
    assert fake.count("get_message") <= 60 / 0.8 + 2
    client.close()


def test_stop_interrupts_a_long_poll_and_deletes_the_session(held: Held) -> None:
    listener = sc.Listener(held.client, sc.ListenerConfig(held.scale_set.id, 5))
    outcome = Outcome(lambda: listener.run(RecordingScaler()))
    wait_until(lambda: held.fake.count("get_message") == 1)
    listener.stop()
    outcome.join()
    assert outcome.error is None
    assert held.fake.count("delete_session") == 1 and held.fake.session_of(held.scale_set.id) is None


def test_setting_the_stop_event_interrupts_a_long_poll(held: Held) -> None:
    running = Running(sc.Listener(held.client, sc.ListenerConfig(held.scale_set.id, 5)), RecordingScaler())
    wait_until(lambda: held.fake.count("get_message") == 1)
    running.finish()  # sets the event the run was given, joins with a bound
    assert running.error is None and held.fake.session_of(held.scale_set.id) is None


@pytest.mark.parametrize("fault", [Fault.hang(HOUR), Fault.respond(429, headers={"Retry-After": "60"}),
                                   Fault.drip(0.1, size=36_000, chunked=False)],
                         ids=["hang", "retry-after-60", "drip"])
def test_stop_ends_a_run_in_any_state(fault: Fault) -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        fake.inject_always("get_message", fault)
        listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
        outcome = Outcome(lambda: listener.run(RecordingScaler()))
        wait_until(lambda: fake.count("get_message") >= 1)
        listener.stop()
        outcome.join()
        fake.release_hangs()
        assert outcome.error is None and fake.session_of(scale_set.id) is None
        client.close()


def test_duration_bounds_a_run_against_a_hung_broker() -> None:
    with FakeActionsService(long_poll_hold=0.05) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
        fake.inject_always("get_message", Fault.hang(HOUR))
        outcome = Outcome(lambda: sc.Listener(client, sc.ListenerConfig(scale_set.id, 5)).run(
            RecordingScaler(), duration=1.0)).join()
        fake.release_hangs()
        assert outcome.error is None and fake.count("get_message") >= 1
        assert fake.session_of(scale_set.id) is None
        client.close()


@pytest.mark.parametrize("bound", ["duration", "enclosing scope"])
def test_a_run_during_a_503_storm_ends_at_its_bound(bound: str, fake: FakeActionsService, clock: FakeClock,
                                                    scale_set: sc.RunnerScaleSet) -> None:
    client = make_client(fake, clock)
    fake.inject_always("get_message", Fault.error(503))
    start = clock.monotonic()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    if bound == "duration":
        listener.run(RecordingScaler(), duration=55)
    else:
        with client.deadline(55):
            listener.run(RecordingScaler())
    assert clock.monotonic() - start <= 55 + 2  # virtual time: no break or backoff overran the run
    assert fake.session_of(scale_set.id) is None
    client.close()


def test_stop_before_run_returns_at_once(client: sc.Client, fake: FakeActionsService,
                                         scale_set: sc.RunnerScaleSet) -> None:
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    listener.stop()
    listener.run(RecordingScaler())
    assert fake.count("get_message") == 0


def test_recover_interrupts_a_call_stuck_in_flight_and_it_retries_at_once(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token, timeout=(2.0, HOUR))
    client.get_runner_by_name("warm")
    live.inject("get_runner_by_name", Fault.hang(HOUR))  # one black-holed request, then normal answers
    outcome = Outcome(lambda: client.get_runner_by_name("x"))
    wait_until(lambda: live.count("get_runner_by_name") == 2)
    report = client.recover()
    outcome.join()
    live.release_hangs()
    assert outcome.error is None and outcome.value is None  # the retry was answered: no such runner
    assert live.count("get_runner_by_name") == 3
    assert report.interrupted == 1 and "renewed the admin token" in report.actions
    assert _service_failures(client) is None
    client.close()


def test_concurrent_recover_calls_join_one_recovery(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token)
    client.get_runner_by_name("warm")
    before = live.count("registration_token")
    live.inject("registration_token", Fault.delay(1.0))  # hold the renewal so every caller arrives
    reports = run_together(8, client.recover)
    assert live.count("registration_token") == before + 1
    assert all(r is reports[0] for r in reports) and isinstance(reports[0], sc.RecoveryReport)
    client.close()


def test_recover_against_dead_services_raises_every_time(fake: FakeActionsService, clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    client.get_runner_by_name("warm")
    fake.stop("github")
    fake.stop("actions")
    for _ in range(2):  # never a silent no-op, however soon it is called again
        with pytest.raises(sc.RecoveryError, match="admin token"):
            client.recover()
    client.close()


def test_health_reflects_an_open_breaker_at_once_and_recovery_after(fake: FakeActionsService,
                                                                    clock: FakeClock) -> None:
    client = make_client(fake, clock, resilience=sc.ResilienceConfig(retry=sc.RetryConfig(max_attempts=1)))
    client.get_runner_by_name("warm")
    assert client.is_healthy()
    fake.inject_always("get_runner_by_name", Fault.error(503))
    for _ in range(5):
        with pytest.raises(sc.ScalesetError):
            client.get_runner_by_name("x")
    assert not client.is_healthy()  # the same instant (virtual time has not moved)
    fake.clear_faults()
    client.recover()
    assert client.is_healthy()
    client.close()


def _within(client: sc.Client, seconds: float, fn: Callable[[], Any]) -> Any:
    with client.deadline(seconds):
        return fn()


@pytest.fixture
def black_hole() -> Any:
    """A loopback port whose accept queue is full: a connect to it hangs (SYNs are dropped)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield port
    for sock in [*fillers, server]:
        sock.close()


def test_a_connect_to_a_black_hole_ends_on_cancel(black_hole: int) -> None:
    client = sc.Client(f"http://127.0.0.1:{black_hole}/org", token="ghp_test", timeout=(HOUR, HOUR))
    scope = client.deadline()
    outcome = Outcome(lambda: inside(scope, lambda: client.get_runner_by_name("x")))
    outcome.thread.join(timeout=0.5)
    assert outcome.thread.is_alive()  # the connect hangs
    scope.cancel("test")
    outcome.join()
    assert isinstance(outcome.error, sc.CallCancelledError), outcome.error
    assert client.health().components["github_api"].last_failure is None
    client.close()


def test_a_connect_to_a_black_hole_ends_at_the_deadline(black_hole: int) -> None:
    client = sc.Client(f"http://127.0.0.1:{black_hole}/org", token="ghp_test", timeout=(HOUR, HOUR))
    outcome = Outcome(lambda: _within(client, 0.5, lambda: client.get_runner_by_name("x"))).join()
    assert isinstance(outcome.error, sc.DeadlineExceededError), outcome.error
    client.close()


def test_one_scope_entered_by_many_threads_cancels_them_all(held: Held) -> None:
    session = held.client.message_session(held.scale_set.id)
    scope = held.client.deadline()
    outcomes = [Outcome(lambda: inside(scope, lambda: session.get_message(0, 1))) for _ in range(4)]
    wait_until(lambda: held.fake.count("get_message") == 4)
    scope.cancel("all of them")
    for outcome in outcomes:
        outcome.join()
        assert isinstance(outcome.error, sc.CallCancelledError)


def test_a_stop_that_cuts_an_ack_still_acknowledges_the_handled_message(live: FakeActionsService) -> None:
    client = sc.Client(live.config_url, token=live.token)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="x"))
    live.inject("delete_message", Fault.hang(HOUR))  # the first ack hangs
    mid = live.push_message(scale_set.id, [{"messageType": "JobStarted", "runnerRequestId": 3, "runnerId": 1,
                                            "runnerName": "r"}], statistics=stats(1))
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    outcome = Outcome(lambda: listener.run(scaler))
    wait_until(lambda: live.count("delete_message") == 1)  # handled; its ack is hanging
    listener.stop()
    outcome.join()
    live.release_hangs()
    assert outcome.error is None and scaler.started == [3]
    assert live.unacked(scale_set.id) == [] and mid > 0  # acknowledged on the way out
    client.close()
