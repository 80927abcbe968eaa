"""Wakes the readers of the event log the moment any process commits events to it.

The eventsourcing library's PostgreSQL recorder sends ``NOTIFY <channel>`` in
every transaction that inserts events (its ``channel_name``, the events
table's name), and PostgreSQL delivers it when that transaction commits. A
:class:`CommitListener` keeps one connection that ``LISTEN``\\ s on the channel
and calls its ``wake`` callbacks (the log tail's and the event relay's
``nudge``) at each notification. So a command confirmed by the API, a write
recorded by the dispatcher, or an event saved by another process on the same
database is read at once instead of at the readers' next poll: their poll
was what a confirmed command's ``WriteSucceeded`` waited for on its way to
``commandStatus`` (ADR 0042).

The readers keep polling: a notification that never comes (the listener's
connection lost, the database restarted) only delays a read to the next poll,
and nothing is lost. After every (re)connection the listener wakes them once,
for whatever was committed while it was not listening. A connection closed by
the server is noticed at once; one that went away silently, by a query every
``check_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from uuid import UUID

import asyncpg
from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder

from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

# How the listener's connection shows in pg_stat_activity.
APPLICATION_NAME = "plantcore commit listener"
CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def commit_channel(app: Application[UUID]) -> str:
    """The channel the application's recorder notifies at each commit of events."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        raise TypeError(f"not a PostgreSQL event store: {type(recorder).__name__}")
    return recorder.channel_name


class CommitListener:
    def __init__(
        self,
        database_url: str,
        channel: str,
        wake: Sequence[Callable[[], None]],
        *,
        retry_delay: float = 1.0,
        check_interval: float = 5.0,
    ) -> None:
        self._database_url = database_url
        self._channel = channel
        self._wake = list(wake)
        self._retry_delay = retry_delay
        self._check_interval = check_interval
        self._outage = RepeatedLog(log, "commit listener:")

    async def run(self) -> None:
        """Listen until cancelled, connecting again after every loss."""
        while True:
            try:
                await self._listen()
            except CONNECTION_ERRORS as exc:
                self._outage.happened(
                    self._channel, f"not listening, the readers poll meanwhile: {exc!r}"
                )
            await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        connection = await asyncpg.connect(
            self._database_url,
            timeout=self._check_interval,
            server_settings={"application_name": APPLICATION_NAME},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(self._channel, self._notified)
            self._outage.ended(self._channel)
            self._wake_all()  # what was committed before the LISTEN took effect
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._check_interval)
                if not lost.is_set():
                    async with asyncio.timeout(self._check_interval):
                        await connection.execute("SELECT 1")
            raise ConnectionError("the connection was closed")
        finally:
            connection.terminate()

    def _notified(self, *_: object) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for wake in self._wake:
            wake()
