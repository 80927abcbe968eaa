"""A commit to the event log, by this process or another, wakes the log's readers at once.

The log tail here polls once an hour: only the :class:`CommitListener` can
make it read what another application (another process's connections) saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import psycopg
import pytest

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.plant_configuration import PlantConfiguration
from eventstore.commit_listener import APPLICATION_NAME, CommitListener, commit_channel
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.postgres import event_store_env
from support.clock import utc_now
from tests.support import eventually

NEVER = 3600.0  # the tail's poll: longer than any test
DEADLINE = 10.0  # seconds before a wake that never comes fails the test


@dataclass
class TwoProcesses:
    """A reader with a tail that never polls, and a writer with connections of its own."""

    database_url: str
    store_executor: StoreExecutor
    reader: PlantApplication
    writer: PlantApplication
    tail: LogTail
    changes: itertools.count[int]

    async def save_elsewhere(self) -> None:
        """A new event, saved through the writer's connections as another process would."""
        await self.store_executor.call(
            partial(
                self.writer.record_plant_configuration,
                plant_id="plant",
                devices={"press": str(next(self.changes))},
                source="test",
                problems=[],
                actor="test",
                at=utc_now(),
            )
        )

    async def read_by_the_tail(self) -> None:
        """Save one event elsewhere and wait for the tail to read it."""
        async with self.tail.watch(PlantConfiguration) as changed:
            await self.save_elsewhere()
            async with asyncio.timeout(DEADLINE):
                await changed.wait()


@pytest.fixture
async def processes(own_database: str) -> AsyncIterator[TwoProcesses]:
    store_executor = StoreExecutor()
    env = event_store_env(own_database)
    reader = await store_executor.call(partial(PlantApplication, TagCatalog([]), env=env))
    writer = await store_executor.call(partial(PlantApplication, TagCatalog([]), env=env))
    tail = LogTail(reader, store_executor, poll_interval=NEVER)
    running = asyncio.create_task(tail.run())
    try:
        await tail.wait_caught_up()
        yield TwoProcesses(own_database, store_executor, reader, writer, tail, itertools.count())
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        for app in (reader, writer):
            await store_executor.call(app.close)
        store_executor.shutdown()


@contextlib.asynccontextmanager
async def listening(processes: TwoProcesses) -> AsyncIterator[CommitListener]:
    listener = CommitListener(
        processes.database_url, commit_channel(processes.reader), [processes.tail.nudge]
    )
    running = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def listener_backends(database_url: str) -> set[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    return {pid for (pid,) in rows}


async def test_a_commit_by_another_process_wakes_the_tail(processes: TwoProcesses) -> None:
    async with listening(processes):
        for _ in range(3):  # each commit, not only the first
            await processes.read_by_the_tail()


async def test_a_listener_whose_connection_is_killed_listens_again(
    processes: TwoProcesses,
) -> None:
    url = processes.database_url
    async with listening(processes):
        await processes.read_by_the_tail()

        async def listening_backend() -> int:
            backends = await asyncio.to_thread(listener_backends, url)
            assert len(backends) == 1, backends
            return backends.pop()

        killed = await eventually(listening_backend)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (killed,))

        async def another_backend() -> None:
            assert await listening_backend() != killed

        await eventually(another_backend)
        for _ in range(2):
            await processes.read_by_the_tail()
