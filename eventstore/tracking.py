"""Where a follower of the log stands: its stored position, and its work still in flight.

A follower's position is a tracking record of the eventsourcing library
(:class:`TrackedPosition`): one row per follower name in the application's
``<app>_tracking`` table, next to the events, in the same database. While
several notifications are being worked on at once, :class:`Progress` says how
far everything is done, and so which position is safe to store.

:class:`TrackedFollower` is the skeleton every follower of the log tail with a
stored position shares (the command dispatcher, the expiry sweeper): it loads
the position before the first batch, hands each notification it has not
handled yet to :meth:`TrackedFollower.follow`, and wakes its own loop after
each batch.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from eventsourcing.persistence import Notification, Tracking, TrackingRecorder

from eventstore.executor import StoreExecutor


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


class TrackedFollower(ABC):
    """A follower of the log tail whose position is stored (see the module's docstring).

    Subclasses implement :meth:`follow` for each new notification, in log order,
    and run their own loop, which waits for :attr:`_news` (set after each batch)
    and starts once :meth:`_wait_loaded` returns.
    """

    def __init__(self, position: PositionStore, name: str) -> None:
        self._tracked = TrackedProgress(position, name)
        self._news = asyncio.Event()

    async def load_position(self) -> int:
        return await self._tracked.load()

    async def on_notifications(self, notifications: Sequence[Notification]) -> None:
        progress = self._tracked.progress
        for notification in notifications:
            if progress.is_new(notification.id):
                progress.seen(notification.id)
                self.follow(notification)
        self._news.set()

    @abstractmethod
    def follow(self, notification: Notification) -> None:
        """Take one new notification in; must return at once (hold it if work remains)."""

    async def _wait_loaded(self) -> None:
        await self._tracked.wait_loaded()
