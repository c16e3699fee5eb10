"""Listener throughput: messages handled per second with a no-op scaler, against what the fake
service can serve to a bare ``requests`` loop doing the same two calls per message (poll, ack)."""

from __future__ import annotations

import json
import sys
import time

import requests

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService

from ._util import NoOpScaler, Row, bench_main, ratio


def _fill(fake: FakeActionsService, scale_set_id: int, count: int) -> None:
    for i in range(count):
        fake.push_message(scale_set_id, [{"messageType": "JobStarted", "runnerRequestId": i + 1}],
                          statistics={"totalAssignedJobs": 1})


def run(quick: bool = False) -> list[Row]:
    count = 300 if quick else 3000
    with FakeActionsService(long_poll_hold=0.0) as fake:
        client = sc.Client(fake.config_url, token=fake.token)
        ours_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="ours")).id
        bare_set = client.create_runner_scale_set(sc.RunnerScaleSet(name="bare")).id
        _fill(fake, ours_set, count)
        started = time.perf_counter()
        listener = sc.Listener(client, sc.ListenerConfig(ours_set, 5))
        listener.run(NoOpScaler(), until_idle=True)
        ours = listener.handled_messages / (time.perf_counter() - started)
        session = client.message_session(bare_set)
        _fill(fake, bare_set, count)
        bare = requests.Session()
        headers = {"Authorization": f"Bearer {session.session.message_queue_access_token}",
                   "X-ScaleSetMaxCapacity": "5", "User-Agent": client.system_info.user_agent()}
        url = session.session.message_queue_url
        handled, last = 0, 0
        started = time.perf_counter()
        while True:
            response = bare.get(url, params={"lastMessageId": last} if last else None, headers=headers, timeout=30)
            if response.status_code == 202:
                break
            message = response.json()
            json.loads(message["body"])
            bare.delete(f"{url}/{message['messageId']}", headers=headers, timeout=30).raise_for_status()
            last = message["messageId"]
            handled += 1
        raw = handled / (time.perf_counter() - started)
        session.close()
        client.close()
    return [Row("throughput", f"messages handled per second ({count}, no-op scaler)", f"{ours:.0f}",
                f"{raw:.0f} (bare poll+ack loop)", ratio(ours, raw), "")]


if __name__ == "__main__":
    sys.exit(bench_main(run))
