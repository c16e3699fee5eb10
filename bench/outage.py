"""Load on a dead broker and time to recover: this client against a urllib3 Retry poll loop.

Dead server (connection refused): both clients poll the broker in the usual listener loop ("poll;
on error sleep 1 s"); connection attempts are counted at urllib3's socket layer, the same way for
both. Time is a FakeClock for both (urllib3's Retry sleeps are routed to it), so 30 minutes run in
about a second while every request still goes over a real socket.

Black hole (accepts, never answers): read timeouts need real time, so this one runs in real time
with every duration of both clients (timeouts, backoff, breaks, the loop's 1 s sleep) scaled down
by the same factor; rates are reported per scaled minute. Requests are counted at the fake.

Recovery: time from the broker's return to the first successful poll (passive, and after
``client.recover()``), and to the first message handled by a Listener; the refused-broker runs
and the recoveries are repeated over several clock seeds (the jitter of breaks and backoff) and
reported as median [min–max]. Each seed also moves the return by its own offset within one
minute (``return_offset``): the TCP looks at a refusing broker keep a fixed period from the first
failure, so a return at exactly minute 30 for every seed would land on the same point of that
period each time (on a look, for any period dividing 30 minutes) and flatter the passive rows.

    python -m bench.outage            # 30 virtual minutes (+ the seed's offset)
    python -m bench.outage --minutes 10
    python -m bench.outage --check 20 # CircuitBreakerConfig(reachability_check=20), an option measured
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock, Fault

from ._util import ConnectCounter, Row, median, ratio, rows_table, spread, urllib3_virtual_time

RETURN_SPREAD = 60.0


def return_offset(seed: int) -> float:
    """Seconds after the nominal return at which the broker comes back for ``seed``: spread over
    one minute by the golden ratio, so 11 seeds sample the whole minute about evenly."""
    return RETURN_SPREAD * ((seed * 0.6180339887498949) % 1.0)


@dataclass
class OutageResult:
    per_minute_after_first: float
    first_minute: int
    total: int
    recovery_seconds: float | None
    looks_per_minute: float = 0.0


class _BackAt(FakeClock):
    """A FakeClock that runs ``action`` once when virtual time passes ``at``."""

    def __init__(self, at: float, action: Callable[[], None], **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.at, self.action, self.fired = at, action, False

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        now = self.monotonic()
        if self.fired or now + seconds < self.at:
            return super().sleep(seconds, interrupt)
        # The moment comes during this wait: advance to it, act, and honour an interrupt the
        # action raised (recover() wakes waiting calls), as a real interruptible sleep would.
        super().sleep(max(0.0, self.at - now), interrupt)
        self.fired = True
        self.action()
        if interrupt is not None and interrupt.is_set():
            return True
        return super().sleep(max(0.0, now + seconds - self.monotonic()), interrupt)


def _setup(clock: sc.Clock, hold: float = 0.01, **client_kwargs: object
           ) -> tuple[FakeActionsService, sc.Client, sc.MessageSession]:
    fake = FakeActionsService(clock=clock, long_poll_hold=hold).start()
    kwargs: dict[str, object] = {"timeout": (2.0, 5.0), "long_poll_timeout": 5.0, **client_kwargs}
    client = sc.Client(fake.config_url, token=fake.token, clock=clock, **kwargs)  # type: ignore[arg-type]
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bench"))
    return fake, client, client.message_session(scale_set.id)


def _measure(clock: _BackAt, fake: FakeActionsService, counter: ConnectCounter, minutes: float,
             poll: Callable[[], bool], on_back: Callable[[], None] | None = None,
             offset: float = 0.0) -> OutageResult:
    """Poll until the first success after the broker returns; it returns exactly ``minutes`` of
    virtual time (plus ``offset`` seconds) after the start, from inside the clock (even in the
    middle of a call's wait). The load rows count the first ``minutes`` only."""
    port = fake.servers["broker"].port
    counter.clock = clock
    counter.times.clear()
    counter.looks.clear()
    start = clock.monotonic()
    clock.at = start + minutes * 60 + offset

    def back() -> None:
        fake.start_server("broker")
        if on_back is not None:
            on_back()

    clock.action = back
    end = clock.at + 600
    fake.stop("broker")
    recovered_at: float | None = None
    while clock.monotonic() < end and recovered_at is None:
        if poll() and clock.fired:
            recovered_at = clock.monotonic()
    times = [t - start for t in counter.times.get(port, []) if t - start < minutes * 60]
    after = [t for t in times if t >= 60]
    per_minute = len(after) / max(1e-9, (minutes * 60 - 60) / 60)
    looks = [t - start for t in counter.looks.get(port, []) if 60 <= t - start < minutes * 60]
    return OutageResult(per_minute, sum(1 for t in times if t < 60), len(times),
                        None if recovered_at is None else recovered_at - clock.at,
                        len(looks) / max(1e-9, (minutes * 60 - 60) / 60))


def _resilience(breaker: sc.CircuitBreakerConfig | None) -> sc.ResilienceConfig:
    return sc.ResilienceConfig(circuit_breaker=breaker or sc.CircuitBreakerConfig())


def run_client(minutes: float, counter: ConnectCounter, use_recover: bool = False, seed: int = 11,
               breaker: sc.CircuitBreakerConfig | None = None) -> OutageResult:
    clock = _BackAt(at=float("inf"), action=lambda: None, seed=seed)
    fake, client, session = _setup(clock, resilience=_resilience(breaker))

    def poll() -> bool:
        try:
            session.get_message(0, 1)
            return True
        except sc.CircuitOpenError as exc:
            # As the docs advise a loop of one's own: a wait that recover() ends.
            client.pause(exc.retry_after if exc.retry_after is not None else 1.0)
        except sc.ScalesetError:
            client.pause(1.0)
        return False

    try:
        return _measure(clock, fake, counter, minutes, poll,
                        on_back=(lambda: client.recover(force=True)) if use_recover else None,
                        offset=return_offset(seed))
    finally:
        client.close()
        fake.close()


def _baseline_session(read_timeout: float, scale: float = 1.0) -> requests.Session:
    plain = requests.Session()
    retry = Retry(total=3, backoff_factor=1 * scale, status_forcelist=(500, 502, 503, 504),
                  respect_retry_after_header=True)
    plain.mount("http://", HTTPAdapter(max_retries=retry))
    return plain


def run_baseline(minutes: float, counter: ConnectCounter, seed: int = 11) -> OutageResult:
    clock = _BackAt(at=float("inf"), action=lambda: None, seed=seed)
    fake, client, session = _setup(clock)
    plain = _baseline_session(5.0)
    headers = {"Authorization": f"Bearer {session.session.message_queue_access_token}",
               "Accept": "application/json; api-version=6.0-preview", "X-ScaleSetMaxCapacity": "1"}
    url = session.session.message_queue_url

    def poll() -> bool:
        try:
            plain.get(url, headers=headers, timeout=(2.0, 5.0)).raise_for_status()
            return True
        except requests.RequestException:
            clock.sleep(1.0)
            return False

    try:
        with urllib3_virtual_time(clock):
            return _measure(clock, fake, counter, minutes, poll, offset=return_offset(seed))
    finally:
        plain.close()
        client.close()
        fake.close()


def listener_recovery(minutes: float, seed: int = 11, breaker: sc.CircuitBreakerConfig | None = None
                      ) -> float | None:
    """Virtual seconds from the broker's return to the first message the scaler handles."""
    box: dict[str, object] = {}

    def back() -> None:
        fake = box["fake"]
        assert isinstance(fake, FakeActionsService)
        fake.start_server("broker")
        fake.push_message(int(str(box["id"])), [{"messageType": "JobStarted", "runnerRequestId": 1}],
                          statistics={"totalAssignedJobs": 1})

    clock = _BackAt(at=1000.0 + minutes * 60 + return_offset(seed), action=back, start=1000.0, seed=seed)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.01).start()
    client = sc.Client(fake.config_url, token=fake.token, clock=clock, timeout=(2.0, 5.0), long_poll_timeout=5.0,
                       resilience=_resilience(breaker))
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bench"))
    box.update(fake=fake, id=scale_set.id)
    stop = threading.Event()
    handled: list[float] = []

    class Scaler:
        def handle_job_started(self, job: sc.JobStarted) -> None:
            handled.append(clock.monotonic())
            stop.set()

        def handle_job_completed(self, job: sc.JobCompleted) -> None:
            return None

        def handle_desired_runner_count(self, count: int) -> int:
            return count

    listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5))
    fake.stop("broker")
    listener.run(Scaler(), stop, duration=minutes * 60 + 600)
    client.close()
    fake.close()
    return handled[0] - clock.at if handled else None


