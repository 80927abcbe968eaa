"""The history projection: telemetry samples into the ``samples`` table and its rollups.

Each fetched batch of messages is written in one transaction: its rows are
COPYed into a temporary staging table, then inserted with ``ON CONFLICT DO
NOTHING`` on the unique ``(device, tag, time)``, so a redelivered batch adds
nothing twice; a row it adds from before the rollups' watermark (a late
sample) has its minute noted in the same statement, for the rollups' refresher
(:mod:`projections.rollups`, :mod:`projections.rollup_refresher`), which
computes the minutes and hours behind the writer. Samples of tags
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

import asyncpg

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
    The rollups are computed by a :class:`~projections.rollup_refresher.RollupRefresher`;
    the writer makes their partitions, for the times it writes, as it makes its own.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        partitions: Partitions | None,
        *,
        table: str = "samples",
        history_filter: HistoryFilter | None = None,
    ) -> None:
        self._pool = pool
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
        self._rollups = RollupStatements(table)
        columns = ", ".join(COLUMNS)
        # Per connection and emptied at each commit: pooled connections reuse them.
        self._create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._staging}"
            f" (LIKE {self._table}) ON COMMIT DELETE ROWS"
        )
        insert = (
            f"INSERT INTO {self._table} ({columns})"  # noqa: S608 (checked names)
            f" SELECT {columns} FROM {self._staging} ON CONFLICT DO NOTHING"
        )
        self._insert_on_time = insert
        self._insert_noting_late = (
            f"WITH added AS ({insert} RETURNING device, tag, time),"  # noqa: S608 (checked names)
            f" noted AS ({self._rollups.note_late})"
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
        # By device, tag and time: the order of the unique index they go into.
        rows.sort(key=itemgetter(1, 2, 0))
        # A fetch's samples share a few hundred times: each keeper reads the set.
        times = {row[0] for row in rows}
        for partitions in self._partitions:
            await partitions.ensure_for(times)
        async with transaction(self._pool) as conn:
            await conn.execute(self._create_staging)
            await conn.copy_records_to_table(self._staging, records=rows, columns=COLUMNS)
            # Held to the commit: the refresher's step A waits for this write, so the
            # watermark read after it stays where it is until then.
            await conn.execute(self._rollups.lock_for_write)
            watermark = await conn.fetchval(self._rollups.read_watermark)
            if min(times) < watermark:  # a late sample: its minute is noted
                added = int(await conn.fetchval(self._insert_noting_late))
            else:  # the usual fetch: nothing to note, no rows to return
                status = await conn.execute(self._insert_on_time)
                added = int(status.rsplit(" ", 1)[1])
        if self._filter is not None and selection is not None:
            self._filter.remember(selection)
        return added

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
