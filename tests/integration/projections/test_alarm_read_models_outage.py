"""The alarm views and the alarm clock wait out their stores' outages instead of ending.

A task of the plant core that ends stops the plant core: a store that is away
for a while must only hold these up. Their stores are servers of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
import redis.asyncio as aioredis

from domain.alarm import alarm_id
from domain.catalog import TagCatalog
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.tracking import TrackedPosition
from plantcore.open_application import open_application
from projections.alarm_views import ACTIVE_KEY, AlarmViews, ensure_alarm_schema
from reactors.alarm_clock import AlarmClock
from reactors.alarm_recorder import AlarmRecorder
from tests.private_services import private_postgres, private_redis
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(*jobs: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


async def test_the_alarm_views_wait_for_redis_and_then_mirror_the_alarm(
    own_database: str, tmp_path: Path
) -> None:
    store_executor = StoreExecutor()
    app = await store_executor.call(open_application, own_database, TagCatalog(()))
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    redis_server = private_redis(tmp_path)
    redis_server.start()
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        await ensure_alarm_schema(pool)
        tracking = await store_executor.call(app.factory.tracking_recorder)
        views = AlarmViews(
            app, store_executor, pool, client,
            TrackedPosition(tracking, store_executor, "views"), retry_delay=0.05,
        )  # fmt: skip
        tail = LogTail(app, store_executor, followers=[views], poll_interval=0.05)
        jobs = asyncio.create_task(views.run()), asyncio.create_task(tail.run())
        async with running(*jobs):
            redis_server.stop()
            device = unique("press")
            await AlarmRecorder(app, store_executor).record([raised(device)])

            async def journaled() -> None:
                assert await pool.fetchval(
                    "SELECT count(*) FROM alarm_journal WHERE device = $1", device
                )

            await eventually(journaled)  # its PostgreSQL half is written, Redis is not there
            assert not any(job.done() for job in jobs), [job for job in jobs if job.done()]

            redis_server.start()
            the_alarm = str(alarm_id(device, "motor_temperature_hi"))

            async def mirrored() -> None:
                assert await client.hget(ACTIVE_KEY, the_alarm) is not None

            await eventually(mirrored)
    finally:
        await client.aclose()
        redis_server.stop()
        await pool.close()
        app.close()
        store_executor.shutdown()


async def test_the_alarm_clock_waits_while_postgres_refuses_connections(
    own_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactors.alarm_clock")
    store_executor = StoreExecutor()
    app = await store_executor.call(open_application, own_database, TagCatalog(()))
    with contextlib.ExitStack() as closing, private_postgres(tmp_path) as postgres:
        closing.callback(store_executor.shutdown)
        closing.callback(app.close)
        session = await asyncpg.connect(postgres.url)
        # A smart shutdown waits for this session to leave, and meanwhile answers every
        # new connection "the database system is shutting down" (CannotConnectNowError).
        assert postgres.pid is not None
        os.kill(postgres.pid, signal.SIGTERM)
        pool = await asyncpg.create_pool(postgres.url, min_size=0, max_size=1)
        try:
            clock = AlarmClock(app, store_executor, pool, interval=0.05)
            ticking = asyncio.create_task(clock.run())
            async with running(ticking):

                async def retrying() -> None:
                    assert not ticking.done(), ticking
                    assert sum("store unavailable" in r.message for r in caplog.records) >= 3

                await eventually(retrying)
        finally:
            await pool.close()
            session.terminate()


def raised(device: str) -> AlarmTransition:
    return AlarmTransition(
        transition_id=uuid4().hex, device=device, condition="motor_temperature_hi",
        kind=AlarmKind.HI, priority=AlarmPriority.HIGH, area="press-line",
        tag="motor_temperature", active=True, suppressed=False, latch=False, value=51.5,
        limit=48.0, message="motor temperature high", ts=datetime.now(UTC),
    )  # fmt: skip
