"""Command figures for ``/metrics``, counted from the event log as it is written.

A follower of the :class:`~eventstore.log_tail.LogTail` that starts at the end
of the log (it keeps no position: like every Prometheus counter, its counts
start at zero with the process). From each command's events it counts what
seed 000 asks the plant core to report:

- commands requested, and their rate over the last minute;
- dropped commands: those that ended in a failed write (errors) or expired
  unconfirmed (timeouts);
- processing latency: from the operator's confirmation to the PLC write's
  outcome, as the two events record them (their ``at``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import PlantApplication
from domain.command import ControlCommand
from eventstore.log_tail import event_topic, originator_uuid

REQUESTED = event_topic(ControlCommand, "Requested")
CONFIRMED = event_topic(ControlCommand, "Confirmed")
SUCCEEDED = event_topic(ControlCommand, "WriteSucceeded")
FAILED = event_topic(ControlCommand, "WriteFailed")
EXPIRED = event_topic(ControlCommand, "Expired")

RATE_WINDOW_SECONDS = 60.0
# Confirmed commands waiting for their outcome; more means a dispatcher is stuck,
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
        self._confirmed: OrderedDict[UUID, datetime] = OrderedDict()

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

    def _count(self, notification: Notification) -> None:
        topic = notification.topic
        if topic == REQUESTED:
            self.requested += 1
            self._recent.append(self._clock())
            self._forget_old_requests()
        elif topic == CONFIRMED:
            self._confirmed[originator_uuid(notification)] = self._timestamp(notification)
            if len(self._confirmed) > MAX_IN_FLIGHT:
                self._confirmed.popitem(last=False)
        elif topic == EXPIRED:
            self.dropped["expired"] += 1
        elif topic in (SUCCEEDED, FAILED):
            if topic == FAILED:
                self.dropped["write_failed"] += 1
            confirmed = self._confirmed.pop(originator_uuid(notification), None)
            if confirmed is not None:
                latency = (self._timestamp(notification) - confirmed).total_seconds()
                self.settled += 1
                self.latency_seconds_total += max(0.0, latency)

    def _timestamp(self, notification: Notification) -> datetime:
        event = self._app.mapper.to_domain_event(notification)
        at: datetime = event.at  # type: ignore[attr-defined]  # every command event records when
        return at

    def _forget_old_requests(self) -> None:
        horizon = self._clock() - RATE_WINDOW_SECONDS
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
