"""Restart survival: a cron job started every minute during a broker outage.

Each run is a new Client and Listener (``run(duration=55)``, as ``scaleset-listen --once`` does)
sharing one state file, so breakers and the cursor survive between runs. The baseline is the same
schedule with a fresh ``requests`` session and urllib3 Retry each run (nothing survives). Virtual
time (FakeClock; urllib3's sleeps routed to it); connection attempts to the broker are counted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService, FakeClock

from ._util import ConnectCounter, NoOpScaler, Row, bench_main, ratio, urllib3_virtual_time

RUN_SECONDS = 55.0


def _ours(runs: int, counter: ConnectCounter) -> tuple[int, int]:
    clock = FakeClock(start=0.0, seed=9)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.0).start()
    setup = sc.Client(fake.config_url, token=fake.token, clock=clock)
    scale_set = setup.create_runner_scale_set(sc.RunnerScaleSet(name="cron"))
    setup.close()
    fake.stop("broker")
    skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        for minute in range(runs):
            clock.advance(max(0.0, minute * 60.0 - clock.monotonic()))
            client = sc.Client(fake.config_url, token=fake.token, clock=clock, timeout=(2.0, 5.0),
                               long_poll_timeout=5.0)
            listener = sc.Listener(client, sc.ListenerConfig(scale_set.id, 5, state_file=state))
            try:
                listener.run(NoOpScaler(), until_idle=True, duration=RUN_SECONDS)
            except sc.RunSkippedError:
                skipped += 1
            client.close()
    port = fake.servers["broker"].port
    fake.close()
    return counter.counts[port], skipped


def _baseline(runs: int, counter: ConnectCounter) -> int:
    clock = FakeClock(start=0.0, seed=9)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.0).start()
    setup = sc.Client(fake.config_url, token=fake.token, clock=clock)
    scale_set = setup.create_runner_scale_set(sc.RunnerScaleSet(name="cron"))
    session = setup.message_session(scale_set.id)
    url, token = session.session.message_queue_url, session.session.message_queue_access_token
    fake.stop("broker")
    with urllib3_virtual_time(clock):
        for minute in range(runs):
            clock.advance(max(0.0, minute * 60.0 - clock.monotonic()))
            end = clock.monotonic() + RUN_SECONDS
            plain = requests.Session()
            plain.mount("http://", HTTPAdapter(max_retries=Retry(
                total=3, backoff_factor=1, status_forcelist=(500, 502, 503, 504), respect_retry_after_header=True)))
            while clock.monotonic() < end:
                try:
                    plain.get(url, headers={"Authorization": f"Bearer {token}", "X-ScaleSetMaxCapacity": "1"},
                              timeout=(2.0, 5.0))
                    break
                except requests.RequestException:
                    clock.sleep(1.0)
            plain.close()
    port = fake.servers["broker"].port
    setup.close()
    fake.close()
    return counter.counts[port]


def run(quick: bool = False) -> list[Row]:
    runs = 10 if quick else 30
    counter = ConnectCounter()
    with counter.installed():
        ours, skipped = _ours(runs, counter)
        counter.counts.clear()
        base = _baseline(runs, counter)
    return [
        Row("restarts", f"broker requests over {runs} cron runs, one a minute, broker down", str(ours), str(base),
            ratio(ours, base), "<= 0.33", base > 0 and ours <= base / 3),
        Row("restarts", "runs skipped at once (state file says the broker is down)", str(skipped), "0", "", ""),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
