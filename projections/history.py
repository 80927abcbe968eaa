"""The history projection: telemetry samples into the ``samples`` table and its rollups.

Each fetched batch of messages is written in one transaction: its rows are
COPYed into a temporary staging table, then inserted with ``ON CONFLICT DO
NOTHING`` on the unique ``(device, tag, time)``, so a redelivered batch adds
nothing twice; the minutes the added rows fall in are computed again in the
same transaction, and the hours they fall in at most once per refresh period
(:mod:`projections.rollups`). Samples of tags
with a history policy are thinned first (:mod:`projections.history_filter`).
Each sample keeps its quality and unit. Status messages share the stream;
this projection ignores them. A batch that cannot be stored is dead-lettered
(:mod:`projections.consumer`): checked first (:mod:`projections.storable`), or
refused by PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from time import monotonic

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from domain.messages import MalformedMessage, Quality, TagValue, TelemetryBatch
from projections.consumer import Feed
from projections.history_filter import HistoryFilter, Row, SampleKey, Stored
from projections.history_schema import (
    Partitions,
    Period,
    check_table_name,
    hours_table,
    minutes_table,
)
from projections.rollups import RollupStatements
from projections.storable import check_telemetry
from projections.store_outage import POSTGRES_UNAVAILABLE, transaction
from support.clock import utc_now

COLUMNS = ("time", "device", "tag", "value", "quality", "unit")

# What a write fails with when PostgreSQL, or the encoding on the way to it,
# refuses the data itself; the same batch would fail the same way at every
# redelivery, so the samples at fault are dead-lettered. Data exceptions (class
# 22: bad encoding such as a NUL, a value out of range), integrity violations
# (class 23) and program limits (class 54: a tag name too long for the index);
# ValueError and OverflowError for what Python cannot encode (a lone surrogate,
# an integer beyond a double).
REFUSED_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    ValueError,
    OverflowError,
)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    time: datetime
    value: float | None
    quality: Quality


def stored_value(value: TagValue) -> float | None:
    """The column is double precision: booleans are stored as 0/1, no value as NULL."""
    return None if value is None else float(value)


def sample_rows(batch: TelemetryBatch) -> list[Row]:
    return [
        (s.ts, batch.device, s.tag, stored_value(s.value), s.quality.value, s.unit)
        for s in batch.samples
    ]


def decode_history(subject: str, data: bytes) -> TelemetryBatch | None:
    if not subject.startswith("plant.telemetry."):
        return None
    batch = TelemetryBatch.decode(data)
    if subject.rsplit(".", 1)[1] != batch.device:
        raise MalformedMessage(f"device {batch.device!r} does not match the subject")
    return check_telemetry(batch, utc_now())


class HistoryWriter:
    """Writes batches of telemetry into the history table made by ``ensure_history_schema``.

    ``partitions`` is the raw table's keeper (None: TimescaleDB makes its own
    chunks); ``history_filter`` thins the tags that have a history policy.
    The hours touched are computed again from their minutes by the first write
    at least ``hour_refresh_seconds`` after the last time (0: by every write),
    or by :meth:`refresh_hours`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        partitions: Partitions | None,
        *,
        table: str = "samples",
        history_filter: HistoryFilter | None = None,
        hour_refresh_seconds: float = 10.0,
    ) -> None:
        if not hour_refresh_seconds >= 0:
            raise ValueError(f"hour_refresh_seconds must be 0 or more, not {hour_refresh_seconds}")
        self._pool = pool
        self._hour_refresh_seconds = hour_refresh_seconds
        self._hours_refreshed_at: float | None = None  # monotonic; None: at the first write
        self._table = check_table_name(table)
        self._filter = history_filter
        self._partitions = (
            []
            if partitions is None
            else [
                partitions,
                Partitions(pool, table=minutes_table(table), period=Period.MONTH),
                Partitions(pool, table=hours_table(table), period=Period.YEAR),
            ]
        )
        self._staging = f"{table}_staging"
        self._rollups = RollupStatements(
            table, added=f"{table}_added_1m", taken=f"{table}_taken_1h"
        )
        columns = ", ".join(COLUMNS)
        # Per connection and emptied at each commit: pooled connections reuse them.
        self._create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._staging}"
            f" (LIKE {self._table}) ON COMMIT DELETE ROWS"
        )
        self._insert = (
            f"WITH added AS (INSERT INTO {self._table} ({columns})"  # noqa: S608 (checked names)
            f" SELECT {columns} FROM {self._staging} ON CONFLICT DO NOTHING"
            " RETURNING *),"
            f" noted AS ({self._rollups.note_added})"
            " SELECT count(*) FROM added"
        )
        self._references = (
            "SELECT k.device, k.tag, k.time AS at, s.time, s.value, s.quality"  # noqa: S608
            " FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(device, tag, time)"
            f" JOIN LATERAL (SELECT time, value, quality FROM {self._table}"
            " WHERE device = k.device AND tag = k.tag AND time <= k.time"
            " ORDER BY time DESC LIMIT 1) s ON true"
        )

    async def write(self, batches: Sequence[TelemetryBatch]) -> int:
        """Write every sample of ``batches`` in one transaction; returns the rows added."""
        rows = [row for batch in batches for row in sample_rows(batch)]
        selection = None
        if self._filter is not None:
            references = await self._read_references(self._filter.unplaced(rows))
            selection = self._filter.select(rows, references)
            rows = selection.rows
        if not rows:
            return 0
        # In the order the rollups' window sorts them by (device and tag bytewise,
        # then time): PostgreSQL's sort then finds them sorted in one pass.
        rows.sort(key=itemgetter(1, 2, 0))
        # A fetch's samples share a few hundred times: each keeper reads the set.
        times = {row[0] for row in rows}
        for partitions in self._partitions:
            await partitions.ensure_for(times)
        async with transaction(self._pool) as conn:
            await conn.execute(self._create_staging)
            await conn.execute(self._rollups.create_added)
            await conn.copy_records_to_table(self._staging, records=rows, columns=COLUMNS)
            added = int(await conn.fetchval(self._insert))
            if added:
                for statement in self._rollups.in_order:
                    await conn.execute(statement)
            refreshing = self._hours_due()
            if refreshing:
                await self._refresh_hours(conn)
        if refreshing:
            self._hours_refreshed_at = monotonic()
        if self._filter is not None and selection is not None:
            self._filter.remember(selection)
        return added

    async def refresh_hours(self) -> None:
        """Compute every pending hour again from its minutes now."""
        async with transaction(self._pool) as conn:
            await self._refresh_hours(conn)
        self._hours_refreshed_at = monotonic()

    def _hours_due(self) -> bool:
        return (
            self._hours_refreshed_at is None
            or monotonic() - self._hours_refreshed_at >= self._hour_refresh_seconds
        )

    async def _refresh_hours(self, conn: PoolConnectionProxy[asyncpg.Record]) -> None:
        for statement in self._rollups.refresh_hours:
            await conn.execute(statement)

    async def _read_references(self, unplaced: list[SampleKey]) -> dict[SampleKey, Stored]:
        """For each of ``unplaced``, the stored row at or before its time, if any."""
        if not unplaced:
            return {}
        devices, tags, times = zip(*unplaced, strict=True)
        found = await self._pool.fetch(self._references, list(devices), list(tags), list(times))
        return {
            (r["device"], r["tag"], r["at"]): Stored(r["time"], r["value"], r["quality"])
            for r in found
        }


async def query_history(
    pool: asyncpg.Pool,
    device: str,
    tag: str,
    start: datetime,
    end: datetime,
    *,
    table: str = "samples",
) -> list[HistoryPoint]:
    """The samples of one tag in ``[start, end)``, oldest first."""
    rows = await pool.fetch(
        f"SELECT time, value, quality FROM {check_table_name(table)}"  # noqa: S608 (checked name)
        " WHERE device = $1 AND tag = $2 AND time >= $3 AND time < $4 ORDER BY time",
        device,
        tag,
        start,
        end,
    )
    return [HistoryPoint(row["time"], row["value"], Quality(row["quality"])) for row in rows]


HISTORY_FEED: Feed[TelemetryBatch] = Feed(
    stream="TELEMETRY",
    durable="history",
    filter_subject="plant.telemetry.>",
    decode=decode_history,
    # PostgreSQL down, restarting or overloaded: the batch is retried later.
    # Anything else is a bug and stops the projection.
    transient=POSTGRES_UNAVAILABLE,
    refused=REFUSED_ERRORS,
)
