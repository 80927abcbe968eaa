"""The minute and hour rollups, checked against a computation from the raw rows in Python.

The refresher is driven one step at a time. Samples from before a history
table was made are late for its rollups (their minutes are noted pending);
samples ahead of the database clock wait for the watermark, which these tests
move to a given minute (``advance(to=...)``) as the clock would.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from domain.messages import Quality, Sample, TagValue, TelemetryBatch
from projections.history import HistoryWriter
from projections.history_schema import (
    ensure_history_schema,
    hours_table,
    minutes_pending_table,
    minutes_table,
    rollup_mark_table,
)
from projections.rollup_refresher import RollupRefresher
from projections.rollups import RollupStatements
from tests.integration.projections.conftest import History
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CHECKED = ("unit", "count", "good_count", "first_time", "last_time", "first_value", "last_value")
CLOSE = ("min", "max", "avg", "twa")


@dataclass(frozen=True)
class Raw:
    time: datetime
    tag: str
    value: float | None
    quality: str
    unit: str


def floor(ts: datetime, width: timedelta) -> datetime:
    return EPOCH + (ts - EPOCH) // width * width


def expected(raw: Sequence[Raw], width: timedelta) -> dict[tuple[str, datetime], dict[str, Any]]:
    """The rollup of ``raw`` per tag and bucket, by docs/history.md's rules."""
    series: dict[str, list[Raw]] = defaultdict(list)
    for row in sorted(raw, key=lambda r: r.time):
        series[row.tag].append(row)
    buckets: dict[tuple[str, datetime], list[tuple[Raw, float]]] = defaultdict(list)
    for tag, rows in series.items():
        for n, row in enumerate(rows):
            minute_end = floor(row.time, MINUTE) + MINUTE
            until = min(rows[n + 1].time, minute_end) if n + 1 < len(rows) else minute_end
            held = (until - row.time).total_seconds()
            buckets[(tag, floor(row.time, width))].append((row, held))
    result = {}
    for key, rows_held in buckets.items():
        valued = [(r, h) for r, h in rows_held if r.quality == "good" and r.value is not None]
        values = [r.value for r, _ in valued if r.value is not None]
        covered = sum(h for _, h in valued)
        result[key] = {
            "unit": rows_held[-1][0].unit,
            "count": len(rows_held),
            "good_count": sum(1 for r, _ in rows_held if r.quality == "good"),
            "min": min(values, default=None),
            "max": max(values, default=None),
            "avg": sum(values) / len(values) if values else None,
            "first_value": valued[0][0].value if valued else None,
            "first_time": valued[0][0].time if valued else None,
            "last_value": valued[-1][0].value if valued else None,
            "last_time": valued[-1][0].time if valued else None,
            "twa": sum(r.value * h for r, h in valued if r.value is not None) / covered
            if covered
            else None,
        }
    return result


async def rollup(pool: asyncpg.Pool, table: str, device: str) -> dict[tuple[str, datetime], Any]:
    rows = await pool.fetch(f"SELECT * FROM {table} WHERE device = $1", device)  # noqa: S608
    return {(row["tag"], row["bucket"]): dict(row) for row in rows}


async def assert_rollups_match(
    pool: asyncpg.Pool, history: History, device: str, raw: Sequence[Raw]
) -> None:
    """The minutes of ``device`` are exactly those of ``raw``, and so are its hours that
    ended before the hour of the rollups' ``done``: the hour in progress has none yet."""
    done, _ = await mark(pool, history)
    for table, width in (
        (minutes_table(history.table), MINUTE),
        (hours_table(history.table), HOUR),
    ):
        found = await rollup(pool, table, device)
        wanted = {
            key: value
            for key, value in expected(raw, width).items()
            if width == MINUTE or key[1] + HOUR <= done
        }
        assert found.keys() == wanted.keys(), table
        for key, want in wanted.items():
            got = found[key]
            assert {c: got[c] for c in CHECKED} == {c: want[c] for c in CHECKED}, (table, key)
            for column in CLOSE:
                if want[column] is None:
                    assert got[column] is None, (table, key, column)
                else:
                    assert got[column] == pytest.approx(want[column], rel=1e-9), (
                        table,
                        key,
                        column,
                    )


