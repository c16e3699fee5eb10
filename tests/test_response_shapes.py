"""Every response shape is bounded (issue 22): shapes x faults x calls x bounds, seen from outside.

A ``ShapeFront`` stands before a ``FakeActionsService`` and answers every request in one shape
(kept alive, ``Connection: close``, HTTP/1.0 ended by the close, no length, chunked, gzip, TLS,
TLS through a CONNECT proxy); one call of each cell gets a fault instead (the status line and
headers dripped, the body dripped, a hang after the headers, the body cut short, a reset).

Each cell is one client doing one call (an admin call, a long poll, an acknowledgement) under one
bound, observed as a user would: how long the call took (within its bound plus a generous 1.5 s:
a correctness bound, not a benchmark), what it raised, whether the breaker was charged (only when
the service is at fault: too slow for one attempt, a broken body; never for the caller's own
deadline, a cancel or a ``recover()``), and that the next call on the same client succeeds.

The bounds: ``attempt`` (one attempt outlives connect + read timeout while the call has time:
the service was too slow, the breaker is charged, the call retries and succeeds); ``call`` (the
call's own ``RetryConfig.deadline``); ``scope`` (the caller's ``client.deadline(s)``);
``cancel`` (the caller's scope cancelled from another thread); ``recover`` (``client.recover()``
from another thread: the call resends at once on a fresh connection and succeeds).

Every cell is its own test, but the cells run together, in threads, once per session (the
``outcomes`` fixture runs the cells pytest selected): one at a time they would take minutes,
together the file takes seconds. Drips are a byte every 0.05 s, bounds about 1 s.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import scaleset_client as sc
from scaleset_client.testing import FakeActionsService
from scaleset_client.testing._shapes import SHAPES, ShapeFront

MARGIN = 1.5  # seconds past a bound that a call may take (scheduling on a busy 2-core machine)
TIMED = ("head-drip", "body-drip", "hang")  # faults only a bound can end
AT_ONCE = ("cut", "reset")  # faults that end the attempt by themselves
BOUNDS = ("attempt", "call", "scope", "cancel", "recover")
CALLS = ("admin", "long_poll", "ack")
TARGETS = {  # the request each call makes: (method, path pattern) for ShapeFront.arm
    "admin": ("GET", r"/_apis/runtime/runnerscalesets/\d+$"),
    "long_poll": ("GET", r"/scalesets/message$"),
    "ack": ("DELETE", r"/scalesets/message/\d+$"),
}
ATTEMPT = 2.5  # connect + read timeout under the "attempt" bound (a 2 s read leaves a loaded runner room)
DEADLINE = 1.0  # the call's own deadline, the caller's scope
CANCEL_AT = 0.5  # when the caller cancels, or recover() runs, after the fault was served
SET_UP_WITHIN = 20.0  # how long a cell's set-up (or its request reaching the server) may take on a loaded runner
SET_UP_TRIES = 3  # set-ups that failed (a loaded runner's timeout) are tried again on a fresh scale set


@dataclass(frozen=True)
class Cell:
    shape: str
    fault: str
    call: str
    bound: str

    @property
    def id(self) -> str:
        return f"{self.shape}-{self.fault}-{self.call}-{self.bound}"


@dataclass(frozen=True)
class Expected:
    """What an observer must see: ``error`` None for a success; ``within`` the bound in seconds;
    ``charged`` whether the call's breaker recorded a failure; ``text`` in the error's message."""

    error: type[BaseException] | None
    within: float
    charged: bool
    text: str = ""


@dataclass
class Seen:
    took: float = 0.0
    error: BaseException | None = None
    failures: int = 0
    next_ok: bool = False
    next_error: BaseException | None = None
    faulted: int = 0
    problem: str = ""
    set_up_failed: bool = False  # before the fault was armed: the cell is tried again


CELLS = [Cell(shape, fault, call, bound) for shape in SHAPES for call in CALLS
         for fault, bound in [*itertools.product(TIMED, BOUNDS), *((f, "attempt") for f in AT_ONCE)]]


def expected(cell: Cell) -> Expected:
    """The outcome each bound names, and who is to blame."""
    if cell.fault in AT_ONCE:
        # The service broke the answer: a failure the breaker sees, retried on a fresh connection
        # (where nothing frames the body, the JSON it should be tells it was cut). An
        # acknowledgement's 404 counts as done, so its unframed body is never read as JSON:
        # nothing to blame, nothing to retry.
        unframed = SHAPES[cell.shape].framing == "close"
        return Expected(None, ATTEMPT, charged=not (cell.call == "ack" and unframed))
    if cell.bound == "attempt":
        return Expected(None, ATTEMPT, charged=True)  # too slow: the service's fault, retried
    if cell.bound == "call":
        if cell.call == "long_poll" and cell.fault == "hang":
            # The long poll's own deadline is its read timeout plus the call deadline: a silent
            # server reaches the read timeout first, a failure of the service's (one attempt only).
            return Expected(sc.TransportError, DEADLINE, charged=True, text="read timeout")
        within = 2 * DEADLINE if cell.call == "long_poll" else DEADLINE
        return Expected(sc.RetryExhaustedError, within, charged=False, text="deadline")
    if cell.bound == "scope":
        return Expected(sc.DeadlineExceededError, DEADLINE, charged=False)
    if cell.bound == "cancel":
        return Expected(sc.CallCancelledError, CANCEL_AT, charged=False)
    return Expected(None, CANCEL_AT, charged=False)  # recover(): resent at once, nobody blamed


def _client(fake: FakeActionsService, front: ShapeFront, cell: Cell) -> sc.Client:
    quick: dict[str, Any] = {"backoff_base": 0.05}
    if cell.bound == "attempt":
        timeout, long_poll, retry = (0.5, 2.0), 2.0, sc.RetryConfig(max_attempts=2, deadline=10.0, **quick)
    elif cell.bound == "call":
        timeout, long_poll, retry = (2.0, 2.0), DEADLINE, sc.RetryConfig(max_attempts=1, deadline=DEADLINE)
    else:
        timeout, long_poll, retry = (2.0, 5.0), 5.0, sc.RetryConfig(max_attempts=2, deadline=10.0, **quick)
    return sc.Client(front.rewrite(fake.config_url), token=fake.token, timeout=timeout, long_poll_timeout=long_poll,
                     verify=front.verify, proxies=front.proxies,
                     resilience=sc.ResilienceConfig(retry=retry))


def _failures(client: sc.Client, operation_class: str) -> int:
    """Failures the breakers of ``operation_class`` recorded (public snapshot)."""
    return sum(sum(snap["window"]) for snap in client.circuit_breakers.snapshot()
               if snap["operation_class"] == operation_class)


CLASSES = {"admin": "admin", "long_poll": "long_poll", "ack": "queue_ops"}
# The set-up and the next call do the cells' CPU work (a client, a registration, a session, through
# a front and the fake): a few at a time, so the timed calls of the others are not starved of CPU
# on a 2-core machine under coverage.
_busy = threading.BoundedSemaphore(6)


def _the_call(kind: str, client: sc.Client, session: sc.MessageSession | None,
              scale_set_id: int) -> Callable[[], object]:
    if kind == "admin":
        return lambda: client.get_runner_scale_set_by_id(scale_set_id)
    assert session is not None
    if kind == "long_poll":
        return lambda: session.get_message(0, 1)
    return lambda: session.delete_message(1)


def run_cell(fake: FakeActionsService, cell: Cell, scale_set_id: int) -> Seen:
    """Set the cell up (through the front, in its shape), fault one call, observe it and the next.
    ``scale_set_id`` is the cell's own scale set (a message session needs one to itself)."""
    seen = Seen()
    with ShapeFront({name: server.url for name, server in fake.servers.items()}, SHAPES[cell.shape]) as front:
        client = _client(fake, front, cell)
        session: sc.MessageSession | None = None
        try:
            try:
                with _busy:
                    if cell.call != "admin":
                        session = client.message_session(scale_set_id)
                    call = _the_call(cell.call, client, session, scale_set_id)
                    call()  # one quick answer first, as in normal use (a kept-alive connection to reuse)
            except sc.ScalesetError:
                seen.set_up_failed = True
                raise
            before = _failures(client, CLASSES[cell.call])
            method, path = TARGETS[cell.call]
            front.arm(method, path, cell.fault)
            scope = client.deadline(DEADLINE if cell.bound == "scope" else None)
            actor = None
            if cell.bound in ("cancel", "recover"):
                act = (lambda: scope.cancel("test")) if cell.bound == "cancel" else client.recover

                def act_while_faulted() -> None:  # the caller acts while the server drips or hangs
                    if front.wait_for_fault(SET_UP_WITHIN):
                        time.sleep(CANCEL_AT)
                    act()

                actor = threading.Thread(target=act_while_faulted, daemon=True)
                actor.start()
            started = time.monotonic()
            try:
                with scope:
                    call()
            except sc.ScalesetError as exc:
                seen.error = exc
            ended = time.monotonic()
            # A cancel or recover() is timed from the fault (CANCEL_AT before the caller acts): a
            # loaded runner may take longer than CANCEL_AT to bring the request to the server.
            since = front.first_fault_at if actor is not None and front.first_fault_at is not None else started
            seen.took = ended - since
            if actor is not None:
                actor.join()
            seen.failures = _failures(client, CLASSES[cell.call]) - before
            seen.faulted = len(front.faulted)
            front.release()
            with _busy:
                try:
                    call()
                    seen.next_ok = True
                except sc.ScalesetError as exc:
                    seen.next_error = exc
                if session is not None:
                    session.close()
        except Exception as exc:  # the set-up itself failed: reported by the cell's test
            seen.problem = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
    return seen


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeActionsService]:
    with FakeActionsService(long_poll_hold=0.05) as service:
        yield service


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, fake: FakeActionsService) -> dict[str, Seen]:
    """Every selected cell, run together (they spend their time waiting on sockets)."""
    items = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    wanted = [item.callspec.params["cell"] for item in items
              if hasattr(item, "callspec") and "cell" in item.callspec.params]
    with sc.Client(fake.config_url, token=fake.token) as direct:  # the scale sets, made straight on the fake
        ids = [direct.create_runner_scale_set(sc.RunnerScaleSet(name=f"shape-{n}")).id for n in range(len(wanted))]
    with ThreadPoolExecutor(max_workers=32) as pool:
        seen = dict(zip([c.id for c in wanted], pool.map(lambda c, i: _run_set_up(fake, c, i), wanted, ids),
                        strict=True))
    return seen


