"""What a failed poll means for a listener: a pure decision from the error to an action.

The listener's loop asks ``decide`` and carries the answer out; nothing here sends, sleeps or
logs, so the whole policy reads (and is tested) as a table, like ``classify`` for one request:

- the client was closed, or the run's own stop, cancel or time limit cut the call: nothing to
  do, the loop sees it is ending;
- the scale set answered 404: ask once more before believing it (GitHub has answered 404 during
  incidents for scale sets that exist), then pause;
- credentials rejected, configuration wrong, a state file unusable: the run ends;
- a message the client cannot read: wait and read it again, and after ``poison_after`` failures
  set it aside (acknowledged) so it cannot block the queue;
- the queue turned the session away (expired token, session gone or taken): renew it in place,
  unless the client was told not to re-create lost sessions;
- anything else (an open breaker, 5xx, timeouts, rate limits, garbage): wait it out.
"""

from __future__ import annotations

import enum

from .._errors import (
    AuthenticationError,
    CallCancelledError,
    ConfigError,
    DeadlineExceededError,
    MessageQueueTokenExpiredError,
    ResponseError,
    ScalesetError,
    ScaleSetNotFoundError,
    SessionConflictError,
    SessionNotFoundError,
    StateFileError,
)

__all__ = ["PERMANENT", "PollAction", "decide"]

PERMANENT = (ScaleSetNotFoundError, AuthenticationError, ConfigError, StateFileError)
_SESSION_TROUBLE = (MessageQueueTokenExpiredError, SessionNotFoundError, SessionConflictError)


class PollAction(enum.Enum):
    """What the loop does about a failed poll."""

    NOTHING = "nothing"  # the run is ending (or the client closed): the loop notices
    CONFIRM_GONE = "confirm gone"  # look the scale set up once more; raise if it is gone, else pause
    END = "end"  # a permanent condition: raise it
    READ_AGAIN = "read again"  # an unreadable message: pause by its failures, then poll again
    SET_ASIDE = "set aside"  # an unreadable message failed poison_after times: poison it and ack it
    RENEW = "renew"  # the queue turned the session away: renew it in place
    WAIT_OUT = "wait out"  # transient trouble: wait for its retry_at, a break or the backoff


def decide(exc: ScalesetError, *, client_closed: bool, run_ending: bool, message_failures: int,
           poison_after: int, recreate_sessions: bool) -> PollAction:
    """The action for ``exc``. ``message_failures`` counts this failure of the unreadable message
    the error names (if any); ``recreate_sessions`` is ``ResilienceConfig.auto_recover_session``."""
    if client_closed:
        return PollAction.NOTHING
    if isinstance(exc, (CallCancelledError, DeadlineExceededError)) and run_ending:
        return PollAction.NOTHING
    if isinstance(exc, ScaleSetNotFoundError):
        return PollAction.CONFIRM_GONE
    if isinstance(exc, PERMANENT):
        return PollAction.END
    if isinstance(exc, ResponseError) and exc.message_id is not None:
        return PollAction.SET_ASIDE if message_failures >= poison_after else PollAction.READ_AGAIN
    if isinstance(exc, _SESSION_TROUBLE):
        if isinstance(exc, SessionNotFoundError) and not recreate_sessions:
            return PollAction.END
        return PollAction.RENEW
    return PollAction.WAIT_OUT
