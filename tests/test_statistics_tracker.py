"""``StatisticsTracker``: which figure the scaler should be on, as a table of what the listener
reads and what follows (pure: no I/O, no clock)."""

from __future__ import annotations

import pytest

import scaleset_client as sc
from scaleset_client._listener.statistics import StatisticsTracker


def figure(assigned: int) -> sc.RunnerScaleSetStatistic:
    return sc.RunnerScaleSetStatistic(total_assigned_jobs=assigned)


# Each step: ("service", n) a session's figure; ("message", n) a message's; ("held", n) a message
# that came after the service held the poll; ("drained", None) the queue seen empty, whose
# result (fetch needed?) is checked against the row; ("fetched", n) / ("failed", None).
CASES = [
    ("a message after the session's figure, caught up: applied at once",
     [("service", 1), ("drained", False), ("message", 2)], 2, False, False),
    ("a queued message's older figure is held, never applied over the session's",
     [("service", 5), ("message", 1)], 5, True, True),
    ("a queued figure equal to the session's needs no peek and no request",
     [("service", 5), ("message", 1), ("message", 5), ("drained", False)], 5, False, False),
    ("a differing figure at the drain asks once; the answer is applied",
     [("service", 5), ("message", 4), ("drained", True), ("fetched", 6)], 6, False, False),
    ("an answer without statistics applies the last message's, as a failure does",
     [("service", 5), ("message", 4), ("drained", True), ("fetched", None)], 4, False, False),
    ("the request failing applies the last message's, as the reference would",
     [("service", 5), ("message", 4), ("drained", True), ("failed", None)], 4, False, False),
    ("a message after a held poll is newer than all: applied, catching up over",
     [("service", 5), ("message", 1), ("held", 7)], 7, False, False),
    ("a renewed session's figure replaces a held one and starts catching up again",
     [("service", 5), ("message", 1), ("service", 3)], 3, True, False),
    ("a session without statistics changes nothing",
     [("service", 5), ("drained", False), ("service", None), ("message", 6)], 6, False, False),
    ("after catching up, messages are applied in order, down as well as up",
     [("service", 5), ("drained", False), ("message", 6), ("message", 2)], 2, False, False),
]


@pytest.mark.parametrize(("steps", "current", "catching_up", "peek"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_tracker_keeps_the_newest_figure_known(steps: list[tuple[str, object]], current: int,
                                                   catching_up: bool, peek: bool) -> None:
    tracker = StatisticsTracker()
    for kind, raw in steps:
        value = raw if raw is None or isinstance(raw, bool) else int(str(raw))
        if kind == "service":
            tracker.from_service(None if value is None else figure(int(value)))
        elif kind == "message":
            tracker.from_message(figure(int(value or 0)))
        elif kind == "held":
            tracker.from_message(figure(int(value or 0)), after_a_hold=True)
        elif kind == "drained":
            assert tracker.drained() is value
        elif kind == "fetched":
            tracker.fetched(None if value is None else figure(int(value)))
        else:
            tracker.fetch_failed()
    assert tracker.current is not None and tracker.current.total_assigned_jobs == current
    assert tracker.catching_up is catching_up and tracker.should_peek is peek


def test_nothing_known_before_the_first_session() -> None:
    tracker = StatisticsTracker()
    assert tracker.current is None and tracker.catching_up is False and tracker.should_peek is False
    assert tracker.drained() is False
    tracker.fetch_failed()
    assert tracker.current is None and tracker.held is None


def test_the_figure_held_back_is_the_last_message_read_while_catching_up() -> None:
    """``held`` is the figure of the last message read while catching up, until it is settled."""
    tracker = StatisticsTracker()
    tracker.from_service(figure(5))
    assert tracker.held is None
    tracker.from_message(figure(1))
    tracker.from_message(figure(4))
    assert tracker.held == figure(4) and tracker.current == figure(5)
    assert tracker.drained() is True and tracker.held == figure(4)  # still held while it is asked for
    tracker.fetched(figure(6))
    assert tracker.held is None and tracker.current == figure(6)
