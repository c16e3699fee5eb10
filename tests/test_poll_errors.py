"""What a failed poll means for a listener (``_listener.poll_errors.decide``), as a table: each
row an error and the circumstances, and the action the loop must take. The loop carrying the
actions out is tested against the fake in the listener's own tests."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._listener.poll_errors import PollAction, decide

NORMAL = {"client_closed": False, "run_ending": False, "message_failures": 0, "poison_after": 3,
          "recreate_sessions": True}

CASES: list[tuple[str, sc.ScalesetError, dict[str, object], PollAction]] = [
    ("a closed client: nothing, the loop ends", sc.ServerError("503"), {"client_closed": True},
     PollAction.NOTHING),
    ("a closed client wins over a permanent error", sc.AuthenticationError("401"), {"client_closed": True},
     PollAction.NOTHING),
    ("the run's own stop cut the call", sc.CallCancelledError("stopped"), {"run_ending": True},
     PollAction.NOTHING),
    ("the run's own time limit cut the call", sc.DeadlineExceededError("late"), {"run_ending": True},
     PollAction.NOTHING),
    ("a deadline that is not the run's is waited out", sc.DeadlineExceededError("late"), {},
     PollAction.WAIT_OUT),
    ("a cancel that is not the run's is waited out", sc.CallCancelledError("x"), {}, PollAction.WAIT_OUT),
    ("a 404 for the scale set is looked at again", sc.ScaleSetNotFoundError("404"), {},
     PollAction.CONFIRM_GONE),
    ("a 404 even while ending is looked at again", sc.ScaleSetNotFoundError("404"), {"run_ending": True},
     PollAction.CONFIRM_GONE),
    ("credentials rejected end the run", sc.AuthenticationError("401"), {}, PollAction.END),
    ("a configuration error ends the run", sc.ConfigError("bad"), {}, PollAction.END),
    ("an unusable state file ends the run", sc.StateFileError("locked"), {}, PollAction.END),
    ("an unreadable message is read again", sc.ResponseError("garbage", message_id=7),
     {"message_failures": 2}, PollAction.READ_AGAIN),
    ("an unreadable message that failed poison_after times is set aside",
     sc.ResponseError("garbage", message_id=7), {"message_failures": 3}, PollAction.SET_ASIDE),
    ("an unreadable answer without a message id is waited out", sc.ResponseError("garbage"), {},
     PollAction.WAIT_OUT),
    ("an expired queue token renews the session", sc.MessageQueueTokenExpiredError("401"), {},
     PollAction.RENEW),
    ("a lost session renews it", sc.SessionNotFoundError("404"), {}, PollAction.RENEW),
    ("a lost session ends the run when sessions must not be re-created", sc.SessionNotFoundError("404"),
     {"recreate_sessions": False}, PollAction.END),
    ("an expired token still renews when sessions must not be re-created",
     sc.MessageQueueTokenExpiredError("401"), {"recreate_sessions": False}, PollAction.RENEW),
    ("a session taken by another host renews (standing by)", sc.SessionConflictError("409"), {},
     PollAction.RENEW),
    ("a 5xx is waited out", sc.ServerError("503"), {}, PollAction.WAIT_OUT),
    ("an open breaker is waited out", sc.CircuitOpenError("open"), {}, PollAction.WAIT_OUT),
    ("a rate limit is waited out", sc.RateLimitedError("429"), {}, PollAction.WAIT_OUT),
    ("a network failure is waited out", sc.TransportError("refused"), {}, PollAction.WAIT_OUT),
]


@pytest.mark.parametrize(("error", "given", "action"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_failed_poll_leads_to_one_action(error: sc.ScalesetError, given: dict[str, object],
                                           action: PollAction) -> None:
    assert decide(error, **{**NORMAL, **given}) is action  # type: ignore[arg-type]
