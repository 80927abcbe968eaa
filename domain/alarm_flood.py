"""The AlarmFlood aggregate: the alarm rate of one plant area (ISA-18.2 alarm floods).

An operator cannot handle more than about one alarm a minute; more than ten
new alarms within ten minutes is a flood, and the alarm list must say so
(flood suppression, first-out displays and the plant's alarm KPIs start here).
The flood ends when fewer than five activations remain within the last ten
minutes; the gap between 10 and 5 keeps it from flickering at the edge.

Only annunciated activations count: an alarm shelved, suppressed by design
or out of service when it was raised never reached the operator.

The aggregate keeps the activation times of the last ten minutes, so each
batch of activations is an event (``ActivationsCounted``) besides the flood's
start and end. Times are those of the sources' transitions, so a backlog
recorded late is judged by when the alarms really came. A flood's end is
recorded at the moment it happened: when the fifth most recent activation
left the window, checked at the next activation or by a sweep.

One aggregate per area, its id derived from the area's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

# Fixed forever: changing it would orphan every stored flood history.
FLOOD_NAMESPACE = UUID("f670f30e-fa94-4860-9a68-96de58172df4")

FLOOD_WINDOW = timedelta(minutes=10)
# More than this many activations within the window starts a flood …
FLOOD_STARTS_ABOVE = 10
# … and it ends when fewer than this many remain.
FLOOD_ENDS_BELOW = 5
FLOOD_ACTOR = "system"


def flood_id(area: str) -> UUID:
    return uuid5(FLOOD_NAMESPACE, "area:" + area)


def count_within(activations: Sequence[datetime], at: datetime) -> int:
    """How many activations fall in the window that ends at ``at``: (at - 10 min, at]."""
    return sum(1 for t in activations if at - FLOOD_WINDOW < t <= at)


class AlarmFlood(Aggregate):
    @staticmethod
    def create_id(*_: Any, area: str, **__: Any) -> UUID:
        return flood_id(area)

    @event("CountingStarted")
    def __init__(self, *, area: str, actor: str, at: datetime) -> None:
        self._area = area
        self._activations: list[datetime] = []
        self._flooding = False
        self._started_at: datetime | None = None

    @property
    def area(self) -> str:
        return self._area

    @property
    def flooding(self) -> bool:
        return self._flooding

    @property
    def started_at(self) -> datetime | None:
        """When the flood now running started; None when there is none."""
        return self._started_at

    @property
    def activations(self) -> tuple[datetime, ...]:
        """The activation times of the ten minutes before the latest one, oldest first."""
        return tuple(self._activations)

    def count_at(self, at: datetime) -> int:
        return count_within(self._activations, at)

    def ends_at(self) -> datetime | None:
        """When the running flood ends if no activation comes: the 5th latest leaves the window."""
        return self._end_of(self._activations)

    def count(self, activations: Sequence[datetime], at: datetime) -> None:
        """Count new activations (oldest first) and record a flood starting or ending among them.

        The activations are recorded in as few events as possible: a batch is
        split only where a flood starts or ends, so the events stay in order.
        """
        pending: list[datetime] = []
        for moment in sorted(activations):
            ended = self._end_of(self._activations + pending)
            # An activation at the very moment the window would drop below 5 keeps it at 5.
            if ended is not None and ended < moment:
                self._flush(pending)
                pending = []
                self._end(ended)
            pending.append(moment)
            count = count_within(self._activations + pending, moment)
            if not self._flooding and count > FLOOD_STARTS_ABOVE:
                self._flush(pending)
                pending = []
                self._record_flood_started(
                    area=self._area, count=count, actor=FLOOD_ACTOR, at=moment
                )
        self._flush(pending)
        self.end_if_over(at)

    def end_if_over(self, at: datetime) -> bool:
        """Record ``FloodEnded`` if the flood ended by ``at`` (for a sweep of quiet areas)."""
        ended = self.ends_at()
        if ended is None or ended > at:
            return False
        self._end(ended)
        return True

    def _end_of(self, activations: list[datetime]) -> datetime | None:
        if not self._flooding or self._started_at is None:
            return None
        recent = sorted(activations)
        if len(recent) < FLOOD_ENDS_BELOW:
            return self._started_at
        return max(self._started_at, recent[-FLOOD_ENDS_BELOW] + FLOOD_WINDOW)

    def _end(self, ended: datetime) -> None:
        self._record_flood_ended(
            area=self._area,
            count=self.count_at(ended),
            actor=FLOOD_ACTOR,
            at=ended,
        )

    def _flush(self, times: list[datetime]) -> None:
        if times:
            self._record_activations_counted(times=list(times), actor=FLOOD_ACTOR, at=times[-1])

    # -- records (state changes only: these run again on every replay) -----------------------

    @event("ActivationsCounted")
    def _record_activations_counted(
        self, *, times: list[datetime], actor: str, at: datetime
    ) -> None:
        merged = sorted(self._activations + times)
        # Later checks look at moments after the latest activation: older ones never count again.
        self._activations = [t for t in merged if merged[-1] - t < FLOOD_WINDOW]

    @event("FloodStarted")
    def _record_flood_started(self, *, area: str, count: int, actor: str, at: datetime) -> None:
        self._flooding = True
        self._started_at = at

    @event("FloodEnded")
    def _record_flood_ended(self, *, area: str, count: int, actor: str, at: datetime) -> None:
        self._flooding = False
        self._started_at = None
