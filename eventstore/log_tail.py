"""Follows the application's notification log, the one place new events are picked up.

A :class:`LogTail` polls ``app.recorder.select_notifications`` through the
:class:`~eventstore.executor.StoreExecutor` (never blocking the event loop),
every ``poll_interval`` seconds or at once after :meth:`LogTail.nudge` (the API
nudges after a confirmation, so the dispatcher acts without waiting for the
next poll). Each batch, in log order, goes to:

- its *followers* (the command dispatcher, the expiry sweeper): objects with a
  persisted position. The tail starts after the lowest of their positions and
  each follower ignores what it has already handled (:class:`Progress`, kept
  with its stored position by :class:`TrackedProgress`).
  A follower's callback is awaited before the next batch: it must hand long
  work to its own tasks.
- its *subscribers*: one asyncio queue per subscription, keyed by originator id
  (``commandStatus`` subscribes to one command). Subscribers see only what the
  tail reads while they are subscribed; they read the history themselves first
  and drop duplicates by version. A queue holds one aggregate's events (a
  command has about ten), so it is unbounded.

Positions are stored with the eventsourcing library's tracking recorder
(:class:`TrackedPosition`): one row per follower name in the application's
``<app>_tracking`` table, next to the events, in the same database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import get_topic

from eventstore.executor import StoreExecutor
from support.cancellation import raise_if_cancelling

log = logging.getLogger(__name__)

# Transient store failures (connection lost, pool exhausted): retried after a pause.
TRANSIENT_STORE_ERRORS = (OperationalError, InterfaceError)


def originator_uuid(notification: Notification) -> UUID:
    """The originator id as a UUID (the PostgreSQL recorder's type; text ids are parsed)."""
    originator_id = notification.originator_id
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


def event_topic(aggregate: type, event_name: str) -> str:
    """The stored topic of an aggregate's nested event class, e.g. ``ControlCommand.Confirmed``."""
    return f"{get_topic(aggregate)}.{event_name}"


class Follower(Protocol):
    async def load_position(self) -> int:
        """The last notification id this follower has fully handled (0 for none)."""
        ...

    async def on_notifications(self, notifications: Sequence[Notification]) -> None:
        """Called with each batch, in order; must return quickly."""
        ...


class PositionStore(Protocol):
    async def load(self) -> int: ...

    async def save(self, position: int) -> None: ...


class TrackedPosition:
    """A follower's position as a tracking record (name, notification id) of the library.

    ``initial`` is the position assumed when none was ever stored: 0 reads the
    whole log on first start; tests start at the log's current end.
    """

    def __init__(
        self,
        recorder: TrackingRecorder,
        store_executor: StoreExecutor,
        name: str,
        *,
        initial: int = 0,
    ) -> None:
        self._recorder = recorder
        self._store_executor = store_executor
        self._name = name
        self._initial = initial
        self._saved: int | None = None

    async def load(self) -> int:
        stored = await self._store_executor.call(self._recorder.max_tracking_id, self._name)
        self._saved = stored
        return self._initial if stored is None else max(stored, self._initial)

    async def save(self, position: int) -> None:
        # The single-row tracking table refuses a position that does not move forward.
        if self._saved is not None and position <= self._saved:
            return
        await self._store_executor.call(
            self._recorder.insert_tracking, Tracking(self._name, position)
        )
        self._saved = position


class Progress:
    """Which notifications a follower has fully handled, while several are in flight.

    ``hold`` marks a notification whose work is still running, ``release``
    marks it done. :attr:`safe` is the highest id such that everything up to it
    is done: the position to persist, so that a restart redoes only unfinished
    work and never skips any.
    """

    def __init__(self, position: int) -> None:
        self._seen = position
        self._held: set[int] = set()

    def is_new(self, notification_id: int) -> bool:
        return notification_id > self._seen

    def seen(self, notification_id: int) -> None:
        self._seen = max(self._seen, notification_id)

    def hold(self, notification_id: int) -> None:
        self._held.add(notification_id)

    def release(self, notification_id: int) -> None:
        self._held.discard(notification_id)

    @property
    def safe(self) -> int:
        return min(self._held) - 1 if self._held else self._seen


class TrackedProgress:
    """A follower's :class:`Progress`, loaded from and saved to its :class:`PositionStore`.

    The bookkeeping every follower shares: its ``load_position`` is :meth:`load`
    (the tail awaits it before the first batch), its own loop awaits
    :meth:`wait_loaded` before it starts, and :meth:`save` persists the safe
    position. ``follower`` names it in the error raised when :attr:`progress` is
    used before :meth:`load`.
    """

    def __init__(self, position: PositionStore, follower: str) -> None:
        self._position = position
        self._follower = follower
        self._progress: Progress | None = None
        self._loaded = asyncio.Event()

    async def load(self) -> int:
        position = await self._position.load()
        self._progress = Progress(position)
        self._loaded.set()
        return position

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            raise RuntimeError(
                f"load_position() must be awaited before the {self._follower} follows"
            )
        return self._progress

    async def save(self) -> None:
        await self._position.save(self.progress.safe)


class LogTail:
    def __init__(
        self,
        app: Application[UUID],
        store_executor: StoreExecutor,
        *,
        followers: Sequence[Follower] = (),
        poll_interval: float = 1.0,
        batch_size: int = 200,
        retry_delay: float = 1.0,
    ) -> None:
        self._app = app
        self._store_executor = store_executor
        self._followers = list(followers)
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._wake = asyncio.Event()
        self._subscribers: dict[UUID, set[asyncio.Queue[Notification]]] = defaultdict(set)
        self._position: int | None = None
        self._caught_up = asyncio.Event()

    @property
    def position(self) -> int | None:
        """The last notification id read, ``None`` before the first read."""
        return self._position

    def nudge(self) -> None:
        """Read the log now instead of at the next poll."""
        self._wake.set()

    async def wait_caught_up(self) -> None:
        """Return once the tail has read to the end of the log at least once."""
        await self._caught_up.wait()

    @asynccontextmanager
    async def subscribe(self, originator_id: UUID) -> AsyncIterator[asyncio.Queue[Notification]]:
        """A queue of the notifications of one aggregate read from now on."""
        queue: asyncio.Queue[Notification] = asyncio.Queue()
        self._subscribers[originator_id].add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers[originator_id]
            queues.discard(queue)
            if not queues:
                del self._subscribers[originator_id]

    async def run(self) -> None:
        """Follow the log until cancelled."""
        position = await self._start_position()
        self._position = position
        while True:
            raise_if_cancelling()
            try:
                batch = await self._store_executor.call(
                    self._app.recorder.select_notifications,
                    position,
                    self._batch_size,
                    inclusive_of_start=False,
                )
            except TRANSIENT_STORE_ERRORS as exc:
                log.warning("event store unavailable, retrying: %s", exc)
                await asyncio.sleep(self._retry_delay)
                continue
            if batch:
                await self._deliver(batch)
                position = batch[-1].id
                self._position = position
            if len(batch) < self._batch_size:
                self._caught_up.set()
                await self._idle()

    async def _start_position(self) -> int:
        if self._followers:
            positions = [await follower.load_position() for follower in self._followers]
            return min(positions)
        current = await self._store_executor.call(self._app.recorder.max_notification_id)
        return current or 0

    async def _deliver(self, batch: Sequence[Notification]) -> None:
        for follower in self._followers:
            await follower.on_notifications(batch)
        for notification in batch:
            for queue in self._subscribers.get(originator_uuid(notification), ()):
                queue.put_nowait(notification)

    async def _idle(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
        self._wake.clear()