def _run_set_up(fake: FakeActionsService, cell: Cell, scale_set_id: int) -> Seen:
    """``run_cell``, tried again on a fresh scale set while its set-up fails (a loaded runner's
    timeout before anything was faulted says nothing about the cell; a later failure is reported)."""
    for _ in range(SET_UP_TRIES - 1):
        seen = run_cell(fake, cell, scale_set_id)
        if not seen.set_up_failed:
            return seen
        with sc.Client(fake.config_url, token=fake.token) as direct:
            scale_set_id = direct.create_runner_scale_set(sc.RunnerScaleSet(name=f"shape-{cell.id}-again")).id
    return run_cell(fake, cell, scale_set_id)


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_every_shape_and_fault_is_bounded(cell: Cell, outcomes: dict[str, Seen]) -> None:
    seen = outcomes[cell.id]
    want = expected(cell)
    assert not seen.problem, seen.problem
    assert seen.faulted == 1, "the fault was not served"
    assert seen.took <= want.within + MARGIN, f"took {seen.took:.2f}s, bound {want.within:g}s ({seen.error!r})"
    if want.error is None:
        assert seen.error is None, repr(seen.error)
    else:
        assert isinstance(seen.error, want.error), repr(seen.error)
        assert want.text in str(seen.error)
    assert (seen.failures > 0) is want.charged, f"breaker failures: {seen.failures} ({seen.error!r})"
    assert seen.next_ok, f"the next call failed: {seen.next_error!r}"


def test_the_matrix_covers_every_shape_fault_and_call() -> None:
    assert {c.shape for c in CELLS} == set(SHAPES)
    assert {c.fault for c in CELLS} == {*TIMED, *AT_ONCE}
    assert {c.call for c in CELLS} == set(CALLS)
    assert {c.bound for c in CELLS} == set(BOUNDS)
