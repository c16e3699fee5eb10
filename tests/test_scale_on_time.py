"""Scale on time: the scaler hears the service's newest figure promptly, in every phase of a run.

What the user needs from a listener is that an assigned job turns into a runner: the scaler's
``handle_desired_runner_count`` must be on the newest figure the service sent, soon, never a
long poll late, and never moved back to an older figure. These tests ask exactly that, as an
observer: the fake logs every figure it hands out (``figures_sent``, ordered by when each was
computed), and a phase is settled when the scaler's last figure is the newest one sent *while
the listener waits on a held long poll* (the fake holds polls 30 s here, so a figure that
waited for the next empty poll would miss the 10 s bound by far). Timings themselves are
measured in ``python -m bench.latency``.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from .helpers import RecordingScaler, Running, make_client, stats, wait_until

HOLD = 30.0  # the fake holds an empty poll this long: "a long poll late" cannot pass a 10 s bound
PROMPTLY = 10.0


@pytest.fixture
def held() -> Iterator[tuple[FakeActionsService, FakeClock]]:
    clock = FakeClock()
    with FakeActionsService(clock=clock, long_poll_hold=HOLD, strict=True) as service:
        yield service, clock


def client_for(fake: FakeActionsService, clock: FakeClock) -> sc.Client:
    return make_client(fake, clock, long_poll_timeout=HOLD + 30)


def newest(fake: FakeActionsService, scale_set_id: int) -> int:
    sent = fake.newest_figure_sent(scale_set_id)
    assert sent is not None
    return sent.assigned_jobs


def waiting_on_the_queue(fake: FakeActionsService, scale_set_id: int) -> bool:
    session = fake.session_of(scale_set_id)
    return session is not None and session.polling > 0


def settled(fake: FakeActionsService, scale_set_id: int, scaler: RecordingScaler) -> Callable[[], bool]:
    """Every message was delivered and acknowledged, the scaler is on the newest figure sent, and
    the listener waits on a held poll."""
    return lambda: (not fake.unacked(scale_set_id) and bool(scaler.desired)
                    and scaler.desired[-1] == newest(fake, scale_set_id) and waiting_on_the_queue(fake, scale_set_id))


def assigned(fake: FakeActionsService, scale_set_id: int) -> int:
    return fake.statistics(scale_set_id)["totalAssignedJobs"]


def never_lower(figures: list[int]) -> bool:
    return all(b >= a for a, b in itertools.pairwise(figures))


def start(fake: FakeActionsService, clock: FakeClock, scale_set_id: int, **config: object
          ) -> tuple[sc.Client, RecordingScaler, Running]:
    client = client_for(fake, clock)
    scaler = RecordingScaler()
    listener = sc.Listener(client, sc.ListenerConfig(scale_set_id, max_runners=50, **config))  # type: ignore[arg-type]
    return client, scaler, Running(listener, scaler)


def scale_set_on(fake: FakeActionsService, clock: FakeClock) -> int:
    admin = client_for(fake, clock)
    try:
        return admin.create_runner_scale_set(sc.RunnerScaleSet(name="linux-x64", runner_group_id=1)).id
    finally:
        admin.close()


def test_jobs_queued_just_after_the_session_opened_reach_the_scaler_without_waiting_a_long_poll(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """The review's first case: three jobs arrive while the first poll is held. Each is acquired,
    and the figure 3 reaches the scaler before the listener waits on the queue again."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    client, scaler, running = start(fake, clock, ssid)
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    for _ in range(3):
        fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.desired[-1] == 3 == assigned(fake, ssid)
    assert never_lower(scaler.desired)
    assert fake.count("refresh_session") <= 1  # at most one extra request for the opening
    running.finish()
    client.close()


