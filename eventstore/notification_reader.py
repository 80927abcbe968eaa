"""Reads the event store's notification log in order: the one loop that picks up new events.

A :class:`NotificationReader` yields the log's notifications after a position,
one batch at a time, for as long as it is iterated. It reads the next batch
only when asked for it, so a caller that is slow with a batch (the event relay
awaiting JetStream) holds the reading, and memory stays bounded by one batch.
When a batch comes back short (the end of the log) it waits ``poll_interval``
seconds, or less if :meth:`NotificationReader.nudge` is called, before reading
again. Transient store failures are reported to ``on_store_failure`` and
retried after ``retry_delay``; a read that succeeds calls ``on_store_recovered``.

The log tail (:mod:`eventstore.log_tail`) and the event relay
(:mod:`eventstore.event_relay`) both read through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import suppress
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from support.cancellation import raise_if_cancelling


def _nothing() -> None:
    return None


class NotificationReader:
    def __init__(
        self,
        app: Application[UUID],
        store_executor: StoreExecutor,
        *,
        on_store_failure: Callable[[Exception], None],
        on_store_recovered: Callable[[], None] = _nothing,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        retry_delay: float = 1.0,
    ) -> None:
        self._app = app
        self._store_executor = store_executor
        self._on_store_failure = on_store_failure
        self._on_store_recovered = on_store_recovered
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry_delay = retry_delay
        self._wake = asyncio.Event()
        self._caught_up = asyncio.Event()

    def nudge(self) -> None:
        """Read the log now instead of at the next poll."""
        self._wake.set()

    async def wait_caught_up(self) -> None:
        """Return once a read has reached the end of the log."""
        await self._caught_up.wait()

    async def batches(self, after: int) -> AsyncGenerator[Sequence[Notification], None]:
        """Every non-empty batch of notifications after position ``after``, in log order."""
        position = after
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
                self._on_store_failure(exc)
                await asyncio.sleep(self._retry_delay)
                continue
            self._on_store_recovered()
            if batch:
                yield batch
                position = batch[-1].id
            if len(batch) < self._batch_size:
                self._caught_up.set()
                await self._idle()

    async def _idle(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
        self._wake.clear()
