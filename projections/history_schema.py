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
  A partition is made by ``plantcore_add_day_partition(table, day)``, a function
  that runs with the table owner's rights: the role that writes samples (the
  runtime's, which owns nothing) may call it, and do no other DDL
  (ADR 0023).
- With the ``timescaledb`` extension available, a hypertable with compression
  and retention policies. That path cannot be tested here (TimescaleDB is not
  installable on these machines), so it stays a few plain statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

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

ADD_PARTITION_FUNCTION = "plantcore_add_day_partition(regclass, date)"

# Made apart, filled with what DEFAULT holds of that day, then attached: attaching
# refuses a range that DEFAULT still has rows in. It runs as its owner, so the
# search path is pinned and every name is qualified: a caller's objects are never
# found in their place.
_ADD_PARTITION = r"""
CREATE OR REPLACE FUNCTION plantcore_add_day_partition(parent regclass, day date)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    schema_name name;
    table_name name;
    part text;
    day_start timestamptz := day::timestamp AT TIME ZONE 'UTC';
    day_end timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = parent AND c.relkind = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plantcore: % is not a partitioned table', parent;
    END IF;
    part := table_name || '_p' || to_char(day, 'YYYYMMDD');
    PERFORM pg_advisory_xact_lock({lock_key});
    IF to_regclass(format('%I.%I', schema_name, part)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS)',
                   schema_name, part, schema_name, table_name);
    EXECUTE format('WITH moved AS (DELETE FROM %I.%I WHERE time >= $1 AND time < $2'
                   ' RETURNING *) INSERT INTO %I.%I SELECT * FROM moved',
                   schema_name, table_name || '_default', schema_name, part)
        USING day_start, day_end;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   schema_name, table_name, schema_name, part, day_start, day_end);
END
$$
"""

_NATIVE = [
    _CREATE_TABLE + " PARTITION BY RANGE (time)",
    _UNIQUE_INDEX,
    "CREATE TABLE IF NOT EXISTS {table}_default PARTITION OF {table} DEFAULT",
    _ADD_PARTITION,
    f"REVOKE ALL ON FUNCTION {ADD_PARTITION_FUNCTION} FROM PUBLIC",
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
        await self._pool.execute(
            "SELECT plantcore_add_day_partition($1::text::regclass, $2)", self._table, day
        )


async def ensure_history_schema(
    pool: asyncpg.Pool,
    *,
    table: str = "samples",
    days_ahead: int = 3,
    compress_after_days: int = 7,
    retention_days: int = 365,
) -> DailyPartitions | None:
    """Create the history table if needed (the table owner's work); idempotent.

    Returns :func:`open_history`'s partition keeper. The storage of an existing
    table is kept: installing TimescaleDB later does not convert it.
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
                    lock_key=_DDL_LOCK_KEY,
                )
            )
    return await open_history(pool, table=table, days_ahead=days_ahead)


class HistoryTableMissing(LookupError):
    """The history table was never created (``plantcore db init`` creates it)."""


async def open_history(
    pool: asyncpg.Pool, *, table: str = "samples", days_ahead: int = 3
) -> DailyPartitions | None:
    """The partition keeper of an existing history table, the next days' partitions made.

    Needs no right beyond calling ``plantcore_add_day_partition``. Returns None
    when the table is a TimescaleDB hypertable (TimescaleDB makes its own chunks).
    """
    kind = await pool.fetchval(
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
        check_table_name(table),
    )
    if kind is None:
        raise HistoryTableMissing(f"the history table {table!r} does not exist")
    if kind != "p":
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