def black_hole(minutes: float, scale: float) -> tuple[float, float]:
    """Requests per scaled minute after the first, (ours, baseline), against a broker that never answers."""
    results = []
    for which in ("ours", "baseline"):
        clock = sc.SystemClock(seed=3)
        resilience = sc.ResilienceConfig(
            retry=sc.RetryConfig(backoff_base=0.5 * scale, backoff_max=30 * scale, max_hint_wait=120 * scale,
                                 deadline=120 * scale),
            circuit_breaker=sc.CircuitBreakerConfig(open_duration=5 * scale, max_open_duration=60 * scale,
                                                    reset_after=600 * scale))
        fake, client, session = _setup(clock, timeout=(5.05 * scale, 30 * scale), long_poll_timeout=75 * scale,
                                       resilience=resilience)
        fake.inject_always("get_message", Fault.hang(3600))
        fake.clear_log()
        start = time.monotonic()
        end = start + minutes * 60 * scale
        stamps: list[float] = []
        if which == "ours":
            while time.monotonic() < end:
                try:
                    session.get_message(0, 1)
                except sc.CircuitOpenError as exc:
                    time.sleep(min(exc.retry_after or scale, max(0.0, end - time.monotonic())))
                except sc.ScalesetError:
                    time.sleep(scale)
        else:
            plain = _baseline_session(75 * scale, scale)
            headers = {"Authorization": f"Bearer {session.session.message_queue_access_token}",
                       "X-ScaleSetMaxCapacity": "1"}
            while time.monotonic() < end:
                try:
                    plain.get(session.session.message_queue_url, headers=headers, timeout=(5 * scale, 75 * scale))
                except requests.RequestException:
                    time.sleep(scale)
            plain.close()
        stamps = [r.time - start for r in fake.requests("get_message")]
        after = [t for t in stamps if 60 * scale <= t < minutes * 60 * scale]
        results.append(len(after) / max(1e-9, minutes - 1))
        fake.release_hangs()
        client.close()
        fake.close()
    return results[0], results[1]


