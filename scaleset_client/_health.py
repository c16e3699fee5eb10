"""``HealthReport``: what a supervisor needs to know, built from local state without a request.

Components: ``github_api`` (token and registration calls), ``actions_service`` (admin API and
sessions), ``broker`` (the message queue), ``token`` (the admin token) and ``session`` (open
message sessions). Each is "ok", "degraded" (half-open, recovering), "down" (an open breaker;
``retry_at`` says when the next probe may go) or "unknown" (not used yet).

The reports are frozen value classes (``_value_class.py``), not dataclasses: the same fields,
equality, ``repr`` and ``dataclasses.asdict``, without the ``dataclasses`` import and the
per-class compile that every cron run paid at start-up (issue 28).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._auth import AdminToken
from ._breaker import CircuitBreaker, OperationClass, State
from ._http import origin_of
from ._session import MessageSession
from ._value_class import ValueClass, value_field

__all__ = ["ComponentHealth", "HealthReport", "RecoveryReport", "build_health_report"]

_RANK = {"ok": 0, "unknown": 0, "degraded": 1, "down": 2}


class ComponentHealth(ValueClass):
    """One origin's health: breaker state, last success and failure, when it is probed next."""

    __slots__ = ()

    name: str
    status: str
    reason: str = ""
    breakers: dict[str, str] = value_field(default_factory=dict)
    retry_at: float | None = None
    last_success: float | None = None
    last_failure: float | None = None


class HealthReport(ValueClass):
    """Overall and per-component health. ``healthy`` is False only when a component is down."""

    __slots__ = ()

    healthy: bool
    status: str
    reason: str
    components: dict[str, ComponentHealth]
    checked_at: float

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {
            "healthy": self.healthy,
            "status": self.status,
            "reason": self.reason,
            "checked_at": self.checked_at,
            "components": {
                name: {"status": c.status, "reason": c.reason, "breakers": c.breakers, "retry_at": c.retry_at,
                       "last_success": c.last_success, "last_failure": c.last_failure}
                for name, c in self.components.items()
            },
        }


class RecoveryReport(ValueClass):
    """What ``Client.recover()`` did (``actions``), what it had no reason to do (``skipped``), and
    how many calls in flight it interrupted so they retry at once."""

    __slots__ = ()

    actions: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    interrupted: int = 0

    def __str__(self) -> str:
        text = "; ".join(self.actions) or "nothing to do"
        return text + (f" (skipped: {'; '.join(self.skipped)})" if self.skipped else "")


_BROKER_CLASSES = (OperationClass.LONG_POLL, OperationClass.QUEUE_OPS)  # the broker's own partitions


def _from_breakers(name: str, breakers: list[CircuitBreaker], wall: float) -> ComponentHealth:
    if not breakers:
        return ComponentHealth(name, "unknown", "not used yet")
    status, reasons, retry_at = "ok", [], None
    states: dict[str, str] = {}
    for b in breakers:
        state = b.state
        states[f"{b.origin} {b.operation_class}"] = state.value
        if state in (State.OPEN, State.FORCED_OPEN):
            status = "down"
            wait = b.retry_after()
            if wait is not None:
                at = wall + wait
                retry_at = at if retry_at is None else min(retry_at, at)
            reasons.append(f"{b.operation_class} circuit {state.value}: {b.last_failure_reason}")
        elif state is State.HALF_OPEN and status != "down":
            status = "degraded"
            reasons.append(f"{b.operation_class} circuit probing")
    successes = [b.last_success_wall for b in breakers if b.last_success_wall is not None]
    failures = [b.last_failure_wall for b in breakers if b.last_failure_wall is not None]
    return ComponentHealth(name, status, "; ".join(reasons), states, retry_at,
                           max(successes) if successes else None, max(failures) if failures else None)


def build_health_report(*, wall: float, breakers: Sequence[CircuitBreaker], github_api_base: str,
                        admin: AdminToken | None, sessions: Sequence[MessageSession]) -> HealthReport:
    """Assemble a HealthReport from local state (no request is sent): the wall time now, every
    breaker, the GitHub API base URL, the admin token held (None: none yet) and the open sessions."""
    all_breakers = list(breakers)
    github_origin = origin_of(github_api_base)
    service_origin = origin_of(admin.service_url) if admin else None
    broker_origins = {origin_of(s.session.message_queue_url) for s in sessions if s.session.message_queue_url}
    components = {
        "github_api": _from_breakers("github_api", [b for b in all_breakers if b.origin == github_origin], wall),
        "actions_service": _from_breakers(
            "actions_service", [b for b in all_breakers if b.origin == service_origin
                                and b.operation_class != OperationClass.LONG_POLL], wall),
        "broker": _from_breakers("broker", [b for b in all_breakers if b.origin in broker_origins
                                            and b.operation_class in _BROKER_CLASSES], wall),
    }
    if admin is None:
        components["token"] = ComponentHealth("token", "unknown", "no admin token fetched yet")
    elif admin.expires_at <= wall:
        components["token"] = ComponentHealth("token", "degraded", "admin token expired; renewed on next call")
    else:
        components["token"] = ComponentHealth("token", "ok", f"valid for {admin.expires_at - wall:.0f}s")
    if not sessions:
        components["session"] = ComponentHealth("session", "unknown", "no message session open")
    else:
        lost = [s for s in sessions if not s.active]
        components["session"] = ComponentHealth(
            "session", "degraded" if lost else "ok",
            f"{len(lost)} of {len(sessions)} sessions need renewal" if lost else f"{len(sessions)} active")
    worst = max(components.values(), key=lambda c: _RANK[c.status])
    status = worst.status if worst.status != "unknown" else "ok"
    reason = "; ".join(f"{c.name}: {c.reason}" for c in components.values() if c.status in ("down", "degraded"))
    return HealthReport(status != "down", status, reason, components, wall)
