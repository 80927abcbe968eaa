"""Retention of the history: partitions older than their table's retention are dropped whole.

Each history table keeps its own span (``RetentionPolicy``: raw samples 30
days, minute rollups a year, hour rollups five years by default). A pass looks
at every dated partition of the three tables and drops those whose whole range
ended before the database's ``now()`` minus the table's retention, through the
owner's ``plantcore_drop_partition`` (the runtime role owns nothing, ADR 0023):
never a row at a time, and never the DEFAULT partition, which holds only
samples of clocks gone wrong.

The days are the longer of the runtime's policy and what the database keeps in
``plantcore_history_retention`` (set by ``plantcore db init``), which the drop
function enforces whoever calls it (ADR 0039): a runtime given longer days keeps
more at once, shorter days take effect only once ``db init`` writes them.

Each drop is recorded (``HistoryPartitionDropped``, with the table, the time
range and the rows it held) while the drop's transaction is still open: if the
record fails, the partition stays and the next pass tries again, so no data
leaves without its trace. A commit that fails after the record leaves the
partition to be dropped, and recorded, again at the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from projections.history_schema import RetentionPolicy
from projections.store_outage import POSTGRES_UNAVAILABLE, transaction

log = logging.getLogger(__name__)

# Partitions are a day long at the finest: once an hour drops each within the hour it expires.
RETENTION_EVERY = timedelta(hours=1)

# The bounds of a dated partition, as PostgreSQL prints them: FROM ('…') TO ('…'),
# and the days its table keeps: the policy's or the database's, whichever is longer.
_EXPIRED = r"""
SELECT c.oid::regclass::text AS partition,
    b.bounds[1]::timestamptz AS start, b.bounds[2]::timestamptz AS end,
    greatest($2, r.days) AS days
FROM pg_inherits i
JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace n ON n.oid = p.relnamespace
JOIN plantcore_history_retention r ON r.table_schema = n.nspname AND r.table_name = p.relname
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(
    pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'
) AS b(bounds)
WHERE i.inhparent = $1::text::regclass
    AND b.bounds[2]::timestamptz <= now() - make_interval(days => greatest($2, r.days))
ORDER BY 2
"""


@dataclass(frozen=True, slots=True)
class DroppedPartition:
    table: str
    partition: str
    start: datetime
    end: datetime
    rows: int
    retention_days: int


RecordDrop = Callable[[DroppedPartition], Awaitable[None]]


async def drop_expired_partitions(
    pool: asyncpg.Pool,
    policy: RetentionPolicy,
    record: RecordDrop,
    *,
    table: str = "samples",
) -> list[DroppedPartition]:
    """One retention pass: drop and record every partition past its table's retention."""
    dropped = []
    for name, days in policy.spans(table):
        if not await _natively_partitioned(pool, name):
            continue  # TimescaleDB's own retention policies keep its tables
        for row in await pool.fetch(_EXPIRED, name, days):
            async with transaction(pool) as conn:
                rows = await conn.fetchval(
                    "SELECT plantcore_drop_partition($1::text::regclass, $2::text::regclass)",
                    name,
                    row["partition"],
                )
                drop = DroppedPartition(
                    name, row["partition"], row["start"], row["end"], rows, row["days"]
                )
                await record(drop)
            dropped.append(drop)
    return dropped


async def _natively_partitioned(pool: asyncpg.Pool, table: str) -> bool:
    kind = await pool.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", table
    )
    return bool(kind == "p")


async def keep_retention(
    pool: asyncpg.Pool,
    policy: RetentionPolicy,
    record: RecordDrop,
    *,
    table: str = "samples",
    every: timedelta = RETENTION_EVERY,
) -> None:
    """A retention pass at once and then ``every`` so long; a pass that fails is tried next time."""
    while True:
        try:
            for drop in await drop_expired_partitions(pool, policy, record, table=table):
                log.info(
                    "history retention: dropped %s (%s to %s, %d rows, kept %d days)",
                    drop.partition,
                    drop.start.isoformat(),
                    drop.end.isoformat(),
                    drop.rows,
                    drop.retention_days,
                )
        except POSTGRES_UNAVAILABLE as exc:
            log.warning("history retention: pass not done, tried again later: %r", exc)
        await asyncio.sleep(every.total_seconds())
