"""Thundering herd: N clients recover from the same outage; is the broker stampeded?

N clients run in N threads on one shared virtual clock (``SimClock``: time moves only when every
client sleeps), over real sockets to one fake broker. A healthy empty poll is held 50 s by the real
service; the loops sleep that long after one. The broker is down from minute 10 to minute 30.
Measured at the fake: the busiest second after the return, against the steady rate before the
outage, for this client and for the urllib3 Retry baseline (its Retry sleeps use the same clock);
and each client's recovery, the virtual seconds from the return to its first successful poll
(median and max over the fleet).

    python -m bench.herd                          # 100 clients, default CircuitBreakerConfig
    python -m bench.herd --seeds 3                # the same, clock seeds 5, 6, 7
    python -m bench.herd --check 15 --ours-only   # reachability_check=15 (an option measured)
    python -m bench.herd --stagger 1 --ours-only  # a fleet polling in step (all within 1 s)
    python -m bench.herd --shared --ours-only     # one client's 100 sessions (a --config process)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from collections import Counter
from collections.abc import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

from ._util import Row, SimClock, rows_table, urllib3_virtual_time

HOLD = 50.0
OUTAGE = (600.0, 1800.0)
HORIZON = 2400.0


class HerdResult:
    """One run: the busiest second after the return, the steady rate before, and each client's
    seconds from the return to its first successful poll (None: never within the horizon)."""

    def __init__(self, peak: int, steady: float, recoveries: list[float | None],
                 per_second: Counter[int] | None = None) -> None:
        self.peak, self.steady, self.recoveries = peak, steady, recoveries
        self.per_second = per_second or Counter()

    def recovered(self) -> list[float]:
        return [r for r in self.recoveries if r is not None]


def _herd(clients: int, ours: bool, seed: int = 5,
          breaker: sc.CircuitBreakerConfig | None = None, stagger: float = HOLD, shared: bool = False) -> HerdResult:
    clock = SimClock(start=0.0, seed=seed)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.0).start()  # type: ignore[arg-type]
    setup = sc.Client(fake.config_url, token=fake.token, clock=clock)  # type: ignore[arg-type]
    scale_sets = [setup.create_runner_scale_set(sc.RunnerScaleSet(name=f"herd-{i}")).id for i in range(clients)]
    setup.close()
    first_success: list[float | None] = [None] * clients
    resilience = sc.ResilienceConfig(circuit_breaker=breaker or sc.CircuitBreakerConfig())

    def new_client() -> sc.Client:
        return sc.Client(fake.config_url, token=fake.token, clock=clock,  # type: ignore[arg-type]
                         timeout=(2.0, 5.0), long_poll_timeout=5.0, resilience=resilience)

    one = new_client() if shared else None  # one client's many sessions (as --config runs them)

    def loop(i: int) -> None:
        with clock.participant():
            client = one or new_client()
            session = client.message_session(scale_sets[i])
            poll: Callable[[], None]
            if ours:
                def poll() -> None:
                    session.get_message(0, 1)
            else:
                plain = requests.Session()
                plain.mount("http://", HTTPAdapter(max_retries=Retry(
                    total=3, backoff_factor=1, status_forcelist=(500, 502, 503, 504), respect_retry_after_header=True)))
                headers = {"Authorization": f"Bearer {session.session.message_queue_access_token}",
                           "X-ScaleSetMaxCapacity": "1"}

                def poll() -> None:
                    try:
                        plain.get(session.session.message_queue_url, headers=headers,
                                  timeout=(2.0, 5.0)).raise_for_status()
                    except requests.RequestException as exc:
                        raise sc.TransportError(str(exc)) from exc
            clock.sleep(stagger * i / clients)  # a long-running fleet polls spread over one hold
            while clock.monotonic() < HORIZON:
                try:
                    poll()
                    if first_success[i] is None and clock.monotonic() >= OUTAGE[1]:
                        first_success[i] = clock.monotonic() - OUTAGE[1]
                    clock.sleep(HOLD)
                except sc.CircuitOpenError as exc:
                    clock.sleep((exc.retry_after if exc.retry_after is not None else 1.0) + clock.random() * 0.5)
                except sc.ScalesetError:
                    clock.sleep(1.0)
            if one is None:
                client.close()

    def controller() -> None:
        with clock.participant():
            clock.sleep(OUTAGE[0])
            fake.stop("broker")
            clock.sleep(OUTAGE[1] - OUTAGE[0])
            fake.start_server("broker")

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    threads.append(threading.Thread(target=controller, daemon=True))
    with urllib3_virtual_time(clock):  # type: ignore[arg-type]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    if one is not None:
        one.close()
    stamps = [r.time for r in fake.requests("get_message")]
    fake.close()
    per_second = Counter(int(t) for t in stamps)
    steady = sum(n for s, n in per_second.items() if 100 <= s < OUTAGE[0]) / (OUTAGE[0] - 100)
    window = range(int(OUTAGE[1]), int(OUTAGE[1]) + 300)
    peak = max(per_second.get(s, 0) for s in window)
    return HerdResult(peak, steady, first_success, per_second)


def _recovery(results: list[HerdResult]) -> tuple[str, bool]:
    """Median and max recovery over the fleet, per run (runs separated by ``;``), and whether
    every client of every run came back with the fleet's median within 10 s."""
    parts, ok = [], True
    for r in results:
        done = r.recovered()
        if not done:
            parts.append("never")
            ok = False
            continue
        never = len(r.recoveries) - len(done)
        med = statistics.median(done)
        parts.append(f"{med:.1f} / {max(done):.1f}" + (f" ({never} never)" if never else ""))
        ok = ok and not never and med <= 10.0
    return "; ".join(parts), ok


