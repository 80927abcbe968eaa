"""The history projection: every telemetry sample into the ``samples`` table.

Each fetched batch of messages is written in one transaction: its rows are
COPYed into a temporary staging table, then inserted with ``ON CONFLICT DO
NOTHING`` on the unique ``(device, tag, time)``, so a redelivered batch adds
nothing twice. Status messages share the stream; this projection ignores them.
A batch that cannot be stored is dead-lettered (:mod:`projections.consumer`):
checked first (:mod:`projections.storable`), or refused by PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from domain.messages import MalformedMessage, Quality, TagValue, TelemetryBatch
from projections.consumer import Feed
from projections.history_schema import DailyPartitions, check_table_name
from projections.storable import check_telemetry
from projections.store_outage import POSTGRES_UNAVAILABLE, transaction
from support.clock import utc_now

Row = tuple[datetime, str, str, float | None, str]
COLUMNS = ("time", "device", "tag", "value", "quality")

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
        (s.ts, batch.device, s.tag, stored_value(s.value), s.quality.value) for s in batch.samples
    ]


def decode_history(subject: str, data: bytes) -> TelemetryBatch | None:
    if not subject.startswith("plant.telemetry."):
        return None
    batch = TelemetryBatch.decode(data)
    if subject.rsplit(".", 1)[1] != batch.device:
        raise MalformedMessage(f"device {batch.device!r} does not match the subject")
    return check_telemetry(batch, utc_now())


class HistoryWriter:
    """Writes batches of telemetry into the history table made by ``ensure_history_schema``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        partitions: DailyPartitions | None,
        *,
        table: str = "samples",
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._table = check_table_name(table)
        self._staging = f"{table}_staging"
        columns = ", ".join(COLUMNS)
        # Per connection and emptied at each commit: pooled connections reuse it.
        self._create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._staging}"
            f" (LIKE {self._table}) ON COMMIT DELETE ROWS"
        )
        self._insert = (
            f"INSERT INTO {self._table} ({columns})"  # noqa: S608 (checked names)
            f" SELECT {columns} FROM {self._staging} ON CONFLICT DO NOTHING"
        )

    async def write(self, batches: Sequence[TelemetryBatch]) -> int:
        """Write every sample of ``batches`` in one transaction; returns the rows added."""
        rows = [row for batch in batches for row in sample_rows(batch)]
        if not rows:
            return 0
        if self._partitions is not None:
            await self._partitions.ensure_for(row[0] for row in rows)
        async with transaction(self._pool) as conn:
            await conn.execute(self._create_staging)
            await conn.copy_records_to_table(self._staging, records=rows, columns=COLUMNS)
            status = await conn.execute(self._insert)
        return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


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
