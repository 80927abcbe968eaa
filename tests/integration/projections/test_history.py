"""The history projection writes every sample once, survives garbage, resumes, partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js import JetStreamContext

from domain.messages import (
    ConnectionState,
    DeviceStatus,
    Quality,
    QualityReason,
    Sample,
    TagValue,
    TelemetryBatch,
)
from projections.consumer import DurableConsumer
from projections.dead_letter import DeadLetters
from projections.history import (
    HISTORY_FEED,
    HistoryPoint,
    HistoryWriter,
    decode_history,
    query_history,
)
from projections.history_schema import ensure_history_schema, partition_name
from tests.integration.projections.conftest import Consumers, History, wait_consumed
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)


def batch(device: str, ts: datetime, **values: TagValue) -> TelemetryBatch:
    samples = tuple(Sample(tag, v, Quality.GOOD, "", ts) for tag, v in values.items())
    return TelemetryBatch(device=device, ts=ts, samples=samples)


def now_ms() -> datetime:
    """Now, at the millisecond resolution of the wire format."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def publish(js: JetStreamContext, subject: str, payload: bytes) -> int:
    ack = await js.publish(subject, payload)
    return ack.seq


async def points(pool: asyncpg.Pool, history: History, device: str, tag: str) -> list[HistoryPoint]:
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    return await query_history(pool, device, tag, start, end, table=history.table)


async def partition_of(pool: asyncpg.Pool, history: History, device: str) -> list[str]:
    rows = await pool.fetch(
        f"SELECT tableoid::regclass::text AS part FROM {history.table} WHERE device = $1",  # noqa: S608
        device,
    )
    return [row["part"] for row in rows]


async def test_telemetry_is_written_and_status_ignored(
    js: JetStreamContext, pool: asyncpg.Pool, history: History, consumers: Consumers
) -> None:
    device = unique("press")
    subject = f"plant.telemetry.{device}"
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    telemetry, status = unique("history"), unique("history")
    # NATS 2.9 takes one filter subject per consumer, so status gets its own here.
    await consumers.start(
        HISTORY_FEED.consumer(js, writer.write, durable=telemetry, filter_subject=subject)
    )
    status_subject = f"plant.status.{device}"
    await consumers.start(
        HISTORY_FEED.consumer(js, writer.write, durable=status, filter_subject=status_subject)
    )

    await publish(js, subject, batch(device, T0, speed=1184, running=True, torque=None).encode())
    later = batch(device, T0 + timedelta(seconds=1), speed=1190.5, running=False, torque=3.25)
    last = await publish(js, subject, later.encode())
    connected = DeviceStatus(device, ConnectionState.CONNECTED, T0)
    last_status = await publish(js, status_subject, connected.encode())

    await wait_consumed(js, telemetry, last)
    await wait_consumed(js, status, last_status)
    assert [(p.time, p.value, p.quality) for p in await points(pool, history, device, "speed")] == [
        (T0, 1184.0, Quality.GOOD),
        (T0 + timedelta(seconds=1), 1190.5, Quality.GOOD),
    ]
    assert [p.value for p in await points(pool, history, device, "running")] == [1.0, 0.0]
    assert [p.value for p in await points(pool, history, device, "torque")] == [None, 3.25]
    rows = await pool.fetchval(f"SELECT count(*) FROM {history.table} WHERE device = $1", device)  # noqa: S608
    assert rows == 6


async def test_an_unreachable_device_is_a_row_holding_the_last_value_with_quality_bad(
    js: JetStreamContext, pool: asyncpg.Pool, history: History, consumers: Consumers
) -> None:
    device = unique("press")
    subject = f"plant.telemetry.{device}"
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    durable = unique("history")
    await consumers.start(
        HISTORY_FEED.consumer(js, writer.write, durable=durable, filter_subject=subject)
    )
    lost = T0 + timedelta(milliseconds=1)  # the next instant the wire can tell apart
    held = Sample("speed", 1184, Quality.BAD, "", lost, QualityReason.COMM_LOSS, T0)

    await publish(js, subject, batch(device, T0, speed=1184).encode())
    last = await publish(js, subject, TelemetryBatch(device, lost, (held,)).encode())

    await wait_consumed(js, durable, last)
    assert [(p.time, p.value, p.quality) for p in await points(pool, history, device, "speed")] == [
        (T0, 1184.0, Quality.GOOD),
        (lost, 1184.0, Quality.BAD),
    ]