def run(quick: bool = False, clients: int = 100, seeds: int = 1, check: float | None = None,
        ours_only: bool = False, stagger: float = HOLD, shared: bool = False) -> list[Row]:
    clients = 30 if quick else clients
    breaker = sc.CircuitBreakerConfig() if check is None else sc.CircuitBreakerConfig(reachability_check=check)
    ours = [_herd(clients, True, 5 + k, breaker, stagger, shared) for k in range(seeds)]
    base = [] if ours_only else [_herd(clients, False, 5 + k, None, stagger) for k in range(seeds)]
    load = f"{clients} clients, polls held {HOLD:g} s, broker refused {OUTAGE[0]:g}-{OUTAGE[1]:g} s"
    if stagger != HOLD:
        load += f", polls spread over {stagger:g} s"
    if check is not None:
        load += f", reachability_check={check:g}"
    if shared:
        load += ", ours: one client's sessions"
    if seeds > 1:
        load += f", {seeds} seeds"
    peaks = "; ".join(str(r.peak) for r in ours)
    times = "; ".join(f"{r.peak / r.steady:.1f}x" for r in ours)
    base_peaks = "; ".join(str(r.peak) for r in base)
    base_times = "; ".join(f"{r.peak / r.steady:.1f}x" for r in base)
    recovery, recovery_ok = _recovery(ours)
    return [
        Row("herd", f"peak requests in one second after the outage ({load})", peaks, base_peaks,
            f"{times} steady" + (f" (baseline {base_times})" if base else ""),
            "<= 3x steady", all(r.peak <= 3 * r.steady for r in ours)),
        Row("herd", "steady requests per second before the outage",
            "; ".join(f"{r.steady:.2f}" for r in ours), "; ".join(f"{r.steady:.2f}" for r in base), "", ""),
        Row("herd", "seconds from the return to each client's first successful poll, median / max",
            recovery, "", "", "median <= 10 s", recovery_ok),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 clients")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1, help="clock seeds 5, 6, ... (default 1)")
    parser.add_argument("--check", type=float, default=None,
                        help="CircuitBreakerConfig.reachability_check (default: the default config)")
    parser.add_argument("--ours-only", action="store_true", help="skip the urllib3 baseline")
    parser.add_argument("--shared", action="store_true",
                        help="ours: one client with a session per scale set (as --config runs them)")
    parser.add_argument("--stagger", type=float, default=HOLD,
                        help=f"seconds the fleet's polls are spread over (default {HOLD:g}, one hold)")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.clients, args.seeds, args.check, args.ours_only, args.stagger, args.shared)
    print(rows_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
