"""Reacts to Confirmed, Approved; calls record_dispatch, record_write_succeeded / _failed.

The command dispatcher: turns each released command into one write on its device.

It follows the event log (a :class:`~eventstore.log_tail.LogTail` follower).
A command is released by the event that lets its write go: the requester's
``ControlCommand.Confirmed`` (an emergency action's included), or, for a
critical tag, the second person's ``Approved``. A critical tag's own
``Confirmed`` (meaning ``request``) releases nothing and is skipped: the
command then awaits its approval, and its ``Approved`` comes later. So each
command has exactly one releasing notification, and two handlings of one
command never race (one reading back while the other's write is in flight).

For every releasing notification it loads the command and acts on its
*current* status, so handling a notification twice is harmless:

- ``confirmed`` (released): record ``WriteDispatched`` through
  ``record_dispatch``, which decides on the command as stored at that moment:
  a command cancelled, rejected or dispatched by another dispatcher since it
  was loaded, one released longer than the dispatch window ago (recorded
  ``Expired``), or one that the plant mode or its signers' permissions no
  longer allow (recorded ``Rejected``) is refused there, and nothing is sent.
  Only once ``WriteDispatched`` is stored does ``WriteRequest(op="write")`` go
  by NATS request to ``plant.write.<device>``. A reply is recorded as
  ``WriteSucceeded(read_back)`` or ``WriteFailed``; no responders as
  ``WriteFailed("device supervisor not reachable")``. A reply
  ``outcome_unknown`` (the connection dropped mid-write, or the device's answer
  came late or did not say whether it wrote) is settled by reading back, as
  below. The request carries a deadline: the moment this dispatcher
  stops waiting, less the clock skew allowed between hosts. A supervisor
  refuses it from then on, so a write held up on the way (a NATS outage, a
  backed-up device queue) is never executed after the dispatcher gave up.
- ``dispatched`` (the write went out, its outcome is unknown: a timeout, or a
  crash of this process): never re-send. Settle it by
  ``WriteRequest(op="read")``: the requested value read back is a success,
  anything else a ``WriteFailed`` saying what was seen.
- anything else (cancelled, declined, rejected or expired in between, still
  awaiting its approval, already settled): nothing to do.

Only commands for devices of the application's catalogue are touched: several
plants (or test suites) may share one event store, each with its dispatcher.

Where it resumes: its position is a tracking record of the eventsourcing
library (:class:`~eventstore.tracking.TrackedPosition`, named
``command-dispatcher`` by the runtime, in the application's ``<app>_tracking``
table). The position only moves past a notification once its command is
settled, so on start-up the tail replays every release whose write was
unfinished, and a command left ``dispatched`` by a crash is settled by a read
as above.

Commands run concurrently (one slow device does not hold up the others), at
most ``max_in_flight`` at a time; a command whose outcome cannot be recorded
because the store is unavailable is retried, since its handling is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import Notification
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from domain.application import PlantApplication
from domain.command import CommandStatus, ControlCommand, SignatureMeaning
from domain.errors import DomainError
from domain.messages import (
    DEFAULT_WRITE_CLOCK_SKEW,
    WRITE_SUBJECT,
    MalformedMessage,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)
from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from eventstore.notifications import event_topic, originator_uuid
from eventstore.tracking import PositionStore, TrackedFollower
from support.clock import utc_now

log = logging.getLogger(__name__)

CONFIRMED_TOPIC = event_topic(ControlCommand, "Confirmed")
APPROVED_TOPIC = event_topic(ControlCommand, "Approved")
NOT_REACHABLE = "device supervisor not reachable"

WriteValue = float | int | bool


class CommandDispatcher(TrackedFollower):
    def __init__(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        nats: NatsClient,
        position: PositionStore,
        *,
        write_timeout: float = 5.0,
        read_timeout: float = 5.0,
        clock_skew: timedelta = DEFAULT_WRITE_CLOCK_SKEW,
        retry_delay: float = 1.0,
        max_in_flight: int = 32,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if timedelta(seconds=write_timeout) <= clock_skew:
            # The deadline is the wait less the skew: no write could ever pass.
            raise ValueError(
                f"write_timeout {write_timeout} s must exceed the allowed clock skew"
                f" of {clock_skew.total_seconds()} s"
            )
        super().__init__(position, "dispatcher")
        self._app = app
        self._store_executor = store_executor
        self._nats = nats
        self._position = position  # also read by a test of the tracked position
        self._write_timeout = write_timeout
        self._clock_skew = clock_skew
        self._read_timeout = read_timeout
        self._retry_delay = retry_delay
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)
        # Every device this plant has had since start: a command released for a
        # device that a reload then removed still gets its outcome (unreachable).
        self._devices = set(app.catalog.devices())
        self._queue: asyncio.Queue[tuple[int, UUID]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- following the log -------------------------------------------------------------------

    def follow(self, notification: Notification) -> None:
        if self._releases(notification):
            # Held until settled; the queue is unbounded so the tail never waits on
            # a device, and each entry is two small values.
            self._tracked.progress.hold(notification.id)
            self._queue.put_nowait((notification.id, originator_uuid(notification)))

    def _releases(self, notification: Notification) -> bool:
        """Whether this event lets the command's write go (see the module's docstring)."""
        if notification.topic == APPROVED_TOPIC:
            return True
        if notification.topic != CONFIRMED_TOPIC:
            return False
        event = self._app.mapper.to_domain_event(notification)
        # A critical tag's requester signed a request: the write waits for the approval.
        return getattr(event, "meaning", None) != SignatureMeaning.REQUEST.value

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch queued commands and persist the position, until cancelled.

        Waits for the log tail to load this follower's position first.
        """
        await self._wait_loaded()
        saver = asyncio.create_task(self._save_positions())
        try:
            while True:
                notification_id, command_id = await self._queue.get()
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(notification_id, command_id))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        finally:
            saver.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(saver, *self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A bug, not a device or store failure: the notification stays held, so the
            # position does not pass it and a restart handles the command again.
            log.error("dispatching failed unexpectedly", exc_info=exc)

    async def _save_positions(self) -> None:
        while True:
            await self._news.wait()
            self._news.clear()
            try:
                await self._tracked.save()
            except TRANSIENT_STORE_ERRORS as exc:
                log.warning("could not save the dispatcher position: %s", exc)
                await asyncio.sleep(self._retry_delay)
                self._news.set()

    async def _handle(self, notification_id: int, command_id: UUID) -> None:
        progress = self._tracked.progress
        try:
            while True:
                try:
                    await self.settle(command_id)
                    break
                except TRANSIENT_STORE_ERRORS as exc:
                    log.warning(
                        "command %s: event store unavailable, retrying: %s", command_id, exc
                    )
                    await asyncio.sleep(self._retry_delay)
            progress.release(notification_id)
            self._news.set()
        finally:
            self._slots.release()

    async def settle(self, command_id: UUID) -> None:
        """Bring one released command to its outcome, according to its current status."""
        command = await self._store_executor.call(self._app.get_command, command_id)
        self._devices.update(self._app.catalog.devices())
        if command.device not in self._devices:
            # Not a device of this plant's catalogue: another plant's dispatcher owns it
            # (several plants, or test suites, may share one event store).
            return
        if command.status is CommandStatus.CONFIRMED:
            try:
                dispatched = await self._store_executor.call(
                    self._app.record_dispatch, command_id, self._clock()
                )
            except DomainError as exc:
                # Cancelled, rejected or dispatched by another instance since it was loaded,
                # or too old to go out: the domain recorded why, and nothing is written.
                log.info("command %s not dispatched: %s", command_id, exc)
                return
            await self._write(dispatched)
        elif command.status is CommandStatus.DISPATCHED:
            log.warning("command %s: outcome of its write unknown, reading back", command_id)
            await self._read_back(command, why="outcome of the write unknown")

    async def _write(self, command: ControlCommand) -> None:
        value = _write_value(command.value)
        request = WriteRequest(
            tag=command.tag,
            command_id=str(command.id),
            op="write",
            value=value,
            expires_in_ms=math.ceil(self._write_timeout * 1000),
            # This dispatcher stops waiting at now + write_timeout: less the skew its
            # supervisor's clock may have, no supervisor starts the write after that.
            deadline=self._clock() + timedelta(seconds=self._write_timeout) - self._clock_skew,
        )
        try:
            reply = await self._request(command.device, request, self._write_timeout)
        except NoRespondersError:
            await self._failed(command.id, NOT_REACHABLE)
            return
        except NatsTimeout:
            # The write may or may not have happened: settle by reading, never write again.
            await self._read_back(command, why="no reply to the write")
            return
        except MalformedMessage as exc:
            await self._failed(command.id, f"malformed reply from the supervisor: {exc}")
            return
        if reply.ok:
            await self._succeeded(command.id, reply.read_back)
        elif reply.kind is WriteErrorKind.OUTCOME_UNKNOWN:
            await self._read_back(command, why=f"outcome of the write unknown ({reply.error})")
        else:
            await self._failed(command.id, _reply_error(reply))

    async def _read_back(self, command: ControlCommand, *, why: str) -> None:
        request = WriteRequest(tag=command.tag, command_id=str(command.id), op="read")
        try:
            reply = await self._request(command.device, request, self._read_timeout)
        except NoRespondersError:
            await self._failed(command.id, f"{why}; read-back impossible: {NOT_REACHABLE}")
            return
        except NatsTimeout:
            await self._failed(command.id, f"{why}; no reply to the read-back either")
            return
        except MalformedMessage as exc:
            await self._failed(command.id, f"{why}; malformed read-back reply: {exc}")
            return
        if not reply.ok:
            await self._failed(command.id, f"{why}; read-back failed: {_reply_error(reply)}")
        elif _same_value(reply.read_back, command.value):
            await self._succeeded(command.id, reply.read_back)
        else:
            await self._failed(
                command.id,
                f"{why}; read back {reply.read_back!r} instead of {command.value!r}",
            )

    async def _request(self, device: str, request: WriteRequest, wait: float) -> WriteReply:
        subject = WRITE_SUBJECT.format(device=device)
        message = await self._nats.request(subject, request.encode(), timeout=wait)
        return WriteReply.decode(message.data)

    async def _succeeded(self, command_id: UUID, read_back: WriteValue | None) -> None:
        await self._store_executor.call(
            self._app.record_write_succeeded, command_id, read_back, self._clock()
        )

    async def _failed(self, command_id: UUID, reason: str) -> None:
        log.warning("command %s: write failed: %s", command_id, reason)
        await self._store_executor.call(
            self._app.record_write_failed, command_id, reason, self._clock()
        )


def _write_value(value: object) -> WriteValue:
    # A confirmed command holds the catalogue-checked value; a string is a domain bug.
    if isinstance(value, bool | int | float):
        return value
    raise TypeError(f"a confirmed command holds a non-numeric value: {value!r}")


def _same_value(read_back: object, requested: object) -> bool:
    """Whether a read-back shows the requested value (float32 registers round slightly)."""
    if isinstance(requested, bool) or isinstance(read_back, bool):
        return isinstance(read_back, bool | int) and bool(read_back) == bool(requested)
    if isinstance(read_back, int | float) and isinstance(requested, int | float):
        return math.isclose(read_back, requested, rel_tol=1e-6, abs_tol=1e-9)
    return False


def _reply_error(reply: WriteReply) -> str:
    kind = reply.kind.value if reply.kind else "error"
    return f"{kind}: {reply.error}" if reply.error else kind
