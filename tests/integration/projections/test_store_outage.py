"""Projections lose nothing while their store is down, even for longer than the ack wait.

Each test has a NATS, a PostgreSQL and a Redis of its own (``tests.private_services``),
takes the store away under a steady stream of telemetry, and brings it back: the
consumer naks and waits meanwhile, then catches up from JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from domain.messages import Quality, Sample, TelemetryBatch
from plantcore.streams import ensure_deadletter_stream, ensure_telemetry_stream
from projections.consumer import DurableConsumer
from projections.dead_letter import DEADLETTER_STREAM, DeadLetters
from projections.history import HISTORY_FEED, HistoryWriter
from projections.history_schema import ensure_history_schema
from projections.live_state import LIVE_KEY, LIVE_STATE_FEED, LiveState
from projections.store_outage import read_model_pool
from tests.integration.projections.conftest import Consumers
from tests.private_services import (
    PrivatePostgres,
    PrivateRedis,
    private_nats,
    private_postgres,
    private_redis,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

DEVICE = "press-1"
TAGS = ("speed", "pressure", "temperature")
ACK_WAIT_SECONDS = 2.0
# The store stays away this long: three ack waits, so that JetStream would have
# redelivered anything the consumer left neither acked nor nak'ed.
OUTAGE_SECONDS = 3 * ACK_WAIT_SECONDS
# Catching up includes the longest backoff the outage built up (6.4 s from 0.1 s).
CATCH_UP_SECONDS = 30.0


class SteadyPublisher:
    """A batch of every tag per period, numbered from 1: batch n holds n, at start + n ms."""

    def __init__(self, js: JetStreamContext, period_seconds: float = 0.02) -> None:
        self._js = js
        self._period = period_seconds
        now = datetime.now(UTC)
        self._start = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self.published = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        while not self.stopping.is_set():
            n = self.published + 1
            ts = self._start + timedelta(milliseconds=n)
            samples = tuple(Sample(tag, n, Quality.GOOD, "", ts) for tag in TAGS)
            await self._js.publish(
                f"plant.telemetry.{DEVICE}", TelemetryBatch(DEVICE, ts, samples).encode()
            )
            self.published = n
            await asyncio.sleep(self._period)  # the pace of a poll cycle, not a wait for a result


@contextlib.asynccontextmanager
async def publishing(js: JetStreamContext) -> AsyncIterator[SteadyPublisher]:
    publisher = SteadyPublisher(js)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        # Not cancelled: a batch cancelled after JetStream took it would go uncounted.
        publisher.stopping.set()
        await task


@pytest.fixture
async def private_js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    with private_nats(tmp_path / "nats") as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            await ensure_telemetry_stream(js)
            await ensure_deadletter_stream(js)
            yield js
        finally:
            await nc.close()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    with private_postgres(tmp_path / "postgres") as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def running(private_js: JetStreamContext) -> AsyncIterator[Consumers]:
    consumers = Consumers(private_js)
    yield consumers
    await consumers.close()  # re-raises what ended a consumer's run


async def nothing_dead_lettered(js: JetStreamContext, letters: DeadLetters) -> None:
    assert letters.counts() == {}
    assert (await js.stream_info(DEADLETTER_STREAM)).state.messages == 0


async def wait_until_retrying(consumer: DurableConsumer[Any], failures: int = 1) -> None:
    async def failing() -> None:
        assert consumer.counters.transient_failures >= failures

    await eventually(failing)


async def all_stored_once(postgres: PrivatePostgres, published: int) -> None:
    """Every batch up to ``published`` in the history, each sample once: no gap, no double."""
    # A connection of its own: the pool's may still be the ones the outage broke.
    conn = await asyncpg.connect(postgres.url)
    try:
        rows = await conn.fetch(
            "SELECT tag, count(*), count(DISTINCT value), min(value), max(value)"
            " FROM samples WHERE device = $1 GROUP BY tag ORDER BY tag",
            DEVICE,
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in rows] == [
        (tag, published, published, 1, published) for tag in sorted(TAGS)
    ]


def one_batch(n: int) -> TelemetryBatch:
    ts = datetime.now(UTC)
    return TelemetryBatch(DEVICE, ts, tuple(Sample(tag, n, Quality.GOOD, "", ts) for tag in TAGS))


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_postgres_lost_in_the_middle_of_a_write_is_a_transient_failure(
    postgres: PrivatePostgres, outage: str
) -> None:
    pool = await read_model_pool(postgres.url)
    blocker = await asyncpg.connect(postgres.url)
    try:
        writer = HistoryWriter(pool, await ensure_history_schema(pool))
        await writer.write([one_batch(1)])  # today's partition exists from here on
        # The writer's INSERT waits on this lock, inside its transaction, when the server goes.
        await blocker.execute("BEGIN; LOCK TABLE samples IN EXCLUSIVE MODE")
        write = asyncio.create_task(writer.write([one_batch(2)]))

        async def waiting_on_the_lock() -> None:
            assert (
                await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                == 1
            )

        await eventually(waiting_on_the_lock)
        getattr(postgres, outage)()  # stop() or kill()

        with pytest.raises(HISTORY_FEED.transient):
            await write
        postgres.start()

        async def written_again() -> None:
            try:
                assert await writer.write([one_batch(3)]) == len(TAGS)
            except HISTORY_FEED.transient as exc:
                raise AssertionError(f"not yet: {exc!r}") from exc

        await eventually(written_again)  # the same pool, its connections made again
    finally:
        blocker.terminate()
        pool.terminate()  # what a lost server left half-done is not waited for


async def test_history_stores_every_sample_once_after_postgres_was_down(
    private_js: JetStreamContext, postgres: PrivatePostgres, running: Consumers
) -> None:
    pool = await read_model_pool(postgres.url)
    try:
        writer = HistoryWriter(pool, await ensure_history_schema(pool))
        letters = DeadLetters(private_js)
        consumer = HISTORY_FEED.consumer(
            private_js, writer.write, dead_letters=letters,
            ack_wait_seconds=ACK_WAIT_SECONDS, min_backoff_seconds=0.1,
        )  # fmt: skip
        await running.start(consumer)

        async with publishing(private_js) as publisher:

            async def stored() -> None:
                assert await pool.fetchval("SELECT count(*) FROM samples") > 0

            await eventually(stored)
            before = publisher.published
            postgres.kill()
            await wait_until_retrying(consumer)
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage, published through
        published = publisher.published
        assert published > before > 0
        postgres.start()

        await eventually(lambda: all_stored_once(postgres, published), timeout=CATCH_UP_SECONDS)
        assert consumer.counters.naked > 0
        await nothing_dead_lettered(private_js, letters)
    finally:
        await running.close()  # before its store's client goes
        pool.terminate()  # what a lost server left half-done is not waited for


async def test_live_state_holds_the_latest_of_every_tag_after_redis_was_down(
    private_js: JetStreamContext, redis_server: PrivateRedis, running: Consumers
) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        letters = DeadLetters(private_js)
        consumer = LIVE_STATE_FEED.consumer(
            private_js, LiveState(client).apply, dead_letters=letters,
            ack_wait_seconds=ACK_WAIT_SECONDS, min_backoff_seconds=0.1,
        )  # fmt: skip
        await running.start(consumer)
        key = LIVE_KEY.format(device=DEVICE)

        async with publishing(private_js) as publisher:

            async def live() -> None:
                assert await client.hlen(key) == len(TAGS)

            await eventually(live)
            before = publisher.published
            redis_server.stop()
            await wait_until_retrying(consumer)
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage, published through
        published = publisher.published
        assert published > before > 0
        # Redis keeps nothing on disk: what it held before is gone, and every value
        # it holds now came from the stream after it was back.
        redis_server.start()

        async def latest() -> None:
            async with aioredis.from_url(redis_server.url, decode_responses=True) as reader:
                values = await reader.hgetall(key)
            assert sorted(values) == sorted(TAGS)
            assert {tag: json.loads(raw)["value"] for tag, raw in values.items()} == dict.fromkeys(
                TAGS, published
            )

        await eventually(latest, timeout=CATCH_UP_SECONDS)
        assert consumer.counters.naked > 0
        await nothing_dead_lettered(private_js, letters)
    finally:
        await running.close()  # before its store's client goes
        await client.aclose()


async def test_history_waits_out_a_postgres_that_stops_answering(
    private_js: JetStreamContext, postgres: PrivatePostgres, running: Consumers
) -> None:
    # A short statement timeout keeps the test short; the runtime's is longer.
    pool = await read_model_pool(postgres.url, statement_timeout_seconds=0.5)
    try:
        writer = HistoryWriter(pool, await ensure_history_schema(pool))
        letters = DeadLetters(private_js)
        consumer = HISTORY_FEED.consumer(
            private_js, writer.write, dead_letters=letters,
            ack_wait_seconds=ACK_WAIT_SECONDS, min_backoff_seconds=0.1,
        )  # fmt: skip
        await running.start(consumer)

        async with publishing(private_js) as publisher:

            async def stored() -> None:
                assert await pool.fetchval("SELECT count(*) FROM samples") > 0

            await eventually(stored)
            postgres.freeze()  # holds every connection open, and answers nothing
            # Each write gives up in bounded time, over and over, instead of hanging.
            await wait_until_retrying(consumer, failures=3)
            postgres.thaw()
        published = publisher.published

        await eventually(lambda: all_stored_once(postgres, published), timeout=CATCH_UP_SECONDS)
        await nothing_dead_lettered(private_js, letters)
    finally:
        await running.close()  # before its store's client goes
        pool.terminate()  # what a lost server left half-done is not waited for