def as_batches(device: str, raw: Sequence[Raw], per_batch: int) -> list[TelemetryBatch]:
    ordered = list(raw)
    return [
        TelemetryBatch(
            device,
            part[-1].time,
            tuple(Sample(r.tag, r.value, Quality(r.quality), r.unit, r.time) for r in part),
        )
        for part in (ordered[i : i + per_batch] for i in range(0, len(ordered), per_batch))
    ]


def generated(start: datetime, seconds: int, seed: int) -> list[Raw]:
    """Two tags at uneven times, with bad, uncertain and good-null samples and two units."""
    rng = random.Random(seed)
    raw = []
    for tag, unit in (("temp", "degC"), ("speed", "rpm")):
        at = start
        while at < start + timedelta(seconds=seconds):
            quality = rng.choices(["good", "bad", "uncertain"], [8, 1, 1])[0]
            value: TagValue = None if rng.random() < 0.05 else round(rng.uniform(0, 100), 3)
            # A unit edited in the plant file: the bucket's last sample names it.
            shown = unit if rng.random() < 0.7 else unit.upper()
            raw.append(Raw(at, tag, None if value is None else float(value), quality, shown))
            at += timedelta(milliseconds=rng.randrange(200, 9000))
    return raw


def month_start() -> datetime:
    """Midnight of this month's first day, UTC: a day, a month and an hour begin there."""
    return datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def tomorrow() -> datetime:
    """Next midnight, UTC: ahead of the database clock, within the partitions made ahead."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=1)


async def refresh_past(refresher: RollupRefresher, end: datetime) -> None:
    """A pass whose watermark is at ``end`` at least, wherever the database clock is."""
    await refresher.advance(to=end)
    await refresher.catch_up()


def before(raw: Sequence[Raw], done: datetime) -> list[Raw]:
    return [r for r in raw if r.time < done]


def fetches(device: str, raw: Sequence[Raw], per_fetch: int) -> list[list[TelemetryBatch]]:
    """``raw`` in time order, as a consumer's fetches of ``per_fetch`` batches of 3 samples."""
    batches = as_batches(device, sorted(raw, key=lambda r: r.time), per_batch=3)
    return [batches[i : i + per_fetch] for i in range(0, len(batches), per_fetch)]


async def pending(pool: asyncpg.Pool, history: History) -> int:
    count: int = await pool.fetchval(
        f"SELECT count(*) FROM {minutes_pending_table(history.table)}"  # noqa: S608
    )
    return count


async def mark(pool: asyncpg.Pool, history: History) -> tuple[datetime, datetime]:
    row = await pool.fetchrow(
        f"SELECT done, watermark FROM {rollup_mark_table(history.table)}"  # noqa: S608
    )
    assert row is not None
    return row["done"], row["watermark"]


@pytest.fixture
def writer(pool: asyncpg.Pool, history: History) -> HistoryWriter:
    return HistoryWriter(pool, history.partitions, table=history.table)


@pytest.fixture
def refresher(pool: asyncpg.Pool, history: History) -> RollupRefresher:
    return RollupRefresher(pool, table=history.table)


async def test_late_samples_across_partitions_and_redelivery(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter, refresher: RollupRefresher
) -> None:
    device = unique("press")
    start = month_start() - timedelta(minutes=3)
    raw = generated(start, seconds=6 * 60, seed=15)
    on_time = [r for n, r in enumerate(raw) if n % 5]
    late = [r for n, r in enumerate(raw) if not n % 5]  # into minutes already rolled up

    # Older than the table: each minute is noted pending, then computed by a refresh.
    for fetched in fetches(device, on_time, per_fetch=3):
        await writer.write(fetched)
    assert await pending(pool, history) > 0
    end = start + 7 * MINUTE
    await refresh_past(refresher, end)
    await assert_rollups_match(pool, history, device, on_time)
    assert await pending(pool, history) == 0

    assert await writer.write(as_batches(device, late, per_batch=11)) == len(late)
    await refresh_past(refresher, end)
    await assert_rollups_match(pool, history, device, raw)

    tables = (minutes_table(history.table), hours_table(history.table))
    computed = [await rollup(pool, table, device) for table in tables]
    assert await writer.write(as_batches(device, on_time, per_batch=7)) == 0  # delivered again
    assert await pending(pool, history) == 0  # so no minute is computed again
    await refresh_past(refresher, end)
    assert [await rollup(pool, table, device) for table in tables] == computed

    # The data crosses a day, a month and an hour: each side in its own partition.
    placed = await pool.fetch(
        f"SELECT DISTINCT tableoid::regclass::text AS part FROM {minutes_table(history.table)}"  # noqa: S608
        " WHERE device = $1",
        device,
    )
    assert {row["part"] for row in placed} == {
        f"{minutes_table(history.table)}_p{start:%Y%m}",
        f"{minutes_table(history.table)}_p{month_start():%Y%m}",
    }