async def test_malformed_messages_are_dead_lettered_and_do_not_block(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    history: History,
    consumers: Consumers,
    dead_letters: DeadLetters,
) -> None:
    device = unique("press")
    subject = f"plant.telemetry.{device}"
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    durable = unique("history")
    await consumers.start(
        HISTORY_FEED.consumer(
            js, writer.write, dead_letters=dead_letters, durable=durable, filter_subject=subject
        )
    )

    wrong_schema = batch(device, T0, ghost=1).encode().replace(b'"schema":1', b'"schema":99')
    other_device = batch(unique("other"), T0, ghost=2).encode()
    await publish(js, subject, batch(device, T0, speed=1).encode())
    for garbage in (b"\x00not json", b"[1, 2]", wrong_schema, other_device):
        await publish(js, subject, garbage)
    last = await publish(js, subject, batch(device, T0 + timedelta(seconds=1), speed=2).encode())

    async def both_written() -> None:
        assert [p.value for p in await points(pool, history, device, "speed")] == [1.0, 2.0]

    await eventually(both_written)
    await wait_consumed(js, durable, last)
    assert await points(pool, history, device, "ghost") == []
    assert dead_letters.counts() == {(durable, "malformed"): 4}
    info = await js.consumer_info("TELEMETRY", durable)
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0


async def test_resumes_with_exactly_the_missed_batches(
    js: JetStreamContext, pool: asyncpg.Pool, history: History, consumers: Consumers
) -> None:
    device = unique("press")
    subject = f"plant.telemetry.{device}"
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    durable = unique("history")
    seen: list[datetime] = []

    async def recording(batches: list[TelemetryBatch]) -> None:
        seen.extend(b.ts for b in batches)
        await writer.write(batches)

    def consumer() -> DurableConsumer[TelemetryBatch]:
        return DurableConsumer(
            js,
            "TELEMETRY",
            durable,
            subject,
            recording,
            decode=decode_history,
            transient=HISTORY_FEED.transient,
            batch=2,
        )

    first = consumer()
    await consumers.start(first)
    before = [T0 + timedelta(seconds=n) for n in range(3)]
    for ts in before:
        last = await publish(js, subject, batch(device, ts, speed=ts.second).encode())
    await wait_consumed(js, durable, last)
    await consumers.stop(first)

    missed = [T0 + timedelta(seconds=n) for n in range(3, 8)]
    for ts in missed:
        last = await publish(js, subject, batch(device, ts, speed=ts.second).encode())
    seen.clear()
    await consumers.start(consumer())
    await wait_consumed(js, durable, last)

    assert seen == missed
    stored = await points(pool, history, device, "speed")
    assert [p.time for p in stored] == before + missed

    # A redelivered batch (here: handed over again) adds nothing.
    again = [batch(device, ts, speed=ts.second) for ts in missed]
    assert await writer.write(again) == 0
    assert await points(pool, history, device, "speed") == stored


async def test_partitions_on_demand_and_default_for_far_away_times(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    ahead = now_ms() + timedelta(days=5)  # beyond the days made at start-up
    far = now_ms() + timedelta(days=400)

    assert await writer.write([batch(device, ahead, speed=1), batch(device, far, speed=2)]) == 2

    ahead_partition = partition_name(history.table, ahead.date())
    assert await pool.fetchval("SELECT to_regclass($1)::text", ahead_partition) == ahead_partition
    assert (
        await pool.fetchval("SELECT to_regclass($1)", partition_name(history.table, far.date()))
        is None
    )
    assert sorted(await partition_of(pool, history, device)) == [
        f"{history.table}_default",
        ahead_partition,
    ]
    assert [p.time for p in await points(pool, history, device, "speed")] == [ahead, far]


async def test_a_new_partition_takes_over_its_rows_from_default(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    later = now_ms() + timedelta(days=20)  # outside the on-demand window: DEFAULT
    await writer.write([batch(device, later, speed=1)])
    assert await partition_of(pool, history, device) == [f"{history.table}_default"]

    await history.partitions.ensure_days([later.date()])  # e.g. made ahead, days later

    assert await partition_of(pool, history, device) == [
        partition_name(history.table, later.date())
    ]
    assert await writer.write([batch(device, later, speed=1)]) == 0


async def test_query_history_range_is_half_open(pool: asyncpg.Pool, history: History) -> None:
    device = unique("press")
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    times = [now_ms() + timedelta(seconds=n) for n in range(4)]
    await writer.write([batch(device, ts, speed=n) for n, ts in enumerate(times)])

    found = await query_history(pool, device, "speed", times[1], times[3], table=history.table)

    assert [(p.time, p.value) for p in found] == [(times[1], 1.0), (times[2], 2.0)]


async def test_setting_up_an_existing_table_again_keeps_native_partitioning(
    pool: asyncpg.Pool, history: History
) -> None:
    # A restart runs the schema set-up again on the table the first start made.
    again = await ensure_history_schema(pool, table=history.table)

    assert again is not None
    kind = await pool.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", history.table
    )
    assert kind == "p"
