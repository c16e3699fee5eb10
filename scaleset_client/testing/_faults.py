"""Faults the fake service can inject, and the per-operation queues that hold them."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultBook"]


@dataclass(frozen=True)
class Fault:
    """One injected behaviour for one request. Build them with the class methods.

    kinds: ``respond`` (a fixed status, headers and body), ``drop`` (close without answering),
    ``reset`` (TCP RST), ``hang`` (hold the request until ``seconds`` pass or the service
    releases hangs), ``delay`` (wait, then answer normally), ``bom`` (answer normally with a
    UTF-8 BOM before the body), ``huge`` (a body of ``size`` bytes, streamed), ``drip`` (a
    body of ``size`` bytes sent one byte every ``seconds``, chunked or with Content-Length),
    ``truncated`` (Content-Length larger than the body sent).
    """

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    size: int = 0
    chunked: bool = False

    @classmethod
    def respond(cls, status: int, body: bytes | str | None = None, *, json_body: Any = None,
                headers: dict[str, str] | None = None, content_type: str | None = None) -> Fault:
        hdrs = dict(headers or {})
        if json_body is not None:
            raw = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", content_type or "application/json")
        else:
            raw = body.encode() if isinstance(body, str) else (body or b"")
            if content_type:
                hdrs.setdefault("Content-Type", content_type)
        return cls("respond", status=status, headers=hdrs, body=raw)

    @classmethod
    def error(cls, status: int, type_name: str = "", message: str = "injected error",
              headers: dict[str, str] | None = None) -> Fault:
        """An Actions-service style error body: ``{"typeName": ..., "message": ...}``."""
        body: dict[str, Any] = {"$id": "1", "innerException": None, "message": message, "typeName": type_name,
                                "typeKey": type_name.split(",")[0].rsplit(".", 1)[-1], "errorCode": 0,
                                "eventId": 3000}
        return cls.respond(status, json_body=body, headers=headers)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def hang(cls, seconds: float = 3600.0) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    @classmethod
    def empty(cls, status: int = 200) -> Fault:
        return cls("respond", status=status, headers={"Content-Type": "application/json"})

    @classmethod
    def garbage(cls, status: int = 200) -> Fault:
        return cls("respond", status=status, headers={"Content-Type": "application/json"},
                   body=b"<html><body>502 upstream confused</body></html>\x00\xff")

    @classmethod
    def bom(cls) -> Fault:
        return cls("bom")

    @classmethod
    def huge(cls, size: int, status: int = 200, chunked: bool = False) -> Fault:
        """A body of ``size`` bytes, announced by Content-Length or (``chunked``) not announced."""
        return cls("huge", status=status, size=size, chunked=chunked)

    @classmethod
    def drip(cls, interval: float, size: int = 100, *, chunked: bool = True) -> Fault:
        """A 200 whose body arrives one byte every ``interval`` s: chunked, or announced up front
        by Content-Length (``chunked=False``), so no framing ever tells the client it is slow."""
        return cls("drip", seconds=interval, size=size, chunked=chunked)

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")


class FaultBook:
    """Queues of faults per operation (or per server). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._always: dict[str, Fault] = {}

    def add(self, target: str, faults: tuple[Fault, ...], times: int) -> None:
        with self._lock:
            queue = self._queues.setdefault(target, deque())
            for _ in range(times):
                queue.extend(faults)

    def always(self, target: str, fault: Fault) -> None:
        with self._lock:
            self._always[target] = fault

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self._queues.clear()
                self._always.clear()
            else:
                self._queues.pop(target, None)
                self._always.pop(target, None)

    def next(self, operation: str, server: str) -> Fault | None:
        with self._lock:
            for key in (operation, server):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
                if key in self._always:
                    return self._always[key]
        return None

    def pending(self, target: str) -> int:
        with self._lock:
            return len(self._queues.get(target, ()))
