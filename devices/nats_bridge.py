"""The only module of the device layer that knows NATS.

- :class:`NatsTelemetrySink` takes a supervisor's batches
  (``plant.telemetry.<device>``), statuses (``plant.status.<device>``) and
  alarm transitions (``plant.alarms.<device>``) and appends each to the
  process's :class:`~devices.outbox.Outbox` on disk, with the
  ``Nats-Msg-Id`` it will always be published with: an alarm transition's
  ``transition_id``, a fresh id for the others. It never waits for NATS, and
  never raises.
- :class:`OutboxForwarder` publishes the outbox's entries to JetStream in
  their order and removes each once JetStream has stored it. Entries of
  different devices are published together (up to ``window`` at once, 256
  by default), but never two of one device: a device's next entry goes only
  once its last one is stored, so its order holds in the stream whatever
  fails. While NATS is unreachable or JetStream does not answer, it waits
  (bounded backoff), logs the outage once, and resumes by itself; live
  messages queue behind the backlog. A message JetStream refuses for good
  (too large, a bad subject) is counted and logged, and the forwarder moves
  past it.
- :func:`serve_writes` answers ``plant.write.<device>`` requests with the
  supervisor's :class:`~domain.messages.WriteReply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import PubAck

from devices.backoff import Backoff
from devices.outbox import UNDELIVERABLE, Entry, EntryKind, Outbox
from domain.messages import (
    ALARM_SUBJECT,
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    WRITE_SUBJECT,
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    MalformedMessage,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

# Publishes the forwarder has in flight at most, each of another device. A window waits
# for its slowest ack and costs several turns of the event loop, so on a loop kept busy by
# a large fleet the forwarder's rate is about the window over those turns: with 64, a
# fleet of 1,000 devices at 1 Hz outran it (ADR 0045).
DEFAULT_WINDOW = 256
# Entries the forwarder reads from the outbox at once, and holds read ahead at most, in
# windows: enough to find a window's worth of devices in a backlog.
READ_AHEAD = 4
MAX_AHEAD = 16
MSG_ID_HEADER = "Nats-Msg-Id"
# Whatever a publish can fail with and be tried again: not connected, no reply, no stream.
NATS_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, TimeoutError)
# What JetStream or the client refuses for the message itself: sent again, it fails again.
REFUSED: tuple[type[Exception], ...] = (
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.js.errors.BadRequestError,
)


class NatsTelemetrySink:
    """A supervisor's output, appended to the outbox in order; ``wake`` tells the forwarder."""

    def __init__(self, outbox: Outbox, wake: Callable[[], None] = lambda: None) -> None:
        self._outbox = outbox
        self._wake = wake
        # The state each device last reported: a status repeating it is a heartbeat.
        self._states: dict[str, ConnectionState] = {}

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        subject = TELEMETRY_SUBJECT.format(device=batch.device)
        self._append(EntryKind.TELEMETRY, batch.device, subject, _new_id(), batch.encode())

    async def publish_status(self, status: DeviceStatus) -> None:
        changed = self._states.get(status.device) is not status.state
        self._states[status.device] = status.state
        # A heartbeat may go as telemetry does when the outbox is full; a change never.
        kind = EntryKind.STATUS if changed else EntryKind.TELEMETRY
        subject = STATUS_SUBJECT.format(device=status.device)
        self._append(kind, status.device, subject, _new_id(), status.encode())

    async def publish_alarm(self, transition: AlarmTransition) -> None:
        subject = ALARM_SUBJECT.format(device=transition.device)
        self._append(
            EntryKind.ALARM, transition.device, subject, transition.transition_id,
            transition.encode(),
        )  # fmt: skip

    def _append(
        self, kind: EntryKind, device: str, subject: str, msg_id: str, payload: bytes
    ) -> None:
        if self._outbox.append(kind, device, subject, msg_id, payload):
            self._wake()


def _new_id() -> str:
    return uuid.uuid4().hex


