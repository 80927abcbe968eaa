"""Reacts to AlarmTransition messages on plant.alarms.>; calls record_alarm_transitions.

The alarm recorder: every transition on ``plant.alarms.>`` becomes events, exactly once.

Supervisors evaluate alarm conditions at the source and publish each
transition into the ALARMS stream. This durable consumer hands them, a burst
at a time, to :meth:`~domain.application.PlantApplication.record_alarm_transitions`,
which records each alarm's events in one atomic save and ignores a transition
id it has already recorded. A message is acked only after that save has
committed (see :mod:`projections.consumer`), so a crash in between redelivers
it, and the redelivery records nothing twice.

The recorder keeps the alarms and floods it has saved in an
:class:`~domain.alarm_cache.AlarmCache`, so that a burst loads each alarm once,
not once per batch (ADR 0043). One batch is recorded at a time: a batch whose
handler timed out may still be running in the store's thread when the
consumer hands the next one over, and the two must not share the cache's
aggregates at once.

Events are kept for good, and every read model that follows the log must be
able to hold them: a transition that one could not hold (a NUL or a NaN, which
``jsonb`` refuses) or that makes no sense (a time before 1970) is dead-lettered
before it is recorded (:mod:`projections.storable`), not recorded and refused
by the alarm views at every start afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import eventsourcing.persistence

from domain.alarm_cache import AlarmCache
from domain.application import AlarmChange, PlantApplication
from domain.messages import ALARM_SUBJECT, AlarmTransition, MalformedMessage
from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from projections.consumer import Feed
from projections.storable import check_transition
from support.clock import utc_now

ALARM_STREAM = "ALARMS"


class AlarmRecorder:
    def __init__(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._app = app
        self._store_executor = store_executor
        self._clock = clock
        self._cache = AlarmCache()
        self._one_batch_at_a_time = threading.Lock()
        self.recorded = 0  # transitions that changed an alarm, for figures

    async def record(self, transitions: list[AlarmTransition]) -> None:
        changes = await self._store_executor.call(self._record, transitions)
        self.recorded += len(changes)

    def _record(self, transitions: list[AlarmTransition]) -> list[AlarmChange]:
        with self._one_batch_at_a_time:
            return self._app.record_alarm_transitions(transitions, self._clock(), self._cache)


def decode_transition(subject: str, data: bytes) -> AlarmTransition:
    transition = AlarmTransition.decode(data)
    if subject != ALARM_SUBJECT.format(device=transition.device):
        # Only a device's own supervisor publishes on its subject.
        raise MalformedMessage(f"device {transition.device!r} does not match the subject")
    return check_transition(transition, utc_now())


ALARM_FEED: Feed[AlarmTransition] = Feed(
    stream=ALARM_STREAM,
    durable="alarm-recorder",
    filter_subject="plant.alarms.>",
    decode=decode_transition,
    transient=TRANSIENT_STORE_ERRORS,
    # The domain's refusal of a transition and what cannot be encoded (ValueError:
    # a lone surrogate in a string), a time it cannot compute with (OverflowError),
    # and the event store's data errors. Not IntegrityError: that is a conflict
    # with a concurrent save, not a fault of the data.
    refused=(ValueError, OverflowError, eventsourcing.persistence.DataError),
)
