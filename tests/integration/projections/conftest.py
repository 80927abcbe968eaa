"""Fixtures of the projection tests: a pool, a history table of their own, running consumers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from projections.consumer import DurableConsumer
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX, DeadLetters
from projections.history_schema import (
    Partitions,
    ensure_history_schema,
    history_tables,
    hours_table,
    minutes_table,
)
from tests.support import eventually, unique

STREAM = "TELEMETRY"


class Consumers:
    """Runs consumers as tasks; at the end stops them and deletes their durables."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._tasks: dict[DurableConsumer[Any], asyncio.Task[None]] = {}
        self._durables: set[str] = set()

    async def start(self, consumer: DurableConsumer[Any]) -> None:
        """Create its durable, so that what the test publishes next is not missed, and run it."""
        self._durables.add(consumer.durable)
        await consumer.ensure()
        self._tasks[consumer] = asyncio.create_task(consumer.run())

    async def stop(self, consumer: DurableConsumer[Any]) -> None:
        await consumer.stop()
        await self._tasks.pop(consumer)  # re-raises what made run() fail

    async def close(self) -> None:
        for consumer in list(self._tasks):
            await self.stop(consumer)
        for durable in self._durables:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(STREAM, durable)


@pytest.fixture
async def consumers(js: JetStreamContext) -> AsyncIterator[Consumers]:
    running = Consumers(js)
    yield running
    await running.close()


@pytest.fixture
async def dead_letters(js: JetStreamContext) -> AsyncIterator[DeadLetters]:
    """The test's dead letters, counted; afterwards purged from the DEADLETTER stream."""
    letters = DeadLetters(js)
    yield letters
    for consumer in {consumer for consumer, _ in letters.counts()}:
        await js.purge_stream(DEADLETTER_STREAM, subject=f"{DEADLETTER_SUBJECT_PREFIX}.{consumer}")


async def wait_consumed(js: JetStreamContext, durable: str, stream_seq: int) -> None:
    """Wait until ``durable`` has acked (or terminated) everything up to ``stream_seq``."""

    async def probe() -> None:
        info = await js.consumer_info(STREAM, durable)
        assert info.ack_floor is not None
        assert (info.ack_floor.stream_seq or 0) >= stream_seq

    await eventually(probe)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield connections
    await connections.close()


@dataclass
class History:
    table: str
    partitions: Partitions


@pytest.fixture
async def history(pool: asyncpg.Pool) -> AsyncIterator[History]:
    """A history table of this test's own, dropped afterwards with its rollups, their
    bookkeeping and its partitions.

    The days they keep are forgotten too, and the notes of their partitions' drops.
    """
    table = unique("samples").replace("-", "_")
    partitions = await ensure_history_schema(pool, table=table)
    assert partitions is not None  # no TimescaleDB on these machines
    yield History(table, partitions)
    for name in history_tables(table):
        await pool.execute(f"DROP TABLE {name}")
    made = [table, minutes_table(table), hours_table(table)]
    await pool.execute(
        "DELETE FROM plantcore_history_retention"
        " WHERE table_schema = current_schema() AND table_name = ANY($1)",
        made,
    )
    await pool.execute(
        "DELETE FROM plantcore_history_drops"
        " WHERE history_table = ANY(SELECT format('%I.%I', current_schema(), name)"
        " FROM unnest($1::text[]) AS name)",
        made,
    )
