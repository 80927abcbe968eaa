"""Retention drops whole partitions past their table's span, recorded as events; young ones stay.

The drop function itself knows the days each table keeps, as the owner set them: the
runtime role, whoever holds its credential, can drop no partition that retention
keeps, nor change those days, nor drop one without the function's note of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import Quality, Sample, TelemetryBatch
from plantcore.db_init import HISTORY_TABLE, InitialisedDatabase, initialise_database
from projections.history import HistoryWriter
from projections.history_retention import DroppedPartition, drop_expired_partitions
from projections.history_schema import (
    Partitions,
    Period,
    RetentionPolicy,
    hours_table,
    minutes_table,
    open_history,
    partition_name,
)
from projections.rollup_refresher import RollupRefresher
from tests.integration.projections.conftest import History
from tests.support import unique

pytestmark = pytest.mark.integration

POLICY = RetentionPolicy(raw_days=30, minute_days=365, hour_days=1825)
DROP = "SELECT plantcore_drop_partition($1::text::regclass, $2::text::regclass)"


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
    writer = HistoryWriter(pool, history.partitions, table=raw)
    for n, ts in enumerate(times):
        samples = tuple(
            Sample(tag, float(n), Quality.GOOD, "", ts + timedelta(seconds=s))
            for tag in ("speed", "temp")
            for s in range(3)
        )
        assert await writer.write([TelemetryBatch(device, ts, samples)]) == 6
    await RollupRefresher(pool, table=raw).refresh()  # late samples: their minutes and hours
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

    dropped = await drop_expired_partitions(pool, POLICY, record, table=raw)

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
    assert await drop_expired_partitions(pool, POLICY, record, table=raw) == []


async def test_a_drop_whose_record_fails_is_undone(pool: asyncpg.Pool, history: History) -> None:
    old = at_noon(45)
    await history.partitions.ensure_days([old.date()])
    partition = f"{history.table}_p{old:%Y%m%d}"

    async def failing(drop: DroppedPartition) -> None:
        raise OSError("the event store is away")

    with pytest.raises(OSError, match="away"):
        await drop_expired_partitions(pool, POLICY, failing, table=history.table)

    assert partition in await partitions_of(pool, history.table)


async def test_the_default_partition_and_foreign_tables_are_refused(
    pool: asyncpg.Pool, history: History
) -> None:
    with pytest.raises(asyncpg.RaiseError, match="not a dated partition"):
        await pool.execute(DROP, history.table, f"{history.table}_default")
    with pytest.raises(asyncpg.RaiseError, match="not a dated partition"):
        await pool.execute(DROP, history.table, minutes_table(history.table) + "_default")


@pytest.fixture
async def runtime_pool(plant_roles: InitialisedDatabase) -> AsyncIterator[asyncpg.Pool]:
    """Connections as the runtime role of a database ``plantcore db init`` made."""
    connections = await asyncpg.create_pool(plant_roles.runtime_url, min_size=1, max_size=2)
    yield connections
    await connections.close()


# Partitions that retention keeps (30 days of samples, a year of minutes, five of hours):
# the table, its period and how many days ago the partition's day is. The raw day 30
# days ago still ends within the 30 days.
KEPT = [
    pytest.param(HISTORY_TABLE, Period.DAY, 0, id="samples-today"),
    pytest.param(HISTORY_TABLE, Period.DAY, 30, id="samples-30-days-ago"),
    pytest.param(minutes_table(HISTORY_TABLE), Period.MONTH, 0, id="minutes-this-month"),
    pytest.param(hours_table(HISTORY_TABLE), Period.YEAR, 0, id="hours-this-year"),
]


@pytest.mark.parametrize(("table", "period", "days_ago"), KEPT)
async def test_the_runtime_role_cannot_drop_a_partition_that_retention_keeps(
    runtime_pool: asyncpg.Pool, table: str, period: Period, days_ago: int
) -> None:
    # The attack: a stolen runtime credential erases recent history, and no event says so.
    partitions = await open_history(runtime_pool)
    assert partitions is not None
    ts = at_noon(days_ago)
    await partitions.ensure_days([ts.date()])
    device = unique("press")
    batch = TelemetryBatch(device, ts, (Sample("speed", 1.0, Quality.GOOD, "rpm", ts),))
    assert await HistoryWriter(runtime_pool, partitions).write([batch]) == 1
    await RollupRefresher(runtime_pool).refresh()
    part = period.partition_name(table, ts.date())

    with pytest.raises(asyncpg.RaiseError, match=rf"{part} ends at .* after the cutoff"):
        await runtime_pool.execute(DROP, table, part)

    assert part in await partitions_of(runtime_pool, table)
    held = await runtime_pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE device = $1 AND tableoid = $2::text::regclass",  # noqa: S608
        device,
        part,
    )
    assert held == 1


async def test_the_bounds_are_read_the_same_whatever_the_callers_session_says(
    runtime_pool: asyncpg.Pool,
) -> None:
    # Printed in a zone whose abbreviation (IST) the session reads as India's, a bound
    # would come back hours off, and a partition could go before its time.
    partitions = await open_history(runtime_pool)
    assert partitions is not None
    today = datetime.now(UTC).date()
    part = partition_name(HISTORY_TABLE, today)
    async with runtime_pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SET LOCAL TimeZone = 'Asia/Jerusalem'; SET LOCAL DateStyle = 'SQL, DMY';"
            " SET LOCAL timezone_abbreviations = 'India'"
        )
        end = f"{today + timedelta(days=1)} 00:00:00\\+00"
        with pytest.raises(asyncpg.RaiseError, match=rf"{part} ends at {end}, after the cutoff"):
            await conn.execute(DROP, HISTORY_TABLE, part)


async def test_the_runtime_role_drops_only_what_the_owners_retention_lets_expire(
    plant_roles: InitialisedDatabase, own_database: str, runtime_pool: asyncpg.Pool
) -> None:
    partitions = await open_history(runtime_pool)
    assert partitions is not None
    expired, kept = at_noon(8), at_noon(7)
    await partitions.ensure_days([expired.date(), kept.date()])
    device = unique("press")
    batches = [
        TelemetryBatch(device, ts, (Sample("speed", 1.0, Quality.GOOD, "rpm", ts),))
        for ts in (expired, kept)
    ]
    assert await HistoryWriter(runtime_pool, partitions).write(batches) == 2
    recorded: list[DroppedPartition] = []

    async def record(drop: DroppedPartition) -> None:
        recorded.append(drop)

    week = RetentionPolicy(raw_days=7)
    # The runtime's settings alone cannot shorten what the database keeps (30 days)...
    assert await drop_expired_partitions(runtime_pool, week, record) == []
    # ...nor does the owner's shorter retention shorten what the runtime's settings keep.
    await initialise_database(own_database, plant_roles.roles, retention=week)
    assert await drop_expired_partitions(runtime_pool, RetentionPolicy(), record) == []

    dropped = await drop_expired_partitions(runtime_pool, week, record)

    gone = partition_name(HISTORY_TABLE, expired.date())
    assert [(d.table, d.partition, d.rows, d.retention_days) for d in dropped] == [
        (HISTORY_TABLE, gone, 1, 7)
    ]
    assert recorded == dropped
    remaining = await partitions_of(runtime_pool, HISTORY_TABLE)
    assert gone not in remaining
    assert partition_name(HISTORY_TABLE, kept.date()) in remaining
    # The function's own note of the drop, whoever called it.
    owner = await asyncpg.connect(own_database)
    try:
        notes = await owner.fetch(
            "SELECT dropped_by::text, history_table, partition, range_start, range_end,"
            " row_count, retention_days FROM plantcore_history_drops"
        )
    finally:
        await owner.close()
    [drop] = dropped
    assert [tuple(note) for note in notes] == [
        (
            plant_roles.roles.runtime,
            f"public.{HISTORY_TABLE}",
            f"public.{gone}",
            drop.start,
            drop.end,
            1,
            7,
        )
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE plantcore_history_retention SET days = 1",
        "INSERT INTO plantcore_history_retention VALUES ('public', 'samples', 1)",
        "DELETE FROM plantcore_history_retention",
        "SELECT * FROM plantcore_history_drops",
        "INSERT INTO plantcore_history_drops SELECT * FROM plantcore_history_drops",
        "DELETE FROM plantcore_history_drops",
        "TRUNCATE plantcore_history_drops",
    ],
)
async def test_the_runtime_role_can_neither_shorten_the_retention_nor_touch_the_drops_notes(
    runtime_pool: asyncpg.Pool, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await runtime_pool.execute(statement)
    kept = await runtime_pool.fetch(
        "SELECT table_name::text, days FROM plantcore_history_retention ORDER BY days"
    )
    assert [tuple(row) for row in kept] == [
        (HISTORY_TABLE, 30),
        (minutes_table(HISTORY_TABLE), 365),
        (hours_table(HISTORY_TABLE), 1825),
    ]


@pytest.mark.usefixtures("history")  # the function, as this code makes it
async def test_a_table_without_a_retention_is_refused(pool: asyncpg.Pool) -> None:
    table = unique("not_history").replace("-", "_")
    await pool.execute(f"CREATE TABLE {table} (time timestamptz) PARTITION BY RANGE (time)")
    try:
        await pool.execute(
            f"CREATE TABLE {table}_old PARTITION OF {table}"
            " FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')"
        )
        with pytest.raises(asyncpg.RaiseError, match="not a history table with a retention"):
            await pool.execute(DROP, table, f"{table}_old")
        assert await partitions_of(pool, table) == {f"{table}_old"}
    finally:
        await pool.execute(f"DROP TABLE {table}")
