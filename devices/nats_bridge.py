"""The only module of the device layer that knows NATS.

- :class:`NatsTelemetrySink` publishes a supervisor's batches to
  ``plant.telemetry.<device>`` and its status to ``plant.status.<device>``
  through JetStream, so the TELEMETRY stream stores them for the projections.
  It publishes the supervisor's alarm transitions to ``plant.alarms.<device>``,
  into the ALARMS stream, each with its ``transition_id`` as the
  ``Nats-Msg-Id`` header, so that JetStream drops a transition published twice
  within its duplicate window. A failed publish (NATS down, stream missing,
  timeout) is logged and counted, never raised: a broker outage must not stop
  the device's supervision. A telemetry batch or a status that failed is gone
  (the next one replaces it), but an alarm transition is not replaced until the
  condition changes again: it waits, in order, and is published again after
  the next publish that succeeds (at most :data:`MAX_PENDING_ALARMS` wait).
- :func:`serve_writes` answers ``plant.write.<device>`` requests with the
  supervisor's :class:`~domain.messages.WriteReply`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from domain.messages import (
    ALARM_SUBJECT,
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    WRITE_SUBJECT,
    AlarmTransition,
    DeviceStatus,
    MalformedMessage,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)

log = logging.getLogger(__name__)

# Alarm transitions kept for another try while NATS is unreachable; beyond, the oldest go.
MAX_PENDING_ALARMS = 10_000


class NatsTelemetrySink:
    def __init__(self, js: JetStreamContext, *, timeout_seconds: float = 2.0) -> None:
        self._js = js
        self._timeout = timeout_seconds
        self._pending_alarms: deque[AlarmTransition] = deque()
        self.published = 0
        self.publish_failures = 0
        self.alarms_dropped = 0

    @property
    def pending_alarms(self) -> int:
        """Alarm transitions not yet stored, waiting for the next try."""
        return len(self._pending_alarms)

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        subject = TELEMETRY_SUBJECT.format(device=batch.device)
        if await self._publish(subject, batch.encode()):
            await self._retry_alarms()

    async def publish_status(self, status: DeviceStatus) -> None:
        if await self._publish(STATUS_SUBJECT.format(device=status.device), status.encode()):
            await self._retry_alarms()

    async def publish_alarm(self, transition: AlarmTransition) -> None:
        if len(self._pending_alarms) >= MAX_PENDING_ALARMS:
            lost = self._pending_alarms.popleft()
            self.alarms_dropped += 1
            log.error(
                "alarm transition %s of %s/%s dropped: %d waiting for NATS",
                lost.transition_id, lost.device, lost.condition, MAX_PENDING_ALARMS,
            )  # fmt: skip
        self._pending_alarms.append(transition)
        await self._retry_alarms()

    async def _retry_alarms(self) -> None:
        """Publish the waiting transitions in order, until one fails."""
        while self._pending_alarms:
            transition = self._pending_alarms[0]
            published = await self._publish(
                ALARM_SUBJECT.format(device=transition.device),
                transition.encode(),
                headers={"Nats-Msg-Id": transition.transition_id},
            )
            if not published:
                return
            # Another supervisor's task may have published it meanwhile (JetStream kept one).
            if self._pending_alarms and self._pending_alarms[0] is transition:
                self._pending_alarms.popleft()

    async def _publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> bool:
        try:
            await self._js.publish(subject, payload, timeout=self._timeout, headers=headers)
        except nats.errors.Error as exc:
            self.publish_failures += 1
            log.warning("publish to %s failed (%d so far): %r", subject, self.publish_failures, exc)
            return False
        self.published += 1
        return True


class WriteService(Protocol):
    """What :func:`serve_writes` needs of a supervisor."""

    @property
    def device_id(self) -> str: ...

    async def submit_write(self, request: WriteRequest) -> WriteReply: ...


async def serve_writes(nc: NatsClient, supervisor: WriteService) -> Subscription:
    """Answer ``plant.write.<device>``; the caller unsubscribes the returned subscription.

    nats-py runs one subscription's callbacks one after another, so each request
    is answered from its own task: a write waiting for the device must not hold
    back the next request, which may need a ``busy`` reply from the bounded queue.
    """
    in_flight: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        try:
            request = WriteRequest.decode(msg.data)
        except MalformedMessage as exc:
            reply = WriteReply.failure("", WriteErrorKind.BAD_REQUEST, str(exc))
        else:
            reply = await supervisor.submit_write(request)
        if not msg.reply:
            log.warning("write request for %s without a reply subject", supervisor.device_id)
            return
        try:
            await msg.respond(reply.encode())
        except nats.errors.Error as exc:
            log.warning("cannot reply to a write on %s: %r", msg.subject, exc)

    async def dispatch(msg: Msg) -> None:
        task = asyncio.create_task(answer(msg))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    return await nc.subscribe(WRITE_SUBJECT.format(device=supervisor.device_id), cb=dispatch)
