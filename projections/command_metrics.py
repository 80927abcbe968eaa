"""Command figures for ``/metrics``, counted from the event log as it is written.

A follower of the :class:`~eventstore.log_tail.LogTail` that starts at the end
of the log (it keeps no position: like every Prometheus counter, its counts
start at zero with the process). From each command's events it counts what
seed 000 asks the plant core to report:

- commands requested, and their rate over the last minute;
- dropped commands: those that ended in a failed write (errors) or expired
  unanswered (timeouts: no confirmation, or no approval of a critical write,
  in time);
- processing latency: from the command's release to the PLC write's outcome,
  as the two events record them (their ``at``). The release is the
  requester's ``Confirmed`` (an emergency action's included), or, for a
  critical tag, the second person's ``Approved``: a ``Confirmed`` meaning
  ``request`` releases nothing, and the wait for a second person is not the
  plant core's latency.

A released command that ends without a write (cancelled, or rejected because
the plant went read-only) leaves the commands in flight without a latency.
Declined and rejected commands are not dropped ones: they were refused on
purpose, not lost.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import PlantApplication
from domain.command import ControlCommand, SignatureMeaning
from eventstore.notifications import event_topic, originator_uuid

REQUESTED = event_topic(ControlCommand, "Requested")
CONFIRMED = event_topic(ControlCommand, "Confirmed")
APPROVED = event_topic(ControlCommand, "Approved")
SUCCEEDED = event_topic(ControlCommand, "WriteSucceeded")
FAILED = event_topic(ControlCommand, "WriteFailed")
EXPIRED = event_topic(ControlCommand, "Expired")
# A released command stopped before its write: no outcome will come, so no latency.
STOPPED = frozenset(event_topic(ControlCommand, name) for name in ("Cancelled", "Rejected"))

RATE_WINDOW_SECONDS = 60.0
# Released commands waiting for their outcome; more means a dispatcher is stuck,
# and the oldest are forgotten rather than growing without bound.
MAX_IN_FLIGHT = 10_000


class CommandMetrics:
    def __init__(
        self,
        app: PlantApplication,
        log_end: Callable[[], Awaitable[int]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._log_end = log_end
        self._clock = clock
        self._start = 0
        self.requested = 0
        self.dropped: dict[str, int] = {"write_failed": 0, "expired": 0}
        self.settled = 0
        self.latency_seconds_total = 0.0
        self._recent: deque[float] = deque()
        self._released: OrderedDict[UUID, datetime] = OrderedDict()

    # -- the log tail's follower protocol ----------------------------------------------------

    async def load_position(self) -> int:
        self._start = await self._log_end()
        return self._start

    async def on_notifications(self, notifications: Sequence[Notification]) -> None:
        for notification in notifications:
            if notification.id > self._start:
                self._count(notification)

    # -- the figures ---------------------------------------------------------------------------

    def requests_per_second(self) -> float:
        self._forget_old_requests()
        return len(self._recent) / RATE_WINDOW_SECONDS

    def mean_latency_seconds(self) -> float:
        return self.latency_seconds_total / self.settled if self.settled else 0.0

    @property
    def in_flight(self) -> int:
        """Released commands whose write's outcome is not recorded yet."""
        return len(self._released)

    def _count(self, notification: Notification) -> None:
        topic = notification.topic
        if topic == REQUESTED:
            self.requested += 1
            self._recent.append(self._clock())
            self._forget_old_requests()
        elif topic in (CONFIRMED, APPROVED):
            event = self._app.mapper.to_domain_event(notification)
            # A critical tag's requester signed a request: released only by the approval.
            if getattr(event, "meaning", None) != SignatureMeaning.REQUEST.value:
                self._release(originator_uuid(notification), _at(event))
        elif topic == EXPIRED:
            self.dropped["expired"] += 1
        elif topic in STOPPED:
            self._released.pop(originator_uuid(notification), None)
        elif topic in (SUCCEEDED, FAILED):
            if topic == FAILED:
                self.dropped["write_failed"] += 1
            released = self._released.pop(originator_uuid(notification), None)
            if released is not None:
                outcome = _at(self._app.mapper.to_domain_event(notification))
                self.settled += 1
                self.latency_seconds_total += max(0.0, (outcome - released).total_seconds())

    def _release(self, command_id: UUID, at: datetime) -> None:
        self._released[command_id] = at
        if len(self._released) > MAX_IN_FLIGHT:
            self._released.popitem(last=False)

    def _forget_old_requests(self) -> None:
        horizon = self._clock() - RATE_WINDOW_SECONDS
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()


def _at(event: object) -> datetime:
    at: datetime = event.at  # type: ignore[attr-defined]  # every command event records when
    return at
