"""``MessageFailures``: messages that keep failing, counted, paused on and in the end set aside.

A message whose scaler call raises stays unacknowledged and comes again after a growing pause;
one that cannot even be read (a garbage body the service keeps sending) is read again the same
way. After ``ListenerConfig.poison_after`` failures either kind is set aside: ``on_poison`` (or
an error log) is told, and the listener acknowledges it, so one bad message cannot wedge the
queue. The scaler's failures in a row (whatever the message) make the listener not ready
(``Listener.health``). Acknowledging a set-aside message is the listener's part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._listener_config import ListenerConfig

__all__ = ["MessageFailures"]

log = logging.getLogger(__name__)


class MessageFailures:
    """Failures per message id, the scaler's failures in a row, and the messages set aside.
    ``record`` is the listener's metrics hook (``record_scaler_failure``, ``record_poisoned``)."""

    def __init__(self, config: ListenerConfig, record: Callable[..., None]) -> None:
        self._config = config
        self._record = record
        self._counts: dict[int, int] = {}
        self.in_a_row = 0  # the scaler's failures since it last handled a message
        self.set_aside: list[int] = []  # message ids set aside, in order (``Listener.poisoned``)

    def count(self, mid: int) -> int:
        """Failures of message ``mid`` so far (0: none)."""
        return self._counts.get(mid, 0)

    def scaler_failed(self, mid: int, exc: Exception) -> bool:
        """Count a scaler failure on a message; True when it failed ``poison_after`` times and is
        set aside (to be acknowledged)."""
        failures = self._counts.get(mid, 0) + 1
        self._counts[mid] = failures
        self.in_a_row += 1
        self._record("record_scaler_failure", mid, exc)
        log.warning("scaler failed on message %d (%d/%d): %s: %s", mid, failures, self._config.poison_after,
                    type(exc).__name__, exc)
        if failures < self._config.poison_after:
            return False
        self.put_aside(mid, exc)
        return True

    def scaler_succeeded(self) -> None:
        """The scaler handled a message: its failures in a row start again from 0."""
        self.in_a_row = 0

    def unreadable(self, mid: int, failures: int, exc: Exception) -> None:
        """Message ``mid`` could not be read for the ``failures``-th time."""
        self._counts[mid] = failures
        log.warning("message %d cannot be read (%d/%d): %s", mid, failures, self._config.poison_after, exc)

    def put_aside(self, mid: int, exc: BaseException) -> None:
        """Set message ``mid`` aside: ``on_poison`` is told (or the error logged)."""
        self.set_aside.append(mid)
        self._record("record_poisoned", mid)
        if self._config.on_poison is not None:
            try:
                self._config.on_poison(mid, exc)
            except Exception:
                log.exception("on_poison failed for message %d", mid)
        else:
            log.error("message %d failed %d times and is set aside (acknowledged): %s: %s", mid,
                      self._config.poison_after, type(exc).__name__, exc)

    def forget(self, mid: int) -> None:
        """Message ``mid`` is handled (or set aside): its count goes."""
        self._counts.pop(mid, None)

    def forget_all(self) -> None:
        """A new queue (the scale set created again): no count carries over."""
        self._counts.clear()

    def __repr__(self) -> str:
        return f"MessageFailures(counting={len(self._counts)}, in_a_row={self.in_a_row}, set_aside={self.set_aside})"
