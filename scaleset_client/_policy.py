"""What one call may do: its policy, its recovery, and the request type that carries both.

The adapter is a requests transport adapter, so a call reaches it as a ``PreparedRequest``. The
policy rides on the request in a typed place (``PolicyRequest.policy``, like httpx's
``request.extensions``) instead of a hidden attribute, and a request without one (a foreign
request sent through the client's session) gets the policy its method implies.

One idempotency rule (``is_idempotent``): RFC 9110's idempotent methods. A call site that knows
better (a session refresh PATCH, an update that sets absolute values) says so in its policy.

``Recovery`` and ``CallPolicy`` are frozen value classes (``_value_class.py``), not dataclasses:
the same equality, ``repr`` and ``dataclasses.replace``, without the ``dataclasses`` import and
per-class compile a cron run paid (issue 28). A policy is made on every call, so its
``__init__`` is written out (checked against the fields when the class is created).
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from ._breaker import OperationClass
from ._value_class import ValueClass, set_fields

__all__ = ["CallPolicy", "PolicyRequest", "Recovery", "is_idempotent", "policy_of", "with_policy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def is_idempotent(method: str) -> bool:
    """The package's one rule for a method's default: may the call be repeated after it reached
    the server? (RFC 9110 §9.2.2; TRACE is never sent.)"""
    return method.upper() in IDEMPOTENT_METHODS


class Recovery(ValueClass):
    """How a call recovers from a 401: what it ``renews`` (for logs: "admin token", "session"),
    ``renew()`` to do it, and ``resign()`` to build the request again with what was renewed.

    The adapter runs it at most once per call, from its retry path, inside the call's remaining
    time, and never counts the 401 as a breaker failure. A ``renew`` that cannot renew raises
    (its error is the call's); ``resign`` always builds the request again.
    """

    __slots__ = ()

    renews: str
    renew: Callable[[], object]
    resign: Callable[[], requests.PreparedRequest]


class CallPolicy(ValueClass):
    """How one call may be repeated and recovered.

    ``operation_class`` is the breaker partition within the origin (``OperationClass``).
    ``json_body`` says a 200/201 must carry JSON (an empty or non-JSON 200 is then a retryable
    failure). ``retry_unauthorized`` retries 401/403
    without counting them against the breaker (runner registration right after a token is
    minted). ``read_timeout`` overrides the client's (the long poll). ``max_body`` overrides
    ``ResilienceConfig.max_response_bytes`` (the long poll's message cap). ``queue_operation`` and
    ``github_api`` choose how an error answer is read (``error_from_response``).
    """

    __slots__ = ()

    operation: str
    operation_class: OperationClass
    idempotent: bool
    json_body: bool = True
    recovery: Recovery | None = None
    retry_unauthorized: bool = False
    read_timeout: float | None = None
    queue_operation: bool = False
    github_api: bool = False
    max_body: int | None = None

    def __init__(self, operation: str, operation_class: OperationClass, idempotent: bool, json_body: bool = True,
                 recovery: Recovery | None = None, retry_unauthorized: bool = False,
                 read_timeout: float | None = None, queue_operation: bool = False, github_api: bool = False,
                 max_body: int | None = None) -> None:
        set_fields(self, (operation, operation_class, idempotent, json_body, recovery, retry_unauthorized,
                          read_timeout, queue_operation, github_api, max_body))


class PolicyRequest(requests.PreparedRequest):
    """A prepared request with its ``CallPolicy``: the one way a policy reaches the adapter."""

    policy: CallPolicy


def with_policy(request: requests.PreparedRequest, policy: CallPolicy) -> PolicyRequest:
    """``request`` as a ``PolicyRequest`` carrying ``policy`` (the same object when it already is one)."""
    if not isinstance(request, PolicyRequest):
        carried = PolicyRequest()
        carried.__dict__.update(request.__dict__)
        request = carried
    request.policy = policy
    return request


def policy_of(request: requests.PreparedRequest) -> CallPolicy:
    """The policy a request carries, or the one its method implies for a plain request."""
    if isinstance(request, PolicyRequest):
        return request.policy
    method = (request.method or "GET").upper()
    return CallPolicy(operation=f"{method} request", operation_class=OperationClass.ADMIN,
                      idempotent=is_idempotent(method), json_body=False)
