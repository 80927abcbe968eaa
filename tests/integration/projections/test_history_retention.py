"""Retention drops whole partitions past their table's span, recorded as events; young ones stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import Quality, Sample, TelemetryBatch
from projections.history import HistoryWriter
from projections.history_retention import (
    DroppedPartition,
    RetentionPolicy,
    drop_expired_partitions,
)
from projections.history_schema import Partitions, Period, hours_table, minutes_table
from tests.integration.projections.conftest import History
from tests.support import unique

pytestmark = pytest.mark.integration

POLICY = RetentionPolicy(raw_days=30, minute_days=365, hour_days=1825)


def at_noon(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


async def partitions_of(pool: asyncpg.Pool, table: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT inhrelid::regclass::text AS part FROM pg_inherits"
        " WHERE inhparent = $1::text::regclass",
        table,
    )
    return {row["part"] for row in rows}


async def test_partitions_past_their_retention_are_dropped_and_recorded(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    raw, minutes, hours = history.table, minutes_table(history.table), hours_table(history.table)
    # Days moved into the past: each table gets partitions beyond and within its span.
    old_raw, young_raw = [at_noon(40), at_noon(39)], at_noon(2)
    old_minute, old_hour = at_noon(420), at_noon(2300)
    times = [*old_raw, young_raw, old_minute, old_hour]
    for table, period in ((raw, Period.DAY), (minutes, Period.MONTH), (hours, Period.YEAR)):
        await Partitions(pool, table=table, period=period).ensure_days(t.date() for t in times)
    writer = HistoryWriter(pool, history.partitions, table=raw, hour_refresh_seconds=0)
    for n, ts in enumerate(times):
        samples = tuple(
            Sample(tag, float(n), Quality.GOOD, "", ts + timedelta(seconds=s))
            for tag in ("speed", "temp")
            for s in range(3)
        )
        assert await writer.write([TelemetryBatch(device, ts, samples)]) == 6
    before = {table: await partitions_of(pool, table) for table in (raw, minutes, hours)}

    app = PlantApplication(TagCatalog([]))
    recorded: list[DroppedPartition] = []
    records: list[UUID] = []

    async def record(drop: DroppedPartition) -> None:
        records.append(
            app.record_history_partition_dropped(
                table=drop.table,
                partition=drop.partition,
                start=drop.start,
                end=drop.end,
                rows=drop.rows,
                retention_days=drop.retention_days,
                at=datetime.now(UTC),
            )
        )
        recorded.append(drop)

    dropped = await drop_expired_partitions(pool, POLICY, datetime.now(UTC), record, table=raw)

    def day(ts: datetime) -> tuple[datetime, datetime]:
        start = ts.replace(hour=0)
        return start, start + timedelta(days=1)

    def month(ts: datetime) -> tuple[datetime, datetime]:
        start = ts.replace(day=1, hour=0)
        return start, (start + timedelta(days=32)).replace(day=1)

    def year(ts: datetime) -> tuple[datetime, datetime]:
        start = ts.replace(month=1, day=1, hour=0)
        return start, start.replace(year=start.year + 1)

    expected_raw = [
        (f"{raw}_p{ts:%Y%m%d}", *day(ts), 6, 30) for ts in sorted([*old_raw, old_minute, old_hour])
    ]
    expected_minutes = [
        (f"{minutes}_p{ts:%Y%m}", *month(ts), 2, 365) for ts in (old_hour, old_minute)
    ]
    expected_hours = [(f"{hours}_p{old_hour:%Y}", *year(old_hour), 2, 1825)]
    assert [(d.partition, d.start, d.end, d.rows, d.retention_days) for d in dropped] == [
        *expected_raw,
        *expected_minutes,
        *expected_hours,
    ]
    assert recorded == dropped
    for table in (raw, minutes, hours):
        gone = {d.partition for d in dropped if d.table == table}
        assert await partitions_of(pool, table) == before[table] - gone
    assert f"{raw}_p{young_raw:%Y%m%d}" in await partitions_of(pool, raw)
    assert (
        await pool.fetchval(
            f"SELECT count(*) FROM {raw} WHERE device = $1",  # noqa: S608
            device,
        )
        == 6
    )  # the young day's rows alone

    events = [event for id_ in records for event in app.events.get(id_)]
    assert [type(e).__name__ for e in events] == ["HistoryPartitionDropped"] * len(dropped)
    assert [
        (e.table, e.partition, e.start, e.end, e.rows, e.retention_days, e.actor)  # type: ignore[attr-defined]
        for e in events
    ] == [
        (d.table, d.partition, d.start, d.end, d.rows, d.retention_days, "system") for d in dropped
    ]

    # A second pass finds nothing more to drop.
    assert await drop_expired_partitions(pool, POLICY, datetime.now(UTC), record, table=raw) == []


async def test_a_drop_whose_record_fails_is_undone(pool: asyncpg.Pool, history: History) -> None:
    old = at_noon(45)
    await history.partitions.ensure_days([old.date()])
    partition = f"{history.table}_p{old:%Y%m%d}"

    async def failing(drop: DroppedPartition) -> None:
        raise OSError("the event store is away")

    with pytest.raises(OSError, match="away"):
        await drop_expired_partitions(pool, POLICY, datetime.now(UTC), failing, table=history.table)

    assert partition in await partitions_of(pool, history.table)


async def test_the_default_partition_and_foreign_tables_are_refused(
    pool: asyncpg.Pool, history: History
) -> None:
    with pytest.raises(asyncpg.RaiseError, match="not a dated partition"):
        await pool.execute(
            "SELECT plantcore_drop_partition($1::text::regclass, $2::text::regclass)",
            history.table,
            f"{history.table}_default",
        )
    with pytest.raises(asyncpg.RaiseError, match="not a dated partition"):
        await pool.execute(
            "SELECT plantcore_drop_partition($1::text::regclass, $2::text::regclass)",
            history.table,
            minutes_table(history.table) + "_default",
        )
