"""The history stores units and qualities, and thins the tags with a policy, across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from domain.messages import Quality, Sample, TagValue, TelemetryBatch
from plantfile.tags import HistoryPolicy
from projections.history import HistoryWriter
from projections.history_filter import HistoryFilter
from projections.history_schema import ensure_history_schema
from tests.integration.projections.conftest import History
from tests.support import unique

pytestmark = pytest.mark.integration

POLICY = HistoryPolicy(deadband=0.5, max_interval_seconds=60)


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def samples(device: str, start: datetime, values: list[TagValue]) -> list[TelemetryBatch]:
    """One batch per second, each with one ``temp`` sample."""
    return [
        TelemetryBatch(
            device,
            start + timedelta(seconds=n),
            (Sample("temp", v, Quality.GOOD, "degC", start + timedelta(seconds=n)),),
        )
        for n, v in enumerate(values)
    ]


async def stored(pool: asyncpg.Pool, history: History, device: str) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        f"SELECT time, value, quality, unit FROM {history.table}"  # noqa: S608
        " WHERE device = $1 ORDER BY time",
        device,
    )
    return [tuple(row) for row in rows]


def writer_of(pool: asyncpg.Pool, history: History, device: str) -> HistoryWriter:
    """A writer as a fresh start makes one: nothing remembered."""
    return HistoryWriter(
        pool,
        history.partitions,
        table=history.table,
        history_filter=HistoryFilter({(device, "temp"): POLICY}),
    )


async def test_each_sample_keeps_its_unit_and_quality(pool: asyncpg.Pool, history: History) -> None:
    device = unique("press")
    t0 = now_s()
    batch = TelemetryBatch(
        device,
        t0,
        (
            Sample("temp", 61.5, Quality.GOOD, "degC", t0),
            Sample("speed", 1184, Quality.UNCERTAIN, "rpm", t0),
            Sample("running", None, Quality.BAD, "", t0),
        ),
    )
    writer = HistoryWriter(pool, history.partitions, table=history.table)

    assert await writer.write([batch]) == 3

    rows = await pool.fetch(
        f"SELECT tag, value, quality, unit FROM {history.table} WHERE device = $1 ORDER BY tag",  # noqa: S608
        device,
    )
    assert [tuple(r) for r in rows] == [
        ("running", None, "bad", ""),
        ("speed", 1184.0, "uncertain", "rpm"),
        ("temp", 61.5, "good", "degC"),
    ]


async def test_an_existing_table_gets_the_unit_column_at_start_up(
    pool: asyncpg.Pool, history: History
) -> None:
    await pool.execute(f"ALTER TABLE {history.table} DROP COLUMN unit")  # as made before units
    await pool.execute(
        f"INSERT INTO {history.table} (time, device, tag, value, quality)"  # noqa: S608
        " VALUES (now(), 'old-press', 'temp', 1, 'good')"
    )

    await ensure_history_schema(pool, table=history.table)

    assert (
        await pool.fetchval(
            f"SELECT unit FROM {history.table} WHERE device = 'old-press'"  # noqa: S608
        )
        == ""
    )


async def test_a_slow_signal_is_thinned_and_a_restart_or_redelivery_adds_nothing(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    t0 = now_s()
    values: list[TagValue] = [20.0, 20.1, 20.2, 20.7, 20.6, 20.5, 19.0, 19.1]
    batches = samples(device, t0, values)
    expected = [(t0 + timedelta(seconds=n), values[n], "good", "degC") for n in (0, 3, 6)]

    assert await writer_of(pool, history, device).write(batches[:5]) == 2
    # A start forgets what was stored: the table tells.
    restarted = writer_of(pool, history, device)
    assert await restarted.write(batches[5:]) == 1
    assert await stored(pool, history, device) == expected

    # The whole stream delivered again, to the running writer and to a new one.
    assert await restarted.write(batches) == 0
    assert await writer_of(pool, history, device).write(batches) == 0
    assert await stored(pool, history, device) == expected


async def test_a_bad_sample_is_stored_and_the_interval_stores_a_steady_value(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    t0 = now_s()
    writer = writer_of(pool, history, device)
    steady = samples(device, t0, [20.0]) + samples(device, t0 + timedelta(seconds=30), [20.0])
    bad = TelemetryBatch(
        device,
        t0 + timedelta(seconds=40),
        (Sample("temp", 20.0, Quality.BAD, "degC", t0 + timedelta(seconds=40)),),
    )
    due = samples(device, t0 + timedelta(seconds=100), [20.0])

    await writer.write([*steady, bad, *due])

    assert [(row[0], row[2]) for row in await stored(pool, history, device)] == [
        (t0, "good"),
        (t0 + timedelta(seconds=40), "bad"),
        (t0 + timedelta(seconds=100), "good"),  # quality changed back
    ]
    later = samples(device, t0 + timedelta(seconds=130), [20.0])
    await writer.write(later)  # 30 s: not due
    await writer.write(samples(device, t0 + timedelta(seconds=160), [20.0]))  # 60 s: due
    assert [row[0] for row in await stored(pool, history, device)][-1] == t0 + timedelta(
        seconds=160
    )
    assert len(await stored(pool, history, device)) == 4
