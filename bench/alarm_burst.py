"""alarm_burst: a burst of alarm transitions through the recorder, none lost, and the alarm list.

100 devices of 10 conditions each (1,000 alarms) send 10,000 ``AlarmTransition``
messages into the ALARMS stream as fast as JetStream acks them, each with its
``Nats-Msg-Id`` as the supervisors' bridge sends it. Every transition
alternates its condition (raise, clear, raise, ...), so every one is effective:
the burst must record exactly 10,000 ``Raised`` + ``Cleared`` events. Half the
alarms get 10 transitions (they end cleared, ``rtn_unack``), a quarter 9 and a
quarter 11 (they end raised, ``unack_active``): the final alarm list is known.

The plantcore path is the runtime's own wiring in one process: the durable
consumer of :data:`~reactors.alarm_recorder.ALARM_FEED` (created with
``DeliverPolicy.NEW`` before the first publish) feeding an
:class:`~reactors.alarm_recorder.AlarmRecorder`, and a
:class:`~eventstore.log_tail.LogTail` (polling every 0.5 s, as the runtime
does) with :class:`~projections.alarm_views.AlarmViews` writing
``alarm_current``, ``alarm_journal`` and Redis ``plant:alarms:active``.
Measured from the first publish:

- ``publish``: the burst published, every ack awaited (at most 256 in flight);
- ``recorder``: until the recorder has committed every transition;
- ``consistent``: until ``alarm_current`` (its rows not ``normal``) and the
  Redis hash both hold exactly the expected alarms in their expected states.

Then ``alarm_journal`` must hold one ``Raised`` or ``Cleared`` per transition.

**direct**, the raw comparison: the same burst (for other devices) recorded by
calling ``PlantApplication.record_alarm_transitions`` in batches of 256, with
no NATS and no views; it runs first, and the views start after its events.

Everything lives in a scratch database, dropped at the end; the bench's
subjects are purged from the ALARMS stream and its alarms removed from Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import psycopg
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from psycopg import sql

from bench.common import BenchConfig, Figures, Laps, Run, latency_ms, ratio, unique_name
from domain.alarm import AlarmState, alarm_id
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import ALARM_SUBJECT, AlarmKind, AlarmPriority, AlarmTransition
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.tracking import TrackedPosition
from plantcore.open_application import open_application
from plantcore.settings import DEFAULT_REDIS_URL
from plantcore.streams import ensure_alarm_stream
from projections.alarm_views import ACTIVE_KEY, AlarmViews, ensure_alarm_schema
from reactors.alarm_recorder import ALARM_FEED, ALARM_STREAM, AlarmRecorder

CONDITIONS = 10  # per device
TRANSITIONS_PER_ALARM = 10  # on average: 10, 9 or 11
AREAS = 10
BATCH = 256  # the consumer's fetch, and the direct path's batch
IN_FLIGHT = 256  # publishes awaiting their ack at once
TAIL_POLL_SECONDS = 0.5  # the runtime's LogTail poll interval
CHECK_INTERVAL = 0.02
DEADLINE_SECONDS = 600.0
EFFECTIVE_EVENTS = ("Raised", "Cleared")


@dataclass(frozen=True, slots=True)
class Burst:
    """The transitions in publish order, and the alarm list they must leave."""

    devices: list[str]
    transitions: list[AlarmTransition]
    expected: dict[str, str]  # alarm id -> state at the end


def make_burst(prefix: str, transitions: int) -> Burst:
    """Round-robin over the alarms, so one alarm's transitions are an alarm count apart."""
    alarms = transitions // TRANSITIONS_PER_ALARM
    devices = [f"{prefix}_d{n:03d}" for n in range(alarms // CONDITIONS)]
    plan: list[tuple[str, str, str, int]] = []
    for index in range(alarms):
        device, condition = devices[index // CONDITIONS], f"cond_{index % CONDITIONS:02d}"
        # Half end cleared (an even count), half end raised (9 or 11): 10 on average.
        count = TRANSITIONS_PER_ALARM + (0 if index % 2 == 0 else (-1 if index % 4 == 1 else 1))
        area = f"{prefix}_area{index // CONDITIONS % AREAS}"
        plan.append((device, condition, area, count))
    burst: list[AlarmTransition] = []
    for step in range(max(count for *_, count in plan)):
        active = step % 2 == 0
        for device, condition, area, count in plan:
            if step < count:
                burst.append(_transition(device, condition, area, active=active))
    expected = {
        str(alarm_id(device, condition)): (
            AlarmState.UNACK_ACTIVE if count % 2 else AlarmState.RTN_UNACK
        ).value
        for device, condition, _, count in plan
    }
    return Burst(devices, burst, expected)


def _transition(device: str, condition: str, area: str, *, active: bool) -> AlarmTransition:
    return AlarmTransition(
        transition_id=unique_name("t"), device=device, condition=condition, kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH, area=area, tag=f"{condition}_value", active=active,
        suppressed=False, latch=False, value=51.5 if active else 46.0, limit=48.0,
        message=f"{condition} high", ts=datetime.now(UTC),
    )  # fmt: skip


def _effective(events: Sequence[str]) -> int:
    return sum(1 for name in events if name in EFFECTIVE_EVENTS)


# -- direct: the application without NATS ---------------------------------------------------


def record_direct(app: PlantApplication, transitions: list[AlarmTransition]) -> tuple[Run, int]:
    """The burst in batches, one ``record_alarm_transitions`` each; the events it recorded."""
    laps = Laps()
    effective = 0
    for start in range(0, len(transitions), BATCH):
        changes = app.record_alarm_transitions(
            transitions[start : start + BATCH], datetime.now(UTC)
        )
        effective += sum(_effective(change.events) for change in changes)
        laps.lap()
    batches = laps.run()
    return Run(len(transitions), batches.seconds, batches.durations), effective


# -- plantcore: NATS, the recorder, the views ------------------------------------------------


class CountingRecorder(AlarmRecorder):
    """The runtime's recorder, also counting the burst's transitions whose save has committed.

    The consumer takes all of ``plant.alarms.>``: a transition of another
    device (anything else publishing on the machine) is recorded, not counted.
    """

    def __init__(
        self, app: PlantApplication, store_executor: StoreExecutor, devices: Sequence[str]
    ) -> None:
        super().__init__(app, store_executor)
        self._devices = frozenset(devices)
        self.transitions = 0
        self.batches: list[float] = []

    async def record(self, transitions: list[AlarmTransition]) -> None:
        started = time.perf_counter()
        await super().record(transitions)
        self.batches.append(time.perf_counter() - started)
        self.transitions += sum(1 for t in transitions if t.device in self._devices)


async def publish(js: JetStreamContext, transitions: list[AlarmTransition]) -> float:
    """Publish the burst, at most ``IN_FLIGHT`` unacked; its seconds.

    A window holds each alarm at most once (the burst is round-robin and has at
    least ``IN_FLIGHT`` alarms, or the window is cut to the alarm count), and a
    window is acked before the next starts, so each alarm's order is kept.
    """
    messages = [
        (ALARM_SUBJECT.format(device=t.device), t.encode(), {"Nats-Msg-Id": t.transition_id})
        for t in transitions
    ]
    window = min(IN_FLIGHT, len(transitions) // TRANSITIONS_PER_ALARM)
    started = time.perf_counter()
    for start in range(0, len(messages), window):
        await asyncio.gather(
            *(
                js.publish(subject, data, headers=headers)
                for subject, data, headers in messages[start : start + window]
            )
        )
    return time.perf_counter() - started


async def wait_until(check: Callable[[], Awaitable[bool]], started: float) -> float:
    """Seconds from ``started`` until ``check`` holds (polled every ``CHECK_INTERVAL``)."""
    while not await check():
        if time.perf_counter() - started > DEADLINE_SECONDS:
            raise TimeoutError("the burst was not recorded in time")
        await asyncio.sleep(CHECK_INTERVAL)
    return time.perf_counter() - started


class AlarmList:
    """The two copies of the alarm list an operator sees, compared with the expected one."""

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, burst: Burst) -> None:
        self._pool, self._redis, self._burst = pool, redis, burst
        self._ids = list(burst.expected)

    async def database_consistent(self) -> bool:
        rows = await self._pool.fetch(
            "SELECT alarm_id, state FROM alarm_current"
            " WHERE state <> 'normal' AND device = ANY($1::text[])",
            self._burst.devices,
        )
        return {str(row["alarm_id"]): row["state"] for row in rows} == self._burst.expected

    async def redis_consistent(self) -> bool:
        cached = await self._redis.hmget(ACTIVE_KEY, self._ids)
        return all(
            raw is not None and json.loads(raw)["state"] == self._burst.expected[key]
            for key, raw in zip(self._ids, cached, strict=True)
        )

    async def consistent(self) -> bool:
        return await self.database_consistent() and await self.redis_consistent()

    async def journal(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT event, count(*) AS n FROM alarm_journal"
            " WHERE device = ANY($1::text[]) GROUP BY event",
            self._burst.devices,
        )
        return {row["event"]: row["n"] for row in rows}


@dataclass(frozen=True, slots=True)
class Timeline:
    publish_seconds: float
    recorded_seconds: float
    consistent_seconds: float
    recorder: CountingRecorder
    journal: dict[str, int]


async def record_through_nats(
    app: PlantApplication,
    store_executor: StoreExecutor,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    js: JetStreamContext,
    burst: Burst,
) -> Timeline:
    await ensure_alarm_schema(pool)
    tracking = await store_executor.call(app.factory.tracking_recorder)
    # The views start at the log's end: the direct path's events are not theirs.
    log_end = await store_executor.call(app.recorder.max_notification_id) or 0
    views = AlarmViews(
        app,
        store_executor,
        pool,
        redis,
        TrackedPosition(tracking, store_executor, "alarm-views", initial=log_end),
    )
    tail = LogTail(app, store_executor, followers=[views], poll_interval=TAIL_POLL_SECONDS)
    recorder = CountingRecorder(app, store_executor, burst.devices)
    durable = unique_name("bench_alarm_recorder")
    consumer = ALARM_FEED.consumer(
        js, recorder.record, durable=durable, start=DeliverPolicy.NEW, batch=BATCH
    )
    await consumer.ensure()
    tasks = [asyncio.create_task(job) for job in (tail.run(), views.run(), consumer.run())]
    alarm_list = AlarmList(pool, redis, burst)
    total = len(burst.transitions)
    try:
        await tail.wait_caught_up()
        started = time.perf_counter()
        publishing = asyncio.create_task(publish(js, burst.transitions))

        async def all_recorded() -> bool:
            if publishing.done() and publishing.exception() is not None:
                await publishing  # raises
            return recorder.transitions >= total

        recorded = await wait_until(all_recorded, started)
        published = await publishing
        consistent = await wait_until(alarm_list.consistent, started)
        journal = await alarm_list.journal()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await js.delete_consumer(ALARM_STREAM, durable)
    return Timeline(published, recorded, consistent, recorder, journal)


# -- setting up and running ------------------------------------------------------------------


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A database of the run's own (event store and alarm views), dropped at the end."""
    name = unique_name("bench_alarms")
    parts = urlsplit(database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def run(config: BenchConfig) -> Figures:
    total = config.pick(quick=1_000, full=10_000)
    direct_burst = make_burst(unique_name("direct"), total)
    nats_burst = make_burst(unique_name("burst"), total)
    redis_url = os.environ.get("PLANTCORE_REDIS_URL", DEFAULT_REDIS_URL)
    with scratch_database(config.database_url) as database_url:
        store_executor = StoreExecutor()
        app = await store_executor.call(open_application, database_url, TagCatalog(()))
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        redis = aioredis.Redis.from_url(redis_url)
        nc = await nats.connect(config.nats_url)
        js = nc.jetstream()
        try:
            await ensure_alarm_stream(js)
            direct, direct_effective = await asyncio.to_thread(
                record_direct, app, direct_burst.transitions
            )
            timeline = await record_through_nats(app, store_executor, pool, redis, js, nats_burst)
        finally:
            for device in nats_burst.devices:
                await js.purge_stream(ALARM_STREAM, subject=ALARM_SUBJECT.format(device=device))
            await redis.hdel(ACTIVE_KEY, *nats_burst.expected)
            await nc.close()
            await redis.aclose()
            await pool.close()
            app.close()
            store_executor.shutdown()
    plantcore = Run(total, timeline.recorded_seconds, timeline.recorder.batches)
    journal_effective = sum(timeline.journal.get(name, 0) for name in EFFECTIVE_EVENTS)
    active = sum(1 for state in nats_burst.expected.values() if state == AlarmState.UNACK_ACTIVE)
    return {
        "params": {
            "transitions": total,
            "devices": len(nats_burst.devices),
            "conditions_per_device": CONDITIONS,
            "alarms": len(nats_burst.expected),
            "areas": AREAS,
            "expected_active": active,
            "expected_not_normal": len(nats_burst.expected),
            "consumer_batch": BATCH,
            "publish_in_flight": min(IN_FLIGHT, len(nats_burst.expected)),
            "tail_poll_seconds": TAIL_POLL_SECONDS,
        },
        "publish": {
            "transitions_per_s": round(total / timeline.publish_seconds, 1),
            "seconds": round(timeline.publish_seconds, 3),
        },
        "plantcore": {
            "transitions_per_s": round(plantcore.rate, 1),
            "transitions": total,
            "seconds": round(plantcore.seconds, 3),
            "consumer_batches": len(timeline.recorder.batches),
            "alarm_changes": timeline.recorder.recorded,
            "batch_latency_ms": latency_ms(timeline.recorder.batches),
        },
        "consistent": {
            "seconds_from_first_publish": round(timeline.consistent_seconds, 3),
            "seconds_after_recorded": round(
                timeline.consistent_seconds - timeline.recorded_seconds, 3
            ),
        },
        "none_lost": {
            "journal_raised": timeline.journal.get("Raised", 0),
            "journal_cleared": timeline.journal.get("Cleared", 0),
            "journal_effective": journal_effective,
            "expected_effective": total,
            "ok": journal_effective == total,
            "journal_events": dict(sorted(timeline.journal.items())),
        },
        "direct": {
            "transitions_per_s": round(direct.rate, 1),
            "transitions": total,
            "seconds": round(direct.seconds, 3),
            "batch_latency_ms": latency_ms(direct.durations),
            "effective_events": direct_effective,
        },
        "ratio": ratio(plantcore, direct),
    }