class OutboxForwarder:
    """Publishes the outbox's entries to JetStream, in order per device (module doc)."""

    def __init__(
        self,
        outbox: Outbox,
        nc: NatsClient,
        *,
        timeout_seconds: float = 2.0,
        window: int = DEFAULT_WINDOW,
        backoff: Backoff | None = None,
    ) -> None:
        self._outbox = outbox
        self._nc = nc
        self._js = nc.jetstream()
        self._timeout = timeout_seconds
        self._window = window
        self._backoff = backoff or Backoff(0.1, 5.0)
        self._appended = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing waits to be forwarded
        # Entries read ahead of the windows, in lanes by device, each in order: the outbox
        # is read once per batch of them, not once per window. Read again from the start
        # once the outbox drops any (``_drops_seen``): a lane may hold what is gone.
        self._lanes: dict[str, deque[Entry]] = {}
        self._ahead = 0
        self._read_up_to = 0
        self._drops_seen = outbox.dropped
        self._outage = RepeatedLog(log, "NATS unavailable, buffering in")
        self._refused = RepeatedLog(log, "JetStream refuses messages on", level=logging.ERROR)
        #: Publishes JetStream acknowledged as duplicates (stored before, within its window).
        self.duplicates = 0
        #: Windows that failed for want of NATS, each retried.
        self.retries = 0

    def wake(self) -> None:
        """Something was appended: forward it."""
        self._idle.clear()
        self._appended.set()

    async def drained(self) -> None:
        """Return once the running forwarder has sent (or given up) everything appended."""
        await self._idle.wait()

    def sink(self) -> NatsTelemetrySink:
        """A sink into this forwarder's outbox that wakes it on each append."""
        return NatsTelemetrySink(self._outbox, self.wake)

    async def run(self) -> None:
        """Forward until cancelled: what is there at start first, then each entry as it comes."""
        while True:
            self._appended.clear()
            window = self._next_window()
            if not window:
                self._idle.set()
                await self._appended.wait()
            elif await self._send(window):
                self._backoff.reset()
            else:
                self.retries += 1
                await asyncio.sleep(self._backoff.next_delay())

    async def flush(self, within_seconds: float) -> bool:
        """Forward what waits, for at most ``within_seconds``; whether all of it went.

        Stops at the first failure: on the way out, what NATS does not take now
        stays for the next start.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_seconds):
                while window := self._next_window():
                    if not await self._send(window):
                        break
        if len(self._outbox):
            log.info("buffer %s: %d entries kept for later", self._outbox.path, len(self._outbox))
            return False
        return True

    def _next_window(self) -> list[Entry]:
        """The oldest entry of each device read ahead, up to ``window`` of them."""
        if self._outbox.dropped != self._drops_seen:
            self._drops_seen = self._outbox.dropped
            self._lanes, self._ahead, self._read_up_to = {}, 0, 0
        if len(self._lanes) < self._window and self._ahead < MAX_AHEAD * self._window:
            for entry in self._outbox.read(READ_AHEAD * self._window, after=self._read_up_to):
                self._lanes.setdefault(entry.device, deque()).append(entry)
                self._ahead += 1
                self._read_up_to = entry.seq
        return [lane[0] for lane in itertools.islice(self._lanes.values(), self._window)]

    def _settled(self, entry: Entry) -> None:
        """``entry``, the head of its lane, is stored or given up: the next one's turn."""
        lane = self._lanes[entry.device]
        lane.popleft()
        self._ahead -= 1
        if not lane:
            del self._lanes[entry.device]

    async def _send(self, window: list[Entry]) -> bool:
        """Publish ``window`` at once; remove what JetStream stored. Whether NATS answered."""
        if not self._nc.is_connected:
            # Published now, they would wait in the client's own buffer: keep them in ours.
            return self._failed(ConnectionError("not connected"))
        # Each a request of its own: nats-py's publish_async loses JetStream's refusals
        # (its reply handler raises them instead of failing the future), a request does not.
        outcomes = await asyncio.gather(
            *(self._publish(entry) for entry in window), return_exceptions=True
        )
        stored: list[int] = []
        failure: BaseException | None = None
        for entry, outcome in zip(window, outcomes, strict=True):
            if isinstance(outcome, PubAck):
                stored.append(entry.seq)
                self._settled(entry)
                self._refused.ended(entry.subject)
                self.duplicates += bool(outcome.duplicate)
            elif isinstance(outcome, REFUSED):
                self._settled(entry)
                self._give_up(entry, outcome)
            elif isinstance(outcome, NATS_ERRORS):
                failure = failure or outcome
            else:
                raise outcome  # not a failure of NATS: a bug
        self._outbox.remove(stored)
        if failure is not None:
            return self._failed(failure)
        self._outage.ended(str(self._outbox.path))
        return True

    def _failed(self, failure: BaseException) -> bool:
        waiting = len(self._outbox)
        self._outage.happened(
            str(self._outbox.path), f"{_said(failure)}; {waiting} entries waiting"
        )
        return False

    async def _publish(self, entry: Entry) -> PubAck:
        return await self._js.publish(
            entry.subject, entry.payload, timeout=self._timeout,
            headers={MSG_ID_HEADER: entry.msg_id},
        )  # fmt: skip

    def _give_up(self, entry: Entry, error: BaseException) -> None:
        self._outbox.give_up(entry, UNDELIVERABLE)
        self._refused.happened(
            entry.subject,
            f"{_said(error)}; {entry.kind.value} {entry.msg_id} dropped from the buffer",
        )


def _said(error: BaseException) -> str:
    """What an error says: nats-py's often say nothing in their ``repr``."""
    return f"{type(error).__name__}: {error}" if str(error) else repr(error)


@contextlib.asynccontextmanager
async def forwarding(forwarder: OutboxForwarder) -> AsyncIterator[NatsTelemetrySink]:
    """``forwarder`` running, and a sink into its outbox, until the block ends."""
    task = asyncio.create_task(forwarder.run(), name="buffer forwarder")
    try:
        yield forwarder.sink()
    finally:
        task.cancel()
        await asyncio.wait({task})


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
