"""Listener throughput: messages handled per second with a no-op scaler, against a bare
``requests`` loop doing the same two calls per message (poll, ack) and parsing the body.

The fake service runs in its own process; the bare session has ``trust_env=False`` and the
same headers. Each run drains ``count`` queued messages with each, in alternating order; the
ratio is per run, reported as the median with its range. Also: a Listener with a
``state_file`` (the durable cursor) against one without.

    python -m bench.throughput
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

import scaleset_client as sc

from ._remote import RemoteFake
from ._util import NoOpScaler, Row, bench_main, median, spread


def _fill(fake: RemoteFake, scale_set_id: int, count: int) -> None:
    for i in range(count):
        fake.call("push_message", scale_set_id, [{"messageType": "JobStarted", "runnerRequestId": i + 1}],
                  statistics={"totalAssignedJobs": 1})


def _ours(client: sc.Client, scale_set_id: int, state_file: str | None = None) -> Callable[[], int]:
    def drain() -> int:
        listener = sc.Listener(client, sc.ListenerConfig(scale_set_id, 5, state_file=state_file))
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
    rates: dict[str, list[float]] = {"ours": [], "bare": [], "state": []}
    with RemoteFake(long_poll_hold=0.0) as fake, tempfile.TemporaryDirectory() as tmp:
        client = sc.Client(fake.config_url, token=fake.token)
        sets = {name: client.create_runner_scale_set(sc.RunnerScaleSet(name=name)).id for name in rates}
        bare, close = _bare(client, sets["bare"])
        drains = {"ours": _ours(client, sets["ours"]), "bare": bare,
                  "state": _ours(client, sets["state"], str(Path(tmp) / "state.json"))}
        order = list(rates)
        for i in range(runs):
            for name in order if i % 2 == 0 else order[::-1]:
                _fill(fake, sets[name], count)
                started = time.perf_counter()
                handled = drains[name]()
                rates[name].append(handled / (time.perf_counter() - started))
                if handled != count:
                    raise RuntimeError(f"{name} handled {handled} of {count} messages")
        close()
        client.close()
    vs_bare = [a / b for a, b in zip(rates["ours"], rates["bare"], strict=True)]
    vs_plain = [a / b for a, b in zip(rates["state"], rates["ours"], strict=True)]
    return [
        Row("throughput", f"messages handled per second ({runs} runs x {count}, no-op scaler)",
            spread(rates["ours"], "{:.0f}"), spread(rates["bare"], "{:.0f}") + " (bare poll+ack loop)",
            spread(vs_bare, "{:.3f}")),
        Row("throughput", "the same with a state_file, against without (durable cursor)",
            spread(rates["state"], "{:.0f}"), spread(rates["ours"], "{:.0f}") + " (no state file)",
            spread(vs_plain, "{:.3f}"), ">= 0.9", median(vs_plain) >= 0.9),
    ]


if __name__ == "__main__":
    sys.exit(bench_main(run))
