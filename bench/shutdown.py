"""Time bounds seen from outside: SIGTERM to exit in each outage state, and a bounded run's length.

    python -m bench.shutdown [--quick]

``scaleset-listen`` runs as its own process against the fake service (in this process). For
each state the service is put in (an empty long poll held 50 s, a 429 with Retry-After: 60, a 503
storm that opened the breaker, a hung broker, a body dripped with Content-Length), the process
gets SIGTERM once the state is reached, and the time to its exit is measured: target <= 5 s
(Kubernetes' default grace is 30 s). Then ``--once --duration D`` against a hung and a refused
broker: target <= D + 2 s. Medians with the range over the repetitions.

The shaped states (issue 22) put a ``ShapeFront`` before the fake, so every answer comes in a
shape the fake does not send, and drip each long poll's answer a byte every 0.1 s: the shapes
whose drip once escaped every bound (a response that says it will close: ``Connection: close``,
HTTP/1.0 ended by the close, no length, gzip with close, over TLS) and a dripped status line.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from scaleset_client.testing import FakeActionsService, Fault
from scaleset_client.testing._shapes import SHAPES, ShapeFront

from ._util import Row

HOUR = 3600.0
EXIT_TARGET = 5.0
STATES: dict[str, tuple[float, Callable[[FakeActionsService], None], int]] = {
    "empty long poll (held 50 s)": (50.0, lambda fake: None, 1),
    "429 Retry-After: 60": (0.05, lambda fake: fake.inject_always(
        "get_message", Fault.respond(429, headers={"Retry-After": "60"})), 1),
    "503 storm, breaker open": (0.05, lambda fake: fake.inject_always("get_message", Fault.error(503)), 6),
    "hung broker": (0.05, lambda fake: fake.inject_always("get_message", Fault.hang(HOUR)), 1),
    "body dripped with Content-Length": (0.05, lambda fake: fake.inject_always(
        "get_message", Fault.drip(0.1, size=36_000, chunked=False)), 1),
}
SHAPED: dict[str, tuple[str, str]] = {  # state -> (ShapeFront shape, fault on every long poll)
    "body dripped, Connection: close": ("close", "body-drip"),
    "body dripped, HTTP/1.0 ended by the close": ("http1.0", "body-drip"),
    "body dripped, Connection: close, no length": ("close-no-length", "body-drip"),
    "body dripped, gzip, Connection: close": ("gzip", "body-drip"),
    "body dripped, TLS, Connection: close": ("tls", "body-drip"),
    "status line and headers dripped": ("keep-alive", "head-drip"),
}
DRIP = 0.1  # seconds between two bytes of a shaped drip


def _command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "scaleset_client", "--url", url, "--scale-set-name", "bench",
            "--log-level", "WARNING", *args]


def _env(fake: FakeActionsService, front: ShapeFront | None = None) -> dict[str, str]:
    env = {**os.environ, "GITHUB_TOKEN": fake.token}
    if front is not None and isinstance(front.verify, str):
        env["REQUESTS_CA_BUNDLE"] = front.verify  # the CLI verifies with the front's test CA
    return env


def _wait(condition: Callable[[], bool], limit: float) -> None:
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError("the state was not reached")
        time.sleep(0.01)


def time_to_exit(state: str) -> float:
    """Seconds from SIGTERM to the process's exit, with the service in ``state``."""
    if state in SHAPED:
        return _shaped_exit(state)
    hold, arrange, polls = STATES[state]
    with FakeActionsService(long_poll_hold=hold) as fake:
        arrange(fake)
        return _terminate(state, fake, _command(fake.config_url), _env(fake),
                          lambda: fake.count("get_message") >= polls, fake.release_hangs)


def _terminate(state: str, fake: FakeActionsService, command: list[str], env: dict[str, str],
               reached: Callable[[], bool], release: Callable[[], None]) -> float:
    """Start the CLI, wait until the service is in ``state`` (``reached``), send SIGTERM and time
    the exit; the process must exit 0 and leave no session behind."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(reached, 90)
        time.sleep(0.3)  # well inside the state: the poll is held, the wait (or the drip) has begun
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        took = time.monotonic() - sent
    finally:
        release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or fake.session_of(1) is not None:
        raise RuntimeError(f"{state}: exit {proc.returncode}, session left behind")
    return took


def _shaped_exit(state: str) -> float:
    """``time_to_exit`` with a ``ShapeFront`` before the fake, dripping every long poll's answer."""
    shape, fault = SHAPED[state]
    with FakeActionsService(long_poll_hold=0.05) as fake, \
            ShapeFront({name: server.url for name, server in fake.servers.items()}, SHAPES[shape],
                       interval=DRIP) as front:
        front.arm("GET", r"/scalesets/message$", fault, times=1_000_000)
        return _terminate(state, fake, _command(front.rewrite(fake.config_url)), _env(fake, front),
                          lambda: len(front.faulted) >= 1, front.release)


def bounded_run(duration: float, broker: str) -> float:
    """Wall seconds of ``--once --duration D`` with the broker hung or refusing."""
    with FakeActionsService(long_poll_hold=0.05) as fake:
        if broker == "hung":
            fake.inject_always("get_message", Fault.hang(HOUR))
        else:
            fake.stop("broker")
        started = time.monotonic()
        done = subprocess.run(_command(fake.config_url, "--once", "--duration", f"{duration:g}"), env=_env(fake),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        took = time.monotonic() - started
        fake.release_hangs()
        if done.returncode not in (0, 4):
            raise RuntimeError(f"--once against a {broker} broker exited {done.returncode}")
        return took


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def run(quick: bool) -> list[Row]:
    reps = 1 if quick else 5
    rows: list[Row] = []
    for state in [*STATES, *SHAPED]:
        values = [time_to_exit(state) for _ in range(reps)]
        rows.append(Row("shutdown", f"SIGTERM to exit: {state}", _summary(values), target=f"<= {EXIT_TARGET:g} s",
                        ok=max(values) <= EXIT_TARGET))
    duration = 3.0 if quick else 10.0
    for broker in ("hung", "refusing"):
        values = [bounded_run(duration, broker) for _ in range(reps)]
        rows.append(Row("shutdown", f"--once --duration {duration:g} against a {broker} broker",
                        _summary(values), target=f"<= {duration + 2:g} s", ok=max(values) <= duration + 2))
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row.measure}: {row.ours} (target {row.target}: {'met' if row.ok else 'MISSED'})")
