"""Alarm transitions from NATS recorded once in the event store, and the read models that follow.

Real JetStream (the ALARMS stream), PostgreSQL (the event store and the alarm
views of a database of this test's own) and Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from domain.alarm import AlarmState, alarm_id
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import ALARM_SUBJECT, AlarmKind, AlarmPriority, AlarmTransition
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.tracking import TrackedPosition
from plantcore.open_application import open_application
from plantcore.streams import ensure_alarm_stream
from projections.alarm_views import ACTIVE_KEY, AlarmViews, ensure_alarm_schema
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX
from reactors.alarm_clock import AlarmClock
from reactors.alarm_recorder import ALARM_FEED, AlarmRecorder
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


@dataclass
class Plant:
    app: PlantApplication
    store_executor: StoreExecutor
    pool: asyncpg.Pool
    redis: aioredis.Redis
    js: JetStreamContext
    views: AlarmViews
    tail: LogTail
    device: str


@pytest.fixture
async def plant(
    own_database: str, js: JetStreamContext, redis_client: aioredis.Redis
) -> AsyncIterator[Plant]:
    store_executor = StoreExecutor()
    app = await store_executor.call(open_application, own_database, TagCatalog(()))
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=4)
    await ensure_alarm_stream(js)
    await ensure_alarm_schema(pool)
    tracking = await store_executor.call(app.factory.tracking_recorder)
    views = AlarmViews(
        app, store_executor, pool, redis_client, TrackedPosition(tracking, store_executor, "views")
    )
    tail = LogTail(app, store_executor, followers=[views], poll_interval=0.05)
    device = unique("press")
    durable = unique("recorder")
    recorder = ALARM_FEED.consumer(
        js, AlarmRecorder(app, store_executor).record, durable=durable,
        filter_subject=ALARM_SUBJECT.format(device=device), start=DeliverPolicy.NEW,
    )  # fmt: skip
    await recorder.ensure()
    tasks = [asyncio.create_task(job) for job in (tail.run(), views.run(), recorder.run())]
    try:
        yield Plant(app, store_executor, pool, redis_client, js, views, tail, device)
    finally:
        try:
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=10)
            assert not pending, f"still running after cancel: {pending}"
            await js.delete_consumer("ALARMS", durable)
            await js.purge_stream(
                DEADLETTER_STREAM, subject=f"{DEADLETTER_SUBJECT_PREFIX}.{durable}"
            )
            await redis_client.hdel(ACTIVE_KEY, str(alarm_id(device, "motor_temperature_hi")))
        finally:
            await pool.close()
            app.close()
            store_executor.shutdown()


def transition(device: str, *, active: bool, **fields: object) -> AlarmTransition:
    base = AlarmTransition(
        transition_id=uuid4().hex, device=device, condition="motor_temperature_hi",
        kind=AlarmKind.HI, priority=AlarmPriority.HIGH, area="press-line",
        tag="motor_temperature", active=active, suppressed=False, latch=False,
        value=51.5 if active else 46.0, limit=48.0, message="motor temperature high",
        ts=datetime.now(UTC),
    )  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


async def publish(plant: Plant, message: AlarmTransition) -> None:
    # No Nats-Msg-Id: a duplicate must be caught by the recorder, not only by the stream.
    await plant.js.publish(ALARM_SUBJECT.format(device=plant.device), message.encode())


async def journal(plant: Plant) -> list[str]:
    rows = await plant.pool.fetch(
        "SELECT event FROM alarm_journal WHERE device = $1 ORDER BY position", plant.device
    )
    return [row["event"] for row in rows]


async def current_state(plant: Plant) -> str | None:
    state: str | None = await plant.pool.fetchval(
        "SELECT state FROM alarm_current WHERE device = $1", plant.device
    )
    return state


async def test_a_transition_is_recorded_once_and_every_view_follows(plant: Plant) -> None:
    raised = transition(plant.device, active=True)
    await publish(plant, raised)
    await publish(plant, raised)  # redelivered, or published twice by a restarted supervisor
    the_alarm = alarm_id(plant.device, "motor_temperature_hi")

    async def active_everywhere() -> None:
        assert await current_state(plant) == AlarmState.UNACK_ACTIVE.value
        cached = await plant.redis.hget(ACTIVE_KEY, str(the_alarm))
        assert cached is not None
        assert json.loads(cached)["state"] == "unack_active"

    await eventually(active_everywhere)
    stored = await plant.store_executor.call(plant.app.alarm_events, the_alarm)
    assert [type(event).__name__ for event in stored].count("Raised") == 1

    await plant.store_executor.call(
        plant.app.acknowledge_alarm, alarm_id=the_alarm, actor="ana", comment="cooling checked",
        at=datetime.now(UTC),
    )  # fmt: skip
    await publish(plant, transition(plant.device, active=False))

    async def back_to_normal() -> None:
        assert await current_state(plant) == AlarmState.NORMAL.value
        assert await plant.redis.hget(ACTIVE_KEY, str(the_alarm)) is None

    await eventually(back_to_normal)
    events = await journal(plant)
    assert events.count("Raised") == 1
    assert events.index("Raised") < events.index("Acknowledged") < events.index("Cleared")
    row = await plant.pool.fetchrow(
        "SELECT actor, detail FROM alarm_journal WHERE event = 'Acknowledged' AND device = $1",
        plant.device,
    )
    assert row is not None
    assert row["actor"] == "ana"
    assert json.loads(row["detail"])["comment"] == "cooling checked"


async def test_a_malformed_transition_is_dropped_and_the_next_recorded(plant: Plant) -> None:
    subject = ALARM_SUBJECT.format(device=plant.device)
    await plant.js.publish(subject, b"not json")
    other = transition(unique("other"), active=True)  # names another device than its subject
    await plant.js.publish(subject, other.encode())
    await publish(plant, transition(plant.device, active=True))

    async def recorded() -> None:
        assert await current_state(plant) == AlarmState.UNACK_ACTIVE.value

    await eventually(recorded)
    assert (
        await plant.pool.fetchval(
            "SELECT count(*) FROM alarm_current WHERE device = $1", other.device
        )
        == 0
    )


async def test_live_events_reach_subscribers_in_order(plant: Plant) -> None:
    async with plant.views.subscribe() as events:
        await publish(plant, transition(plant.device, active=True))
        await publish(plant, transition(plant.device, active=False))
        seen: list[tuple[str, str]] = []
        async with asyncio.timeout(10):
            while not seen or seen[-1][0] != "Cleared":
                entry = await events.get()
                if entry.device == plant.device:
                    seen.append((entry.event, entry.state))
    assert ("Raised", "unack_active") in seen
    assert seen[-1] == ("Cleared", "rtn_unack")


async def test_a_shelve_ends_by_itself_when_its_time_comes(plant: Plant) -> None:
    await publish(plant, transition(plant.device, active=True))
    the_alarm = alarm_id(plant.device, "motor_temperature_hi")

    async def recorded() -> None:
        assert await current_state(plant) == AlarmState.UNACK_ACTIVE.value

    await eventually(recorded)
    shelved_at = datetime.now(UTC)
    await plant.store_executor.call(
        plant.app.shelve_alarm, alarm_id=the_alarm, actor="ana", reason="sensor replaced",
        duration=timedelta(minutes=5), at=shelved_at,
    )  # fmt: skip

    async def shelved() -> None:
        assert await current_state(plant) == AlarmState.SHELVED.value

    await eventually(shelved)
    later = shelved_at + timedelta(minutes=5, seconds=1)
    clock = AlarmClock(plant.app, plant.store_executor, plant.pool, clock=lambda: later)
    assert await clock.tick() == 1

    async def unshelved() -> None:
        assert await current_state(plant) == AlarmState.UNACK_ACTIVE.value

    await eventually(unshelved)
    row = await plant.pool.fetchrow(
        "SELECT actor FROM alarm_journal WHERE event = 'Unshelved' AND device = $1", plant.device
    )
    assert row is not None
    assert row["actor"] == "system"
