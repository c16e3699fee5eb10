"""``SessionKeeper``: a listener's message session, opened, kept and renewed, or waited for.

A listener needs one session on its scale set. Opening it may meet a session another listener
owns (a conflict): then this one is a standby that asks again every ``standby_interval`` and
takes over when the owner leaves, for at most ``standby_timeout``. Its own stale session (named
in the state file by a process that died) is deleted first. When the queue turns the session
away (an expired token, a session the service lost), it is renewed in place. A 404 for the
scale set is looked up once more before the run ends on it, since GitHub has answered 404 during
incidents for scale sets that exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._client import Client
from .._clock import Clock
from .._errors import ScalesetError, ScaleSetExistsError, ScaleSetNotFoundError, SessionConflictError
from .._listener_config import ListenerConfig
from .._models import RunnerScaleSet
from .._session import MessageSession
from .pacing import Pacer
from .poll_errors import PERMANENT

__all__ = ["SessionKeeper"]

log = logging.getLogger(__name__)

_STOOD_BY_TOO_LONG = SessionConflictError  # the one conflict ``_as_standby`` lets out: past standby_timeout


class SessionKeeper:
    """Opens and renews one listener's session; ``standby`` is True while another owns it."""

    def __init__(self, client: Client, config: ListenerConfig, clock: Clock, pacer: Pacer) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._pacer = pacer
        self.standby = False
        self.scale_set_id = config.scale_set_id  # moves when a deleted scale set is created again

    def open(self, stale_id: object) -> MessageSession | None:
        """Open the listener's own session (deleting its stale one, ``stale_id`` from the state
        file), trying again after a growing pause until it opens; None when the run ends first."""
        started = self._clock.monotonic()
        stale = stale_id if isinstance(stale_id, str) and stale_id else None

        def open_one() -> MessageSession:
            return self._client.message_session(self.scale_set_id, self._config.owner,
                                                stale_session_id=stale)

        attempts = 0
        while True:
            attempts += 1
            try:
                return self._as_standby(open_one, started)
            except ScalesetError as exc:
                if isinstance(exc, (_STOOD_BY_TOO_LONG, *PERMANENT)):
                    raise
                if self._pacer.cut(exc):
                    return None
                log.warning("could not open a session: %s", exc)
                if self._pacer.wait(self._pacer.backoff(attempts)):
                    return None

    def renew(self, session: MessageSession) -> bool:
        """Renew the session the queue turned away, in place; True when it was renewed. An error
        other than a conflict is waited out once, then polling (which retries) goes on."""

        def renew_one() -> MessageSession:
            session.recover()
            return session

        try:
            renewed = self._as_standby(renew_one, self._clock.monotonic())
        except ScalesetError as other:
            if self._pacer.cut(other):
                return False
            if isinstance(other, ScaleSetNotFoundError):
                self.confirm_scale_set_gone(other)
            elif isinstance(other, (_STOOD_BY_TOO_LONG, *PERMANENT)):
                raise
            log.warning("session renewal failed: %s", other)
            self._pacer.wait(self._pacer.backoff(2))
            return False
        if renewed is None:
            return False
        log.info("session renewed: %s", session.session.session_id)
        return True

    def recreate(self, definition: RunnerScaleSet) -> RunnerScaleSet:
        """Create the scale set again as ``definition`` describes it (name, runner group, labels,
        runner settings); one another process created meanwhile under the same name is used."""
        again = RunnerScaleSet(name=definition.name, runner_group_id=definition.runner_group_id,
                               labels=list(definition.labels), runner_setting=definition.runner_setting)
        try:
            return self._client.create_runner_scale_set(again)
        except ScaleSetExistsError:
            found = self._client.get_runner_scale_set(definition.runner_group_id, definition.name)
            if found is None:
                raise
            return found

    def confirm_scale_set_gone(self, exc: ScaleSetNotFoundError) -> None:
        """A 404 has been seen during GitHub incidents for scale sets that exist: ask once more,
        and raise only when the scale set is really gone."""
        try:
            found = self._client.get_runner_scale_set_by_id(self.scale_set_id)
        except ScaleSetNotFoundError:
            found = None
        except ScalesetError:
            return  # cannot tell now; try again after the pause
        if found is None:
            raise exc.recast(ScaleSetNotFoundError,
                f"scale set {self.scale_set_id} no longer exists (deleted, or removed by GitHub after "
                f"being offline): create it again or fix the id; the listener stops. ({exc.message})") from exc

    def _as_standby(self, attempt: Callable[[], MessageSession], since: float) -> MessageSession | None:
        """Open or renew a session; while another listener owns the scale set (a conflict) this one
        is a standby that tries again every ``standby_interval`` and takes over when the owner
        leaves, for at most ``standby_timeout`` counted from ``since``. None when the run ends
        first; any other error is the caller's."""
        while not self._pacer.ending():
            try:
                session = attempt()
            except SessionConflictError as exc:
                self.standby = True
                timeout = self._config.standby_timeout
                if timeout is not None and self._clock.monotonic() - since >= timeout:
                    raise exc.recast(SessionConflictError,
                        f"scale set {self.scale_set_id} stayed owned by another listener for "
                        f"{timeout:.0f}s: {exc.message}") from exc
                log.info("scale set %d has an active session elsewhere; standing by", self.scale_set_id)
                if self._pacer.wait(self._pacer.standby_pause()):
                    return None
                continue
            self.standby = False
            return session
        return None
