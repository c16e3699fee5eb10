"""Load on a dead broker and time to recover: this client against a urllib3 Retry poll loop.

The broker's port is closed (connection refused) for ``--minutes`` of virtual time, then comes
back. Both clients poll it in the usual listener loop ("poll; on error sleep 1 s"); connection
attempts are counted at urllib3's socket layer, so both are measured the same way. Time is a
FakeClock for both (urllib3's Retry sleeps are routed to it), so 30 minutes run in seconds while
every request still goes over a real socket.

    python -m bench.outage            # 30 virtual minutes
    python -m bench.outage --minutes 10
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from ._util import ConnectCounter, table, urllib3_virtual_time


@dataclass
class OutageResult:
    name: str
    per_minute_after_first: float
    first_minute: int
    total: int
    recovery_seconds: float | None


def _setup(clock: FakeClock) -> tuple[FakeActionsService, sc.Client, sc.MessageSession]:
    fake = FakeActionsService(clock=clock, long_poll_hold=0.01).start()
    client = sc.Client(fake.config_url, token=fake.token, clock=clock, timeout=(2.0, 5.0), long_poll_timeout=5.0)
    scale_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bench"))
    return fake, client, client.message_session(scale_set.id)


def _measure(name: str, clock: FakeClock, fake: FakeActionsService, counter: ConnectCounter, minutes: float,
             poll: Any) -> OutageResult:
    port = fake.servers["broker"].port
    counter.clock = clock
    start = clock.monotonic()
    back_at = start + minutes * 60
    end = back_at + 600
    fake.stop("broker")
    restarted = False
    recovered_at: float | None = None
    while clock.monotonic() < end and recovered_at is None:
        if not restarted and clock.monotonic() >= back_at:
            fake.start_server("broker")
            restarted = True
        if poll():
            recovered_at = clock.monotonic() if restarted else None
    times = [t - start for t in counter.times.get(port, []) if t - start < minutes * 60]
    after = [t for t in times if t >= 60]
    per_minute = len(after) / max(1e-9, (minutes * 60 - 60) / 60)
    return OutageResult(name, per_minute, sum(1 for t in times if t < 60), len(times),
                        None if recovered_at is None else recovered_at - back_at)


def run_client(minutes: float, counter: ConnectCounter) -> OutageResult:
    clock = FakeClock(seed=11)
    fake, client, session = _setup(clock)

    def poll() -> bool:
        try:
            session.get_message(0, 1)
            return True
        except sc.CircuitOpenError as exc:
            clock.sleep(exc.retry_after if exc.retry_after is not None else 1.0)
        except sc.ScalesetError:
            clock.sleep(1.0)
        return False

    try:
        return _measure("scaleset_client", clock, fake, counter, minutes, poll)
    finally:
        client.close()
        fake.close()


def run_baseline(minutes: float, counter: ConnectCounter) -> OutageResult:
    clock = FakeClock(seed=11)
    fake, client, session = _setup(clock)
    plain = requests.Session()
    retry = Retry(total=3, backoff_factor=1, status_forcelist=(500, 502, 503, 504), respect_retry_after_header=True)
    plain.mount("http://", HTTPAdapter(max_retries=retry))
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
            return _measure("requests + urllib3 Retry(3, backoff 1)", clock, fake, counter, minutes, poll)
    finally:
        plain.close()
        client.close()
        fake.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="virtual minutes of outage (default 30)")
    args = parser.parse_args(argv)
    counter = ConnectCounter()
    with counter.installed():
        ours = run_client(args.minutes, counter)
        counter.times.clear()
        base = run_baseline(args.minutes, counter)
    cap = sc.CircuitBreakerConfig().max_open_duration * (1 + sc.CircuitBreakerConfig().jitter)
    rows = [("measure", ours.name, base.name, "ratio", "target")]
    rows.append(("requests/min to the dead broker after minute 1", f"{ours.per_minute_after_first:.2f}",
                 f"{base.per_minute_after_first:.2f}",
                 f"{ours.per_minute_after_first / max(base.per_minute_after_first, 1e-9):.3f}", "<= 1.2/min"))
    rows.append(("requests in the first minute", str(ours.first_minute), str(base.first_minute),
                 f"{ours.first_minute / max(base.first_minute, 1):.2f}", "<= 10"))
    rows.append((f"requests over {args.minutes:g} min", str(ours.total), str(base.total),
                 f"{ours.total / max(base.total, 1):.3f}", ""))
    rows.append(("seconds from recovery to first success",
                 f"{ours.recovery_seconds:.1f}" if ours.recovery_seconds is not None else "never",
                 f"{base.recovery_seconds:.1f}" if base.recovery_seconds is not None else "never", "",
                 f"<= {cap:.0f} s (capped break) + 1 request"))
    print(f"Outage of {args.minutes:g} virtual minutes, connection refused, one client each\n")
    print(table(rows))
    ok = (ours.per_minute_after_first <= 1.2 and ours.recovery_seconds is not None
          and ours.recovery_seconds <= cap + 5)
    print("\nresult:", "targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
