"""Follows the application's notification log and hands each batch to what reacts to it.

A :class:`LogTail` reads the log through a
:class:`~eventstore.notification_reader.NotificationReader` (through the
:class:`~eventstore.executor.StoreExecutor`, never blocking the event loop),
every ``poll_interval`` seconds or at once after :meth:`LogTail.nudge` (the API
nudges after a confirmation, so the dispatcher acts without waiting for the
next poll). Each batch, in log order, goes to:

- its *followers* (the command dispatcher, the expiry sweeper): objects with a
  persisted position. The tail starts after the lowest of their positions and
  each follower ignores what it has already handled
  (:class:`~eventstore.tracking.TrackedFollower`).
  A follower's callback is awaited before the next batch: it must hand long
  work to its own tasks.
- its *subscribers*: one asyncio queue per subscription, keyed by originator id
  (``commandStatus`` subscribes to one command). Subscribers see only what the
  tail reads while they are subscribed; they read the history themselves first
  and drop duplicates by version. A queue holds one aggregate's events (a
  command has about ten), so it is unbounded.
- its *watchers*: a flag per watch of one kind of aggregate, set when the
  tail reads any of its events (``pendingApprovals`` watches the commands to
  read them again). However many events arrive, a watcher has one flag to
  clear: nothing queues up behind a slow one.

Positions are stored with the eventsourcing library's tracking recorder
(:class:`~eventstore.tracking.TrackedPosition`): one row per follower name in
the application's ``<app>_tracking`` table, next to the events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from eventstore.executor import StoreExecutor
from eventstore.notification_reader import NotificationReader
from eventstore.notifications import originator_uuid

log = logging.getLogger(__name__)


class Follower(Protocol):
    async def load_position(self) -> int:
        """The last notification id this follower has fully handled (0 for none)."""
        ...

    async def on_notifications(self, notifications: Sequence[Notification]) -> None:
        """Called with each batch, in order; must return quickly."""
        ...


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
        self._reader = NotificationReader(
            app,
            store_executor,
            on_store_failure=_log_store_failure,
            batch_size=batch_size,
            poll_interval=poll_interval,
            retry_delay=retry_delay,
        )
        self._subscribers: dict[UUID, set[asyncio.Queue[Notification]]] = defaultdict(set)
        self._watchers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._position: int | None = None

    @property
    def position(self) -> int | None:
        """The last notification id read, ``None`` before the first read."""
        return self._position

    def nudge(self) -> None:
        """Read the log now instead of at the next poll."""
        self._reader.nudge()

    async def wait_caught_up(self) -> None:
        """Return once the tail has read to the end of the log at least once."""
        await self._reader.wait_caught_up()

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

    @asynccontextmanager
    async def watch(self, aggregate: type) -> AsyncIterator[asyncio.Event]:
        """A flag set whenever an event of ``aggregate`` is read; the watcher clears it."""
        prefix = get_topic(aggregate) + "."
        changed = asyncio.Event()
        self._watchers[prefix].add(changed)
        try:
            yield changed
        finally:
            flags = self._watchers[prefix]
            flags.discard(changed)
            if not flags:
                del self._watchers[prefix]

    async def run(self) -> None:
        """Follow the log until cancelled."""
        position = await self._start_position()
        self._position = position
        async with aclosing(self._reader.batches(position)) as batches:
            async for batch in batches:
                await self._deliver(batch)
                self._position = batch[-1].id

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
            for prefix, flags in self._watchers.items():
                if notification.topic.startswith(prefix):
                    for changed in flags:
                        changed.set()


def _log_store_failure(exc: Exception) -> None:
    log.warning("event store unavailable, retrying: %s", exc)