async def test_passes_without_writes_complete_each_minute_the_watermark_passes(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter, refresher: RollupRefresher
) -> None:
    device = unique("press")
    start = tomorrow() + timedelta(days=1, minutes=-3)  # across a day and an hour
    raw = generated(start, seconds=6 * 60, seed=16)
    for fetched in fetches(device, raw, per_fetch=4):
        await writer.write(fetched)
    assert await pending(pool, history) == 0  # ahead of the watermark: nothing late
    assert await rollup(pool, minutes_table(history.table), device) == {}

    # The plant has gone quiet: each pass completes the minutes the clock has passed.
    for minutes in range(1, 8):
        done = await refresher.advance(to=start + minutes * MINUTE)
        assert await refresher.catch_up() == done == start + minutes * MINUTE
        await assert_rollups_match(pool, history, device, before(raw, done))
    assert await mark(pool, history) == (done, done)


async def test_a_quality_change_ends_a_value_s_hold(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter, refresher: RollupRefresher
) -> None:
    device = unique("press")
    t0 = month_start() - timedelta(days=1) + timedelta(hours=12)
    raw = [
        Raw(t0, "temp", 10.0, "good", "degC"),
        Raw(t0 + timedelta(seconds=15), "temp", 10.0, "bad", "degC"),  # 15 s of 10
        Raw(t0 + timedelta(seconds=30), "temp", 40.0, "good", "degC"),  # 30 s of 40
        Raw(t0 + timedelta(seconds=70), "temp", None, "good", "degC"),  # no value
        Raw(t0 + timedelta(seconds=80), "temp", 20.0, "uncertain", "degC"),
    ]

    await writer.write(as_batches(device, raw, per_batch=2))
    await refresher.refresh()

    minutes = await rollup(pool, minutes_table(history.table), device)
    first = minutes[("temp", t0)]
    assert (first["count"], first["good_count"]) == (3, 2)
    assert first["twa"] == pytest.approx((10 * 15 + 40 * 30) / 45)
    assert first["twa_seconds"] == pytest.approx(45)
    second = minutes[("temp", t0 + MINUTE)]
    assert (second["count"], second["good_count"], second["twa"]) == (2, 1, None)
    assert (second["min"], second["first_value"], second["last_time"]) == (None, None, None)
    await assert_rollups_match(pool, history, device, raw)


async def test_a_crash_between_the_two_steps_loses_nothing(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter, refresher: RollupRefresher
) -> None:
    device = unique("press")
    start = tomorrow() + 6 * HOUR
    raw = generated(start, seconds=5 * 60, seed=17)
    first = before(raw, start + 2 * MINUTE)
    held_back = first[::4]  # to come after step A, late
    for fetched in fetches(device, [r for r in first if r not in held_back], per_fetch=4):
        await writer.write(fetched)
    done, _ = await mark(pool, history)

    moved = await refresher.advance(to=start + 3 * MINUTE)  # step A; the process dies here
    assert await mark(pool, history) == (done, moved)
    assert await rollup(pool, minutes_table(history.table), device) == {}

    # Written after step A: the rows before its watermark are noted pending.
    await writer.write(as_batches(device, held_back, per_batch=5))
    for fetched in fetches(device, [r for r in raw if r not in first], per_fetch=4):
        await writer.write(fetched)
    assert await pending(pool, history) > 0

    # The next pass, by the database clock (behind these samples: the watermark stays).
    assert await refresher.refresh() == moved
    await assert_rollups_match(pool, history, device, before(raw, moved))
    assert await pending(pool, history) == 0
    await refresh_past(refresher, start + 6 * MINUTE)
    await assert_rollups_match(pool, history, device, raw)


