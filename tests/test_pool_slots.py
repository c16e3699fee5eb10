"""The pool queue that counts its empty slots (``_connections.Slots``) behaves as urllib3's stored
one: the same items come out in the same order, with the same sizes, ``Full`` and ``Empty``, for
any sequence of puts (``None`` or a connection) and gets; a pool built on it keeps and reuses
connections as before, and closing it closes the idle ones."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from scaleset_client._connections import Slots, tracked_pool


def _filled(kind: type[queue.LifoQueue[Any]], maxsize: int) -> queue.LifoQueue[Any]:
    q = kind(maxsize)
    for _ in range(maxsize):  # as urllib3's pool does
        q.put(None)
    if isinstance(q, Slots):
        q.prefilled()
    return q


def _step(q: queue.LifoQueue[Any], op: tuple[str, int]) -> object:
    """One operation: non-blocking as urllib3 makes them, or blocking for at most 1 ms (a get of a
    connection a pool hands out, a put back that waits for room)."""
    kind, value = op
    try:
        if kind == "get":
            return ("got", q.get(block=False))
        if kind == "wait-get":
            return ("got", q.get(timeout=0.001))
        item = None if kind in ("none", "wait-none") else value
        if kind.startswith("wait-"):
            q.put(item, timeout=0.001)
        else:
            q.put(item, block=False)
        return ("put",)
    except queue.Full:
        return ("full",)
    except queue.Empty:
        return ("empty",)


@settings(max_examples=300, deadline=None)
@given(maxsize=st.integers(0, 6),
       ops=st.lists(st.tuples(st.sampled_from(["get", "none", "conn", "wait-get", "wait-none", "wait-conn"]),
                              st.integers(1, 50)), max_size=40))
def test_slots_answer_as_the_stored_queue(maxsize: int, ops: list[tuple[str, int]]) -> None:
    stored, counted = _filled(queue.LifoQueue, maxsize), _filled(Slots, maxsize)
    for op in ops:
        assert _step(counted, op) == _step(stored, op)
        assert (counted.qsize(), counted.full(), counted.empty()) == (stored.qsize(), stored.full(), stored.empty())
    drained_stored: list[object] = []
    drained_counted: list[object] = []
    for q, out in ((stored, drained_stored), (counted, drained_counted)):
        while True:
            try:
                out.append(q.get(block=False))
            except queue.Empty:
                break
    assert drained_counted == drained_stored


def test_a_new_pool_stores_no_empty_slots_and_closing_closes_its_idle_connections() -> None:
    pool = tracked_pool(HTTPConnectionPool, HTTPConnection)("127.0.0.1", 9, maxsize=256)
    slots = pool.pool
    assert isinstance(slots, Slots)
    assert slots.qsize() == 256 and slots.full() and not slots.queue  # 256 slots, none stored
    first = pool._get_conn()
    second = pool._get_conn()
    assert slots.qsize() == 254
    closed: list[object] = []
    for conn in (first, second):
        conn.close = lambda conn=conn: closed.append(conn)  # type: ignore[method-assign,misc]
    pool._put_conn(first)
    pool._put_conn(second)
    assert pool._get_conn() is second  # last in, first out, above the empty slots
    pool._put_conn(second)
    assert slots.qsize() == 256
    closed.clear()  # (a reused connection that never connected was closed on the way out)
    pool.close()
    assert {id(c) for c in closed} == {id(first), id(second)} and len(closed) == 2 and pool.pool is None
    assert slots.qsize() == 0  # drained: the empty slots too


def test_a_put_waiting_for_room_is_woken_by_a_get_of_an_empty_slot() -> None:
    slots = _filled(Slots, 2)
    done = threading.Event()

    def put() -> None:
        slots.put("conn", timeout=10)
        done.set()

    putter = threading.Thread(target=put)
    putter.start()
    assert not done.wait(0.2)  # full: the put waits
    assert slots.get(block=False) is None  # an empty slot out: room for the put
    assert done.wait(5)
    putter.join()
    assert slots.get(block=False) == "conn" and slots.get(block=False) is None


def test_while_a_pool_fills_its_queue_a_put_past_its_size_is_refused_as_by_the_stored_queue() -> None:
    for kind in (queue.LifoQueue, Slots):
        q = kind(1)
        q.put(None, block=False)  # urllib3's filling, before prefilled()
        with pytest.raises(queue.Full):
            q.put(None, block=False)
        assert q.get(block=False) is None
        q.put("conn", block=False)  # a connection put while filling is stored as a connection
        assert (q.qsize(), q.get(block=False)) == (1, "conn")
