"""The only module of the device layer that knows NATS.

- :class:`NatsTelemetrySink` publishes a supervisor's batches to
  ``plant.telemetry.<device>`` and its status to ``plant.status.<device>``
  through JetStream, so the TELEMETRY stream stores them for the projections.
  A failed publish (NATS down, stream missing, timeout) is logged and counted,
  never raised: a broker outage must not stop the device's supervision.
- :func:`serve_writes` answers ``plant.write.<device>`` requests with the
  supervisor's :class:`~domain.messages.WriteReply`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from domain.messages import (
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    WRITE_SUBJECT,
    DeviceStatus,
    MalformedMessage,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)

log = logging.getLogger(__name__)


class NatsTelemetrySink:
    def __init__(self, js: JetStreamContext, *, timeout_seconds: float = 2.0) -> None:
        self._js = js
        self._timeout = timeout_seconds
        self.published = 0
        self.publish_failures = 0

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        await self._publish(TELEMETRY_SUBJECT.format(device=batch.device), batch.encode())

    async def publish_status(self, status: DeviceStatus) -> None:
        await self._publish(STATUS_SUBJECT.format(device=status.device), status.encode())

    async def _publish(self, subject: str, payload: bytes) -> None:
        try:
            await self._js.publish(subject, payload, timeout=self._timeout)
        except nats.errors.Error as exc:
            self.publish_failures += 1
            log.warning("publish to %s failed (%d so far): %r", subject, self.publish_failures, exc)
        else:
            self.published += 1


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