def test_a_job_that_comes_while_the_service_holds_the_poll_needs_no_extra_request(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """Well into the first held poll, nothing older can be waiting: the job's figure is
    newer than the session's, applied as it comes, and nothing is asked for."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    client, scaler, running = start(fake, clock, ssid)
    import scaleset_client._listener as listener_module

    held = listener_module.HELD_BY_SERVICE + 0.3
    wait_until(lambda: fake.poll_held_for(ssid) >= held)  # the service has held the poll a while
    for _ in range(3):
        fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.desired[-1] == 3 and never_lower(scaler.desired)
    assert fake.count("refresh_session") == 0
    running.finish()
    client.close()


def test_statistics_already_queued_never_move_the_scaler_below_the_sessions_newer_figure(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """Messages queued before the session opened carry older figures (1, 2) than the session (5):
    the scaler starts on 5 and never goes back to 1 or 2, and no extra request is needed when the
    last queued figure agrees with the session's."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    for figure in (1, 2, 5):
        fake.push_message(ssid, [], statistics=stats(figure))
    client, scaler, running = start(fake, clock, ssid)
    wait_until(lambda: not fake.unacked(ssid) and waiting_on_the_queue(fake, ssid), timeout=PROMPTLY)
    assert set(scaler.desired) == {5}
    assert fake.count("refresh_session") == 0
    running.finish()
    client.close()


def test_a_newer_figure_behind_older_queued_ones_is_asked_for_once_and_applied(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """Queued before the session: figures 4 then 1 (the last one queued is older than the session
    opened after a silent change to 2). The listener cannot order them, so it asks once, and the
    scaler ends on the service's 2, never on 1."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    fake.push_message(ssid, [], statistics=stats(4))
    fake.push_message(ssid, [], statistics=stats(1))
    fake.push_message(ssid, [], statistics=None)  # no statistics: nothing to order
    fake.push_message(ssid, [], statistics=stats(2))  # the fake's figure now: 2
    fake.push_message(ssid, [], statistics=stats(1))  # queued, then the service moved on silently
    fake.push_message(ssid, [], statistics=stats(2))
    fake.change_statistics(ssid, stats(3))  # a change no message announces
    client, scaler, running = start(fake, clock, ssid)
    wait_until(lambda: fake.count("refresh_session") == 1, timeout=PROMPTLY)  # asked once the queue drained
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.desired[-1] == 3 and set(scaler.desired) == {3}
    assert fake.count("refresh_session") == 1
    running.finish()
    client.close()


def _phase_refresh(fake: FakeActionsService, clock: FakeClock, ssid: int, client: sc.Client) -> None:
    fake.expire_queue_tokens()


def _phase_eviction(fake: FakeActionsService, clock: FakeClock, ssid: int, client: sc.Client) -> None:
    fake.evict_session(ssid)


def _phase_recover(fake: FakeActionsService, clock: FakeClock, ssid: int, client: sc.Client) -> None:
    client.recover()


def _phase_outage(fake: FakeActionsService, clock: FakeClock, ssid: int, client: sc.Client) -> None:
    fake.stop("broker")
    fake.queue_job(ssid)  # queued while the broker is down
    fake.start_server("broker")


@pytest.mark.parametrize("phase", [_phase_refresh, _phase_eviction, _phase_recover, _phase_outage],
                         ids=["session refresh", "re-creation after eviction", "recover()", "broker outage"])
def test_jobs_around_a_phase_change_reach_the_scaler_promptly(
        held: tuple[FakeActionsService, FakeClock],
        phase: Callable[[FakeActionsService, FakeClock, int, sc.Client], None]) -> None:
    """A job before the change, the change, then two jobs after it: the scaler is on the newest
    figure while the listener waits on the queue again, every job started and completed reaches
    it, and it never went below a figure it had been told."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    client, scaler, running = start(fake, clock, ssid)
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    first = fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    phase(fake, clock, ssid, client)
    later = [fake.queue_job(ssid) for _ in range(2)]
    fake.start_job(first)
    fake.complete_job(first)
    wait_until(lambda: scaler.completed == [first], timeout=PROMPTLY)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.started == [first] and scaler.desired[-1] == assigned(fake, ssid) >= len(later)
    running.finish()
    client.close()


@pytest.mark.parametrize("with_state_file", [True, False], ids=["with a state file", "without a state file"])
def test_a_restarted_listener_puts_the_scaler_on_the_newest_figure_promptly(
        held: tuple[FakeActionsService, FakeClock], tmp_path: Path, with_state_file: bool) -> None:
    """Jobs queued and assigned while no listener ran: the next run's scaler starts on them, and a
    job queued just after the restart reaches it before the listener waits on the queue."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    config: dict[str, object] = {"state_file": tmp_path / "state.json"} if with_state_file else {}
    client, scaler, running = start(fake, clock, ssid, **config)
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    running.finish()
    client.close()
    fake.queue_job(ssid)  # waits in the queue for the next run
    client, scaler, running = start(fake, clock, ssid, **config)
    wait_until(lambda: bool(scaler.desired))
    fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.desired[-1] == assigned(fake, ssid) == 3 and never_lower(scaler.desired)
    running.finish()
    client.close()


def test_a_standby_that_takes_over_puts_its_scaler_on_the_newest_figure_promptly(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """A second listener stands by while the first owns the session; when the first stops, the
    standby opens its own and its scaler hears the jobs queued meanwhile and after."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    owner_client, _, owner = start(fake, clock, ssid)
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    standby_client, standby_scaler, standby = start(fake, clock, ssid, standby_interval=0.05)
    wait_until(lambda: fake.count("create_session") >= 2)  # the standby was turned away at least once
    owner.finish()
    fake.queue_job(ssid)
    wait_until(lambda: bool(standby_scaler.desired))
    fake.queue_job(ssid)
    wait_until(settled(fake, ssid, standby_scaler), timeout=PROMPTLY)
    assert standby_scaler.desired[-1] == assigned(fake, ssid) == 2 and never_lower(standby_scaler.desired)
    standby.finish()
    owner_client.close()
    standby_client.close()


def test_a_scale_set_that_stays_quiet_keeps_the_figure_of_the_last_message_without_extra_requests(
        held: tuple[FakeActionsService, FakeClock]) -> None:
    """Steady state costs nothing: after the first empty poll, jobs are applied as they come and no
    request beyond polls, acks and acquisitions is sent."""
    fake, clock = held
    fake.long_poll_hold = 0.2
    ssid = scale_set_on(fake, clock)
    client, scaler, running = start(fake, clock, ssid)
    wait_until(lambda: fake.count("get_message") >= 2)  # an empty poll came back: steady state
    fake.long_poll_hold = HOLD
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    for _ in range(3):
        fake.queue_job(ssid)
    wait_until(settled(fake, ssid, scaler), timeout=PROMPTLY)
    assert scaler.desired[-1] == 3 and never_lower(scaler.desired)
    assert fake.count("refresh_session") == 0
    running.finish()
    client.close()


def test_a_stop_during_a_peek_ends_the_run_promptly(held: tuple[FakeActionsService, FakeClock]) -> None:
    """A listener catching up (its poll cut short to peek) still stops at once when told."""
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    client, _, running = start(fake, clock, ssid)
    wait_until(lambda: waiting_on_the_queue(fake, ssid))
    fake.queue_job(ssid)
    stopped = threading.Event()

    def stop_soon() -> None:
        running.stop.set()
        stopped.set()

    threading.Timer(0.1, stop_soon).start()
    running.thread.join(timeout=5)
    assert stopped.is_set() and not running.thread.is_alive() and running.error is None
    client.close()


# -- the model: any interleaving of what the service and the operator do ---------------------------
class ScaleOnTime(RuleBasedStateMachine):
    """A listener runs throughout (restarted on its state file by one rule); every rule is something
    the service, an operator or another host does. After each, as an observer: the scaler settles
    on the newest figure the service sent (while the listener waits on a held poll, so a figure
    that waited for a long poll fails), and every job started or completed reached a scaler
    exactly once."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.fake = FakeActionsService(clock=self.clock, long_poll_hold=HOLD, strict=True).start()
        self.ssid = scale_set_on(self.fake, self.clock)
        self.state_dir = Path(tempfile.mkdtemp(prefix="scale-on-time-"))
        self.started: list[int] = []  # what the service announced, in order
        self.completed: list[int] = []
        self.scalers: list[RecordingScaler] = []
        self.client, self.scaler, self.running = self._start()
        self._settle()

    def _start(self) -> tuple[sc.Client, RecordingScaler, Running]:
        client, scaler, running = start(self.fake, self.clock, self.ssid, standby_interval=0.05,
                                        state_file=self.state_dir / "state.json")
        self.scalers.append(scaler)
        return client, scaler, running

    def _settle(self) -> None:
        wait_until(settled(self.fake, self.ssid, self.scaler), timeout=PROMPTLY)

    def _jobs(self, state: str) -> list[int]:
        return sorted(rid for rid, s in self.fake.job_states(self.ssid).items() if s == state)

    def _queue(self) -> None:
        self.fake.queue_job(self.ssid)

    @rule()
    def queue_a_job(self) -> None:
        self._queue()
        self._settle()

    def _move_one(self, data: st.DataObject, state: str, move: Callable[[int], None],
                  announced: list[int] | None = None) -> None:
        """Move one job in ``state`` on (drawn by hypothesis), then settle."""
        jobs = self._jobs(state)
        if jobs:
            rid = data.draw(st.sampled_from(jobs))
            move(rid)
            if announced is not None:
                announced.append(rid)
            self._settle()

    @rule(data=st.data())
    def start_a_job(self, data: st.DataObject) -> None:
        self._move_one(data, "acquired", self.fake.start_job, self.started)

    @rule(data=st.data())
    def complete_a_job(self, data: st.DataObject) -> None:
        self._move_one(data, "running", self.fake.complete_job, self.completed)

    @rule(data=st.data())
    def cancel_a_job_silently(self, data: st.DataObject) -> None:
        self._move_one(data, "acquired", lambda rid: self.fake.cancel_job(rid, announce=False))

    @rule()
    def expire_the_queue_token(self) -> None:
        self.fake.expire_queue_tokens()
        self._queue()
        self._settle()

    @rule()
    def evict_the_session(self) -> None:
        self.fake.evict_session(self.ssid)
        self._queue()
        self._settle()

    @rule()
    def another_host_holds_the_scale_set_for_a_while(self) -> None:
        other = client_for(self.fake, self.clock)
        self.fake.evict_session(self.ssid)
        try:
            foreign: sc.MessageSession | None = other.message_session(self.ssid, owner="other-host")
        except sc.SessionConflictError:
            foreign = None  # our listener renewed first
        self._queue()
        if foreign is not None:
            turned_away = self.fake.count("create_session") + 1
            wait_until(lambda: self.fake.count("create_session") > turned_away)  # a 409 for ours meanwhile
            foreign.close()
        other.close()
        self._settle()

    @rule()
    def broker_outage(self) -> None:
        self.fake.stop("broker")
        self._queue()
        self.fake.start_server("broker")
        self._settle()

    @rule()
    def recover(self) -> None:
        self.client.recover()
        self._settle()

    @rule()
    def restart_on_the_state_file(self) -> None:
        self.running.finish()
        self.client.close()
        self._queue()
        self.client, self.scaler, self.running = self._start()
        self._settle()

    @invariant()
    def every_job_event_reached_a_scaler_exactly_once(self) -> None:
        assert [rid for s in self.scalers for rid in s.started] == self.started
        assert [rid for s in self.scalers for rid in s.completed] == self.completed

    def teardown(self) -> None:
        try:
            self.running.finish()
            self.client.close()
        finally:
            self.fake.close()
            shutil.rmtree(self.state_dir, ignore_errors=True)


ScaleOnTime.TestCase.settings = settings(max_examples=6, stateful_step_count=8, deadline=None,
                                         suppress_health_check=list(HealthCheck), derandomize=True)
test_the_scaler_follows_the_service_through_any_interleaving = ScaleOnTime.TestCase


def test_a_queue_that_never_pauses_does_not_hold_a_figure_back_past_the_limit(
        held: tuple[FakeActionsService, FakeClock], monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages every 0.1 s from the session's opening on: no peek ever finds the queue quiet, so
    catching up is settled at its limit (1 s here) with one request, while the stream still runs."""
    import scaleset_client._listener as listener_module

    monkeypatch.setattr(listener_module, "CATCH_UP_LIMIT", 1.0)
    fake, clock = held
    ssid = scale_set_on(fake, clock)
    stop_stream = threading.Event()

    def stream() -> None:
        figure = 0
        while not stop_stream.wait(0.1):
            figure += 1
            fake.push_message(ssid, [], statistics=stats(figure))

    client, scaler, running = start(fake, clock, ssid)
    feeder = threading.Thread(target=stream, daemon=True)
    wait_until(lambda: bool(scaler.desired))
    feeder.start()
    try:
        wait_until(lambda: any(d > 0 for d in scaler.desired), timeout=PROMPTLY)
        # settled with one request while the stream still runs: the queue never paused for it
        assert fake.count("refresh_session") >= 1
    finally:
        stop_stream.set()
        feeder.join(timeout=5)
    running.finish()
    client.close()
