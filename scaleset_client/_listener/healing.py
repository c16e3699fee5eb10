"""``Healer``: a scale set deleted on the service's side, created again when the configuration asks.

GitHub removes scale sets that stayed offline, and has answered 404 during incidents for scale
sets that exist. By default a listener's run ends on a confirmed 404. With
``ListenerConfig.recreate_deleted`` the healer looks once more (a 5xx means "cannot tell": the
loop waits and goes on, nothing is created), then creates the scale set again as its last
session described it (name, runner group, labels, runner settings), at most once per
``recreate_interval``: counted in this process, and across restarts through the ``Moved``
record the listener keeps in its state file. Moving the listener's own session, cursor and
state file to the new id is the listener's part.
"""

from __future__ import annotations

import logging

from .._clock import Clock
from .._errors import ScaleSetNotFoundError
from .._listener_config import ListenerConfig
from .._listener_state import Moved
from .._models import RunnerScaleSet
from .pacing import Pacer
from .sessions import SessionKeeper

__all__ = ["Healer"]

log = logging.getLogger(__name__)


class Healer:
    """Decides and carries out the re-creation of a deleted scale set; ``move`` is its record."""

    def __init__(self, config: ListenerConfig, clock: Clock, keeper: SessionKeeper, pacer: Pacer) -> None:
        self._config = config
        self._clock = clock
        self._keeper = keeper
        self._pacer = pacer
        self.definition: RunnerScaleSet | None = None  # the scale set as its last session described it
        self.move = Moved()  # ids it had before it was created again, and when (from the state file too)
        self._recreated_at: float | None = None  # monotonic time of this process's last re-creation

    def described(self, scale_set: RunnerScaleSet | None) -> None:
        """A session described its scale set: what a re-creation would copy."""
        if scale_set is not None and scale_set.name:
            self.definition = scale_set

    def heal(self, exc: ScaleSetNotFoundError, *, own_session: bool) -> RunnerScaleSet | None:
        """The scale set answered 404: the scale set created again, or None when it is not
        provably gone (a pause was waited; the loop goes on). Raises ``exc`` (or a sharper one)
        when the run must end: healing is off, the session is the caller's, nothing described
        the scale set, or it was created again within ``recreate_interval``."""
        if not self._config.recreate_deleted or not own_session:
            raise exc
        try:
            self._keeper.confirm_scale_set_gone(exc)
        except ScaleSetNotFoundError as gone:
            return self._recreate(gone)
        self._pacer.wait(self._pacer.backoff(2))  # still there, or cannot tell
        return None

    def _recreate(self, gone: ScaleSetNotFoundError) -> RunnerScaleSet:
        definition, old_id = self.definition, self._keeper.scale_set_id
        since = self._seconds_since_recreated()
        interval = self._config.recreate_interval
        if since is not None and since < interval:  # the bound first: it holds whatever else is known
            raise gone.recast(ScaleSetNotFoundError, f"{gone.message}; it was created again {since:.0f}s ago, "
                              f"and is not created again within recreate_interval ({interval:g}s)") from gone
        if definition is None:
            raise gone.recast(ScaleSetNotFoundError, f"{gone.message}; it cannot be created again: no session "
                              "described it (recreate_deleted needs one session opened first)") from gone
        created = self._keeper.recreate(definition)
        log.warning("scale set %d (%s) was deleted on the service; created it again as %d", old_id,
                    definition.name, created.id)
        self._recreated_at = self._clock.monotonic()
        self.move = Moved((*self.move.from_ids, old_id), self._clock.wall())
        return created

    def _seconds_since_recreated(self) -> float | None:
        if self._recreated_at is not None:
            return self._clock.monotonic() - self._recreated_at
        if self.move.at is not None:  # an earlier process's, from the state file
            return max(0.0, self._clock.wall() - self.move.at)
        return None
