"""The alarm recorder: every transition on ``plant.alarms.>`` becomes events, exactly once.

Supervisors evaluate alarm conditions at the source and publish each
transition into the ALARMS stream. This durable consumer hands them, a burst
at a time, to :meth:`~domain.application.PlantApplication.record_alarm_transitions`,
which records each alarm's events in one atomic save and ignores a transition
id it has already recorded. A message is acked only after that save has
committed (see :mod:`projections.consumer`), so a crash in between redelivers
it, and the redelivery records nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from domain.application import PlantApplication
from domain.messages import ALARM_SUBJECT, AlarmTransition, MalformedMessage
from eventstore.executor import StoreExecutor
from eventstore.log_tail import TRANSIENT_STORE_ERRORS
from projections.consumer import DurableConsumer
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
        self.recorded = 0  # transitions that changed an alarm, for figures

    async def record(self, transitions: list[AlarmTransition]) -> None:
        changes = await self._store_executor.call(
            self._app.record_alarm_transitions, transitions, self._clock()
        )
        self.recorded += len(changes)


def decode_transition(subject: str, data: bytes) -> AlarmTransition:
    transition = AlarmTransition.decode(data)
    if subject != ALARM_SUBJECT.format(device=transition.device):
        # Only a device's own supervisor publishes on its subject.
        raise MalformedMessage(f"device {transition.device!r} does not match the subject")
    return transition


def alarm_consumer(
    js: JetStreamContext,
    recorder: AlarmRecorder,
    *,
    stream: str = ALARM_STREAM,
    durable: str = "alarm-recorder",
    start: DeliverPolicy = DeliverPolicy.ALL,
    filter_subject: str = "plant.alarms.>",
    batch: int = 256,
) -> DurableConsumer[AlarmTransition]:
    """The durable consumer that feeds ``recorder``; ``await .run()`` it."""
    return DurableConsumer(
        js,
        stream,
        durable,
        filter_subject,
        recorder.record,
        decode=decode_transition,
        transient=TRANSIENT_STORE_ERRORS,
        batch=batch,
        max_ack_pending=max(batch * 4, 1024),
        start=start,
    )
