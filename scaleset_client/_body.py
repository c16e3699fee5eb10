"""The body of an answer, read within the call's time and the size cap.

Why a module of its own: requests would read a body itself, unbounded and blind to the deadline
and to interrupts. The adapter reads it here instead, inside ``send``, in decoded chunks counted
against the cap (the call's ``CallPolicy.max_body`` or the configured ``max_response_bytes``) and
stopped by an interrupt, so a body cut short or oversized is an attempt's outcome the adapter
classifies like any other failure (and the breaker sees), not an error raised later by
``.content``. Handing the bytes to ``requests.Response`` is the adapter's part (``_hand_over``).
"""

from __future__ import annotations

import requests

from ._breaker import OperationClass
from ._classify import MESSAGE_ID
from ._connections import CallInFlight
from ._errors import ResponseError
from ._policy import CallPolicy

__all__ = ["oversized", "read_body"]


def read_body(response: requests.Response, policy: CallPolicy, call: CallInFlight, default_limit: int) -> bytes:
    """The whole body of ``response``, at most the cap long; raises ``ResponseError`` when it is
    longer (declared or counted), a ``ConnectionError`` when the call is interrupted while it
    arrives. On any error the response is closed."""
    limit = policy.max_body if policy.max_body is not None else default_limit
    declared = response.headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    try:
        if declared.isdigit() and int(declared) > limit:
            head = response.raw.read(4096, decode_content=True)
            raise oversized(policy, limit, f"response of {declared} bytes", head)
        for chunk in response.iter_content(65536):  # decoded: the cap counts bytes after gzip
            size += len(chunk)
            if size > limit:
                raise oversized(policy, limit, "response", b"".join(chunks)[:4096] or chunk[:4096])
            chunks.append(chunk)
            if call.interrupted:
                raise requests.exceptions.ConnectionError("the call was interrupted while the body arrived")
    except BaseException:
        response.close()
        raise
    # Read to its end, the connection is back in the pool: urllib3 returned it with the last
    # byte, and the pool unbound it from this call first (TrackedPool._put_conn).
    return b"".join(chunks)


def oversized(policy: CallPolicy, limit: int, what: str, head: bytes) -> ResponseError:
    """The error for a body over the cap; for a message, with its id when the head shows it,
    so a listener can set the message aside instead of polling it for ever."""
    found = MESSAGE_ID.search(head) if policy.operation_class == OperationClass.LONG_POLL else None
    return ResponseError(f"{policy.operation}: {what} exceeds the {limit}-byte limit", operation=policy.operation,
                         message_id=int(found.group(1)) if found else None)
