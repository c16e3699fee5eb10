"""``StatisticsTracker``: which statistics the scaler should be on, the newest the listener knows.

The service hands a listener statistics in two ways: in every queue message, and out of band
(a session being created or refreshed, a scale set read). Messages come in queue order, so each
message's statistics are at least as new as the last message's. Statistics taken out of band
are current at that moment, but messages already waiting in the queue then may carry older
ones (ASSUMPTION: a message's statistics are those of the moment it was queued; if the service
stamps them when delivering, every figure is current and what follows costs nothing).

So after an out-of-band figure the tracker is *catching up*: a message's figure cannot be
ordered against it and is held back instead of applied, so the scaler is never moved back to an
older figure. The listener then finds out cheaply, never by waiting a long poll:

- a message the service answered only after holding the poll ``HELD_BY_SERVICE`` seconds was
  queued after that poll reached it, when nothing older was waiting: it is newer than anything
  known, and catching up is over (no request needed);
- a held figure equal to the current one needs nothing (whichever is newer, the scaler is right);
- a differing one makes the listener peek: its next poll is cut short after ``CATCH_UP_PEEK``
  seconds. The service answers a poll at once when it holds a message (docs/protocol.md §4.8),
  so a poll still unanswered by then means every message queued before it has been delivered;
- the queue seen empty (a peek cut short, an empty poll) ends the catching up. A held figure
  that still differs is settled by one request for the current statistics (``fetched``); should
  that fail, the held one, from the last message delivered, is applied, as the reference
  client would.

Catching up lasts ``CATCH_UP_LIMIT`` seconds at most: a queue that never pauses for a peek
(more than a few messages a second, or a backlog of hundreds) is settled then as if
drained, so a figure is never held back longer; messages of a backlog still waiting after that
are applied as they come, as the reference client applies every figure. So a figure held back
waits for the burst of messages it came in (each within ``HELD_BY_SERVICE`` of its poll) plus
one peek and one request: about half a second after an opening, more in a long burst.

Both timings rest on one assumption (docs/protocol.md §4.8: a waiting message is returned at
once) and on the listener's process being scheduled. Were an answer slower than that (a lossy
link, a starved host), the listener would take a queued message for a new one, or the queue as
drained, early, and apply later figures as they come, as the reference does: at worst a brief
step back, which the next message already queued corrects.

Pure: no I/O, no clock. The listener feeds it what it reads and asks what to do next.
"""

from __future__ import annotations

from .._models import RunnerScaleSetStatistic

__all__ = ["CATCH_UP_LIMIT", "CATCH_UP_PEEK", "HELD_BY_SERVICE", "StatisticsTracker"]

CATCH_UP_PEEK = 0.4  # seconds a poll may go unanswered before the queue is taken as drained
HELD_BY_SERVICE = 0.25  # a message answered this late came after its poll reached the service
CATCH_UP_LIMIT = 5.0  # catching up never lasts longer: a queue busy without a pause is settled then


class StatisticsTracker:
    """The newest statistics known, and whether messages may still carry older ones."""

    def __init__(self) -> None:
        self.current: RunnerScaleSetStatistic | None = None
        self._catching_up = False
        self._held: RunnerScaleSetStatistic | None = None

    @property
    def catching_up(self) -> bool:
        """True while messages may carry statistics older than ``current``."""
        return self._catching_up

    @property
    def held(self) -> RunnerScaleSetStatistic | None:
        """The figure of the last message read while catching up (not applied), or None."""
        return self._held

    def from_service(self, statistics: RunnerScaleSetStatistic | None) -> None:
        """Statistics current as of now (a session opened or renewed): they become ``current``, and
        messages already queued may be older, so catching up starts. None (a session without
        statistics) changes nothing."""
        if statistics is None:
            return
        self.current, self._catching_up, self._held = statistics, True, None

    def from_message(self, statistics: RunnerScaleSetStatistic, *, after_a_hold: bool = False) -> None:
        """A message's statistics: newer than the last message's, and applied unless catching up.
        ``after_a_hold``: the service held the poll before this message came (``HELD_BY_SERVICE``),
        so it is newer than every figure known and catching up is over."""
        if self._catching_up and not after_a_hold:
            self._held = statistics
        else:
            self.current, self._catching_up, self._held = statistics, False, None

    @property
    def should_peek(self) -> bool:
        """True when a held figure differs from the current one: the next poll should be a peek."""
        return self._catching_up and self._held is not None and self._held != self.current

    def drained(self) -> bool:
        """The queue was seen empty. True when the current statistics must be asked for (a held
        figure differs); otherwise catching up is over."""
        if self.should_peek:
            return True
        self._catching_up, self._held = False, None
        return False

    def fetched(self, statistics: RunnerScaleSetStatistic | None) -> None:
        """The current statistics, asked for after the queue drained: newer than every message
        delivered, and older than none still to come. None (not in the answer) falls back as
        ``fetch_failed`` does."""
        if statistics is None:
            self.fetch_failed()
            return
        self.current, self._catching_up, self._held = statistics, False, None

    def fetch_failed(self) -> None:
        """The current statistics could not be had: apply the last message's, as the reference
        client does (the next message corrects it either way)."""
        if self._held is not None:
            self.current = self._held
        self._catching_up, self._held = False, None
