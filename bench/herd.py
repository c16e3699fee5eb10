"""Thundering herd: N clients recover from the same outage; is the broker stampeded?

N clients run in N threads on one shared virtual clock (``SimClock``: time moves only when every
client sleeps), over real sockets to one fake broker. A healthy empty poll is held 50 s by the real
service; the loops sleep that long after one. The broker is down from minute 10 to minute 30.
Measured at the fake: the busiest second after the return, against the steady rate before the
outage, for this client and for the urllib3 Retry baseline (its Retry sleeps use the same clock).
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

from ._util import Row, SimClock, bench_main, urllib3_virtual_time

HOLD = 50.0
OUTAGE = (600.0, 1800.0)
HORIZON = 2400.0


def _herd(clients: int, ours: bool) -> tuple[int, float, int]:
    clock = SimClock(start=0.0, seed=5)
    fake = FakeActionsService(clock=clock, long_poll_hold=0.0).start()  # type: ignore[arg-type]
    setup = sc.Client(fake.config_url, token=fake.token, clock=clock)  # type: ignore[arg-type]
    scale_sets = [setup.create_runner_scale_set(sc.RunnerScaleSet(name=f"herd-{i}")).id for i in range(clients)]
    setup.close()

    def loop(i: int) -> None:
        with clock.participant():
            client = sc.Client(fake.config_url, token=fake.token, clock=clock,  # type: ignore[arg-type]
                               timeout=(2.0, 5.0), long_poll_timeout=5.0)
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
            clock.sleep(HOLD * i / clients)  # a long-running fleet polls spread over one hold
            while clock.monotonic() < HORIZON:
                try:
                    poll()
                    clock.sleep(HOLD)
                except sc.CircuitOpenError as exc:
                    clock.sleep((exc.retry_after if exc.retry_after is not None else 1.0) + clock.random() * 0.5)
                except sc.ScalesetError:
                    clock.sleep(1.0)
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
    stamps = [r.time for r in fake.requests("get_message")]
    fake.close()
    per_second = Counter(int(t) for t in stamps)
    steady = sum(n for s, n in per_second.items() if 100 <= s < OUTAGE[0]) / (OUTAGE[0] - 100)
    window = range(int(OUTAGE[1]), int(OUTAGE[1]) + 300)
    peak = max(per_second.get(s, 0) for s in window)
    busy = [s for s in window if per_second.get(s, 0)]
    return peak, steady, (busy[-1] - busy[0]) if busy else 0


def run(quick: bool = False, clients: int = 100) -> list[Row]:
    clients = 30 if quick else clients
    peak, steady, _ = _herd(clients, ours=True)
    base_peak, base_steady, _ = _herd(clients, ours=False)
    return [
        Row("herd", f"peak requests in one second after the outage, {clients} clients", str(peak),
            str(base_peak), f"{peak / steady:.1f}x steady (baseline {base_peak / base_steady:.1f}x)",
            "<= 3x steady", peak <= 3 * steady),
        Row("herd", "steady requests per second before the outage", f"{steady:.2f}", f"{base_steady:.2f}", "", ""),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
