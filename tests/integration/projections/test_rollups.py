"""The minute and hour rollups, checked against a computation from the raw rows in Python."""

from __future__ import annotations

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
from projections.history_schema import hours_table, minutes_table
from tests.integration.projections.conftest import History
from tests.support import unique

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
    for table, width in (
        (minutes_table(history.table), MINUTE),
        (hours_table(history.table), HOUR),
    ):
        found = await rollup(pool, table, device)
        wanted = expected(raw, width)
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


async def test_rollups_across_partitions_late_samples_and_redelivery(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    start = month_start() - timedelta(minutes=3)
    raw = generated(start, seconds=6 * 60, seed=15)
    on_time = [r for n, r in enumerate(raw) if n % 5]
    late = [r for n, r in enumerate(raw) if not n % 5]  # interleaved into written minutes
    writer = HistoryWriter(pool, history.partitions, table=history.table, hour_refresh_seconds=0)

    first = as_batches(device, sorted(on_time, key=lambda r: r.time), per_batch=7)
    # A transaction per fetch of three batches: minutes grow by merges.
    for n in range(0, len(first), 3):
        await writer.write(first[n : n + 3])
    await assert_rollups_match(pool, history, device, on_time)

    assert await writer.write(as_batches(device, late, per_batch=11)) == len(late)
    await assert_rollups_match(pool, history, device, raw)

    before = [
        await rollup(pool, table, device)
        for table in (minutes_table(history.table), hours_table(history.table))
    ]
    assert await writer.write(first) == 0  # delivered again
    after = [
        await rollup(pool, table, device)
        for table in (minutes_table(history.table), hours_table(history.table))
    ]
    assert after == before

    # The data crosses a day, a month and an hour: each side in its own partition.
    placed = await pool.fetch(
        f"SELECT DISTINCT tableoid::regclass::text AS part FROM {minutes_table(history.table)}"  # noqa: S608
        " WHERE device = $1",
        device,
    )
    before_month = start.strftime("%Y%m")
    assert {row["part"] for row in placed} == {
        f"{minutes_table(history.table)}_p{before_month}",
        f"{minutes_table(history.table)}_p{month_start():%Y%m}",
    }


async def test_a_quality_change_ends_a_value_s_hold(pool: asyncpg.Pool, history: History) -> None:
    device = unique("press")
    t0 = month_start() - timedelta(days=1) + timedelta(hours=12)
    raw = [
        Raw(t0, "temp", 10.0, "good", "degC"),
        Raw(t0 + timedelta(seconds=15), "temp", 10.0, "bad", "degC"),  # 15 s of 10
        Raw(t0 + timedelta(seconds=30), "temp", 40.0, "good", "degC"),  # 30 s of 40
        Raw(t0 + timedelta(seconds=70), "temp", None, "good", "degC"),  # no value
        Raw(t0 + timedelta(seconds=80), "temp", 20.0, "uncertain", "degC"),
    ]
    writer = HistoryWriter(pool, history.partitions, table=history.table, hour_refresh_seconds=0)

    await writer.write(as_batches(device, raw, per_batch=2))

    minutes = await rollup(pool, minutes_table(history.table), device)
    first = minutes[("temp", t0)]
    assert (first["count"], first["good_count"]) == (3, 2)
    assert first["twa"] == pytest.approx((10 * 15 + 40 * 30) / 45)
    assert first["twa_seconds"] == pytest.approx(45)
    second = minutes[("temp", t0 + MINUTE)]
    assert (second["count"], second["good_count"], second["twa"]) == (2, 1, None)
    assert (second["min"], second["first_value"], second["last_time"]) == (None, None, None)
    await assert_rollups_match(pool, history, device, raw)


async def test_hours_are_computed_again_once_per_refresh_period(
    pool: asyncpg.Pool, history: History
) -> None:
    device = unique("press")
    start = month_start() - timedelta(days=1) + timedelta(hours=9)
    raw = generated(start, seconds=4 * 60, seed=38)
    early = [r for r in raw if r.time < start + 2 * MINUTE]
    writer = HistoryWriter(pool, history.partitions, table=history.table, hour_refresh_seconds=3600)
    hours = hours_table(history.table)

    await writer.write(as_batches(device, early, per_batch=50))  # the first write refreshes
    await assert_rollups_match(pool, history, device, early)
    computed = await rollup(pool, hours, device)

    later = [r for r in raw if r.time >= start + 2 * MINUTE]
    await writer.write(as_batches(device, later, per_batch=50))
    assert await rollup(pool, hours, device) == computed  # not within the period
    minutes = await rollup(pool, minutes_table(history.table), device)
    assert sum(m["count"] for m in minutes.values()) == len(raw)

    await writer.refresh_hours()
    await assert_rollups_match(pool, history, device, raw)
    pending = await pool.fetchval(
        f"SELECT count(*) FROM {hours}_pending WHERE device = $1",  # noqa: S608
        device,
    )
    assert pending == 0


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
async def test_a_refresh_period_below_zero_is_refused(
    pool: asyncpg.Pool, history: History, seconds: float
) -> None:
    with pytest.raises(ValueError, match="hour_refresh_seconds must be 0 or more"):
        HistoryWriter(pool, history.partitions, table=history.table, hour_refresh_seconds=seconds)