def run(quick: bool = False, minutes: float = 30.0, check: float | None = None) -> list[Row]:
    minutes = 10.0 if quick and minutes == 30.0 else minutes
    seeds = range(1, 4) if quick else range(1, 12)
    breaker = None if check is None else sc.CircuitBreakerConfig(reachability_check=check)
    counter = ConnectCounter()
    ours: list[OutageResult] = []
    with_recover: list[OutageResult] = []
    base: list[OutageResult] = []
    listener: list[float | None] = []
    with counter.installed():
        for seed in seeds:
            ours.append(run_client(minutes, counter, seed=seed, breaker=breaker))
            with_recover.append(run_client(minutes, counter, use_recover=True, seed=seed, breaker=breaker))
            base.append(run_baseline(minutes, counter, seed=seed))
    for seed in seeds:
        listener.append(listener_recovery(min(minutes, 10.0), seed=seed, breaker=breaker))
    bh_minutes, bh_scale = (3.0, 1 / 120) if quick else (10.0, 1 / 30)
    bh_ours, bh_base = black_hole(bh_minutes, bh_scale)
    name = "outage"
    n = f"{len(seeds)} seeds" + ("" if check is None else f", reachability_check={check:g}")
    load = [r.per_minute_after_first for r in ours]
    load_base = [r.per_minute_after_first for r in base]
    first = [float(r.first_minute) for r in ours]
    passive = [r.recovery_seconds for r in ours]
    recovered = [r.recovery_seconds for r in with_recover]
    return [
        Row(name, f"requests/min to a refused broker after minute 1 ({minutes:g} min, {n})",
            spread(load, "{:.2f}"), spread(load_base, "{:.2f}"), ratio(median(load), median(load_base)),
            "<= 1.2/min", max(load) <= 1.2),
        Row(name, f"TCP looks/min at the refused broker after minute 1 (connect and close, no HTTP; {n})",
            spread([r.looks_per_minute for r in ours], "{:.1f}"), "", "", "", None),
        Row(name, f"requests in the first minute ({n})", spread(first, "{:.0f}"),
            spread([float(r.first_minute) for r in base], "{:.0f}"), "", "<= 10", max(first) <= 10),
        Row(name, f"requests/min to a black hole after minute 1 ({bh_minutes:g} scaled min, one run)",
            f"{bh_ours:.2f}", f"{bh_base:.2f}", ratio(bh_ours, bh_base), "<= 1.2/min", bh_ours <= 1.2),
        Row(name, f"seconds from return to first success, passive ({n})", _spread(passive),
            _spread([r.recovery_seconds for r in base]), "", "median <= 10 s, max <= 30 s", _quick(passive)),
        Row(name, f"seconds from return to first success with recover() ({n})", _spread(recovered), "", "",
            "<= 5 s", _quick(recovered, 5.0, 5.0)),
        Row(name, f"seconds from return to first handled message, Listener ({n})", _spread(listener), "", "",
            "median <= 10 s, max <= 30 s", _quick(listener)),
    ]


def _quick(values: list[float | None], typical: float = 10.0, worst: float = 30.0) -> bool:
    """Issue 14's recovery target: every run recovered, median within ``typical``, all within ``worst``."""
    done = [v for v in values if v is not None]
    return len(done) == len(values) and median(done) <= typical and max(done) <= worst


def _spread(values: list[float | None]) -> str:
    """Median [min–max] of the runs that recovered, and how many never did."""
    done = [v for v in values if v is not None]
    never = len(values) - len(done)
    text = spread(done, "{:.1f}") if done else "never"
    return text + (f" ({never} never)" if never and done else "")


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="virtual minutes of outage (default 30)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", type=float, default=None,
                        help="CircuitBreakerConfig.reachability_check (default: the default config)")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.minutes, args.check)
    print(rows_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
