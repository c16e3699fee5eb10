"""Listener throughput: messages handled per second with a no-op scaler, against a bare
``requests`` loop doing the same two calls per message (poll, ack) and parsing the body.

The fake service runs in its own process; the bare session has ``trust_env=False`` and the
same headers. Each run drains ``count`` queued messages with both, in alternating order; the
ratio is per run, reported as the median with its range.

    python -m bench.throughput
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import requests

import scaleset_client as sc

from ._remote import RemoteFake
from ._util import NoOpScaler, Row, bench_main, spread


def _fill(fake: RemoteFake, scale_set_id: int, count: int) -> None:
    for i in range(count):
        fake.call("push_message", scale_set_id, [{"messageType": "JobStarted", "runnerRequestId": i + 1}],
                  statistics={"totalAssignedJobs": 1})


def _ours(client: sc.Client, scale_set_id: int) -> Callable[[], int]:
    def drain() -> int:
        listener = sc.Listener(client, sc.ListenerConfig(scale_set_id, 5))
        listener.run(NoOpScaler(), until_idle=True)
        return listener.handled_messages

    return drain


def _bare(client: sc.Client, scale_set_id: int) -> tuple[Callable[[], int], Callable[[], None]]:
    session = client.message_session(scale_set_id)
    bare = requests.Session()
    bare.trust_env = False
    headers = {"Authorization": f"Bearer {session.session.message_queue_access_token}",
               "Accept": "application/json; api-version=6.0-preview", "X-ScaleSetMaxCapacity": "5",
               "User-Agent": client.system_info.user_agent()}
    url = session.session.message_queue_url
    box = {"last": 0}

    def drain() -> int:
        handled = 0
        while True:
            last = box["last"]
            response = bare.get(url, params={"lastMessageId": last} if last else None, headers=headers,
                                timeout=(5.05, 75))
            response.raise_for_status()
            if response.status_code == 202:
                return handled
            message = response.json()
            json.loads(message["body"])
            bare.delete(f"{url}/{message['messageId']}", headers=headers, timeout=(5.05, 30)).raise_for_status()
            box["last"] = message["messageId"]
            handled += 1

    def close() -> None:
        bare.close()
        session.close()

    return drain, close


def run(quick: bool = False) -> list[Row]:
    count, runs = (100, 2) if quick else (600, 5)
    ours_rates: list[float] = []
    bare_rates: list[float] = []
    ratios: list[float] = []
    with RemoteFake(long_poll_hold=0.0) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        ours_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="ours")).id
        bare_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bare")).id
        ours = _ours(client, ours_set)
        bare, close = _bare(client, bare_set)
        for i in range(runs):
            rates = {}
            for name, set_id, drain in ((("ours", ours_set, ours), ("bare", bare_set, bare)) if i % 2 == 0
                                        else (("bare", bare_set, bare), ("ours", ours_set, ours))):
                _fill(fake, set_id, count)
                started = time.perf_counter()
                handled = drain()
                rates[name] = handled / (time.perf_counter() - started)
                if handled != count:
                    raise RuntimeError(f"{name} handled {handled} of {count} messages")
            ours_rates.append(rates["ours"])
            bare_rates.append(rates["bare"])
            ratios.append(rates["ours"] / rates["bare"])
        close()
        client.close()
    return [Row("throughput", f"messages handled per second ({runs} runs x {count}, no-op scaler)",
                spread(ours_rates, "{:.0f}"), spread(bare_rates, "{:.0f}") + " (bare poll+ack loop)",
                spread(ratios, "{:.3f}"))]


if __name__ == "__main__":
    sys.exit(bench_main(run))