async def test_writes_during_refreshes_lose_nothing(
    pool: asyncpg.Pool, history: History, refresher: RollupRefresher
) -> None:
    device = unique("press")
    start = tomorrow() + 8 * HOUR
    raw = generated(start, seconds=8 * 60, seed=18)
    fetched = fetches(device, raw, per_fetch=2)
    # Mostly in order, some fetches late, some delivered twice.
    rng = random.Random(18)
    order = sorted(range(len(fetched)), key=lambda n: n + rng.choice([0, 0, 0, -6, 9]))
    shares = [[fetched[n] for n in order[k::2]] for k in range(2)]
    shares[1] += shares[0][::5]

    async def write_share(share: list[list[TelemetryBatch]]) -> None:
        writer = HistoryWriter(pool, history.partitions, table=history.table)
        for batches in share:
            await writer.write(batches)

    async def refresh_minute_by_minute() -> None:
        for minutes in range(1, 10):
            await refresher.advance(to=start + minutes * MINUTE)
            await refresher.catch_up()

    await asyncio.gather(*(write_share(share) for share in shares), refresh_minute_by_minute())

    await refresh_past(refresher, start + 10 * MINUTE)
    await assert_rollups_match(pool, history, device, raw)


async def waiting_for_the_rollups_lock(pool: asyncpg.Pool, history: History) -> None:
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objid = $1::text::regclass::oid",
        rollup_mark_table(history.table),
    )
    assert waiting == 1


async def test_step_a_and_the_writes_wait_for_each_other(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter, refresher: RollupRefresher
) -> None:
    statements = RollupStatements(history.table)
    ahead = tomorrow() + 10 * HOUR
    device = unique("press")
    batch = TelemetryBatch(device, ahead, (Sample("speed", 1.0, Quality.GOOD, "rpm", ahead),))

    # A write in flight holds the lock shared: step A waits for its commit.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(statements.lock_for_write)
        step_a = asyncio.create_task(refresher.advance(to=ahead))
        await eventually(lambda: waiting_for_the_rollups_lock(pool, history))
        assert not step_a.done()
    assert await step_a == ahead

    # Step A in progress: a write waits for it, then finds its sample behind the new
    # watermark and notes it late.
    async with pool.acquire() as conn, conn.transaction():
        locks, lock, move = statements.advance
        await conn.execute(locks)
        await conn.execute(lock)
        await conn.fetchval(move, ahead + MINUTE)
        write = asyncio.create_task(writer.write([batch]))
        await eventually(lambda: waiting_for_the_rollups_lock(pool, history))
        assert not write.done()
    assert await write == 1
    assert await pending(pool, history) == 1


async def test_the_periodic_task_refreshes_on_its_own(
    pool: asyncpg.Pool, history: History, writer: HistoryWriter
) -> None:
    device = unique("press")
    raw = generated(month_start() - timedelta(days=1), seconds=3 * 60, seed=19)
    await writer.write(as_batches(device, raw, per_batch=20))

    task = asyncio.create_task(
        RollupRefresher(pool, table=history.table, period_seconds=0.05).keep_fresh()
    )
    try:
        await eventually(lambda: assert_rollups_match(pool, history, device, raw))
    finally:
        task.cancel()


async def test_an_existing_history_table_is_given_what_the_refresher_needs(
    pool: asyncpg.Pool, history: History, refresher: RollupRefresher
) -> None:
    table = history.table
    # As the writer that kept the rollups itself left it.
    for statement in (
        f"DROP TABLE {rollup_mark_table(table)}, {minutes_pending_table(table)}",
        f"DROP INDEX {table}_time_brin",
        f"CREATE TABLE {table}_1h_pending (device text, tag text, bucket timestamptz)",
    ):
        await pool.execute(statement)

    await ensure_history_schema(pool, table=table)
    done, watermark = await mark(pool, history)
    assert done == watermark <= datetime.now(UTC)
    assert done.second == done.microsecond == 0
    # Each partition has the time index, and the hours' old table is gone.
    indexed = await pool.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid"
        " JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_am a ON a.oid = c.relam"
        " WHERE i.inhparent = $1::text::regclass AND a.amname = 'brin'",
        table,
    )
    parts = await pool.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::text::regclass", table
    )
    assert indexed == parts > 1
    assert await pool.fetchval("SELECT to_regclass($1)", f"{table}_1h_pending") is None

    # Made again, the mark keeps its place.
    moved = await refresher.advance(to=tomorrow())
    await ensure_history_schema(pool, table=table)
    assert await mark(pool, history) == (done, moved)


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
async def test_a_refresh_period_of_zero_or_less_is_refused(
    pool: asyncpg.Pool, history: History, seconds: float
) -> None:
    with pytest.raises(ValueError, match="period_seconds must be more than 0"):
        RollupRefresher(pool, table=history.table, period_seconds=seconds)
