"""The pool managers the adapter sends through: tracked pools, keepalive sockets, a lazy TLS context.

Why a module of its own: how connections are pooled and secured is wiring, not part of the
attempt loop. The adapter overrides requests' ``init_poolmanager`` and ``proxy_manager_for``
(they must stay methods of the ``HTTPAdapter``) and hands each new manager to ``track`` here,
which gives it pool classes that bind connections to the call sending on them (see
``_connections``) and a partial-chain TLS context of its own, built by its first HTTPS
connection, not here: building one costs 0.5-1.4 ms of CPU, which a client that never opens an
HTTPS connection (a plain-HTTP GHES, a test) need not pay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._connections import keepalive_options, tracked_pool

__all__ = ["context_once", "keepalive_default", "track"]


def context_once() -> Callable[[], Any]:
    """A partial-chain TLS context for one pool manager, built on the first call and the same
    one afterwards (thread-safe: connections of one manager share it, as urllib3's pools
    share the context handed to the manager)."""
    made: list[Any] = []
    lock = threading.Lock()

    def context() -> Any:
        with lock:
            if not made:
                from ._tls import partial_chain_context

                made.append(partial_chain_context())
            return made[0]

    return context


def keepalive_default(kwargs: dict[str, Any]) -> None:
    """TCP keepalive on the manager's sockets unless ``kwargs`` names socket options already."""
    kwargs.setdefault("socket_options", keepalive_options())


def track(manager: Any) -> None:
    """Give ``manager`` (a direct or a proxy pool manager) tracked pools and a lazy TLS context
    of its own; a context passed in its pool kwargs (a client certificate's) is used as it is."""
    manager.pool_classes_by_scheme = {
        "http": tracked_pool(HTTPConnectionPool, HTTPConnection),
        "https": tracked_pool(HTTPSConnectionPool, HTTPSConnection, context_once()),
    }
