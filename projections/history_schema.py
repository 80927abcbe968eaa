"""The history table of samples and the partitions it lives in.

Table ``samples(time, device, tag, value, quality)`` with a unique index on
``(device, tag, time)``, so that a redelivered batch inserts nothing twice; the
same queries work whichever way it is stored:

- Without TimescaleDB (this project's machines), natively range-partitioned by
  ``time``, one partition per UTC day (``samples_p20261123``), plus a DEFAULT
  partition so no sample is ever refused. Partitions are made ahead for the
  next days at start-up and on demand when a batch brings a day within a window
  around today; a sample further away (a PLC with a wrong clock) goes to DEFAULT.
  A partition made for a day that DEFAULT already holds rows of takes them over.
- With the ``timescaledb`` extension available, a hypertable with compression
  and retention policies. That path cannot be tested here (TimescaleDB is not
  installable on these machines), so it stays a few plain statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

# Serialises DDL on the history tables across processes: two writers making the
# same partition at once would otherwise fail on a duplicate name.
_DDL_LOCK_KEY = 0x706C616E74_02  # "plant" + history

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    time timestamptz NOT NULL,
    device text NOT NULL,
    tag text NOT NULL,
    value double precision,
    quality text NOT NULL
)"""

_UNIQUE_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {table}_device_tag_time ON {table} (device, tag, time)"
)

_NATIVE = [
    _CREATE_TABLE + " PARTITION BY RANGE (time)",
    _UNIQUE_INDEX,
    "CREATE TABLE IF NOT EXISTS {table}_default PARTITION OF {table} DEFAULT",
]

# TimescaleDB >= 2.13 (ON CONFLICT into compressed chunks needs >= 2.11).
_TIMESCALE = [
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    _CREATE_TABLE,
    _UNIQUE_INDEX,
    "SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'),"
    " if_not_exists => TRUE)",
    "ALTER TABLE {table} SET (timescaledb.compress,"
    " timescaledb.compress_segmentby = 'device, tag')",
    "SELECT add_compression_policy('{table}', INTERVAL '{compress_after_days} days',"
    " if_not_exists => TRUE)",
    "SELECT add_retention_policy('{table}', INTERVAL '{retention_days} days',"
    " if_not_exists => TRUE)",
]


def check_table_name(table: str) -> str:
    """Table names are put into SQL text, so only plain lower-case identifiers pass."""
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


def day_of(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day ``[start, end)`` that the partition of ``day`` holds."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


class DailyPartitions:
    """Makes the daily partitions of a natively partitioned history table.

    A day gets a partition on demand only within ``past_days`` before and
    ``future_days`` after today (UTC); other days are left to DEFAULT, so a bad
    clock cannot make thousands of partitions.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        table: str = "samples",
        past_days: int = 31,
        future_days: int = 7,
    ) -> None:
        self._pool = pool
        self._table = check_table_name(table)
        self._past = timedelta(days=past_days)
        self._future = timedelta(days=future_days)
        self._known: set[date] = set()

    async def ensure_for(self, times: Iterable[datetime]) -> None:
        """Make the partitions that samples at ``times`` should go to, if missing."""
        today = datetime.now(UTC).date()
        wanted = {day_of(ts) for ts in times} - self._known
        await self.ensure_days(d for d in wanted if today - self._past <= d <= today + self._future)

    async def ensure_days(self, days: Iterable[date]) -> None:
        for day in sorted(set(days) - self._known):
            await self._create(day)
            self._known.add(day)

    async def _create(self, day: date) -> None:
        name = partition_name(self._table, day)
        start, end = partition_bounds(day)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK_KEY)
            if await conn.fetchval("SELECT to_regclass($1)", name) is not None:
                return
            # Made apart, filled with what DEFAULT holds of that day, then attached:
            # attaching refuses a range that DEFAULT still has rows in.
            await conn.execute(f"CREATE TABLE {name} (LIKE {self._table} INCLUDING DEFAULTS)")
            await conn.execute(
                f"WITH moved AS (DELETE FROM {self._table}_default"  # noqa: S608 (checked names)
                " WHERE time >= $1 AND time < $2 RETURNING *)"
                f" INSERT INTO {name} SELECT * FROM moved",
                start,
                end,
            )
            await conn.execute(
                f"ALTER TABLE {self._table} ATTACH PARTITION {name}"
                f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )


async def ensure_history_schema(
    pool: asyncpg.Pool,
    *,
    table: str = "samples",
    days_ahead: int = 3,
    compress_after_days: int = 7,
    retention_days: int = 365,
) -> DailyPartitions | None:
    """Create the history table if needed; idempotent.

    Returns the partition keeper the writer needs, or None when the table is a
    TimescaleDB hypertable (TimescaleDB makes its own chunks). The storage of an
    existing table is kept: installing TimescaleDB later does not convert it.
    """
    check_table_name(table)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK_KEY)
        timescale = await _use_timescale(conn, table)
        for statement in _TIMESCALE if timescale else _NATIVE:
            await conn.execute(
                statement.format(
                    table=table,
                    compress_after_days=compress_after_days,
                    retention_days=retention_days,
                )
            )
    if timescale:
        return None
    partitions = DailyPartitions(pool, table=table)
    today = datetime.now(UTC).date()
    await partitions.ensure_days(today + timedelta(days=n) for n in range(days_ahead + 1))
    return partitions


async def _use_timescale(conn: PoolConnectionProxy[Record], table: str) -> bool:
    kind = await conn.fetchval(
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)", table
    )
    if kind is not None:
        return bool(kind != "p")  # an existing table keeps its storage
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    return bool(available)
