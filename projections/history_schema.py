"""The history table of samples and the partitions it lives in.

Table ``samples(time, device, tag, value, quality, unit)`` with a unique index on
``(device, tag, time)``, so that a redelivered batch inserts nothing twice; the
same queries work whichever way it is stored:

- Without TimescaleDB (this project's machines), natively range-partitioned by
  ``time``, one partition per UTC day (``samples_p20261123``), plus a DEFAULT
  partition so no sample is ever refused. Partitions are made ahead for the
  next days at start-up and on demand when a batch brings a day within a window
  around today; a sample further away (a PLC with a wrong clock) goes to DEFAULT.
  A partition made for a day that DEFAULT already holds rows of takes them over.
  A partition is made by ``plantcore_add_partition(table, period, day)``, a
  function that runs with the table owner's rights: the role that writes
  samples (the runtime's, which owns nothing) may call it, and
  ``plantcore_drop_partition`` for retention, and do no other DDL (ADR 0023).
  The drop function knows each table's retention from ``plantcore_history_retention``
  (written by the owner, from :class:`RetentionPolicy`), refuses a partition that
  has not expired, and notes each drop in ``plantcore_history_drops`` (ADR 0039).
  The rollups ``samples_1m`` (a partition per month) and ``samples_1h`` (per
  year) are partitioned the same way (:mod:`projections.rollups`);
  ``samples_1m_pending``, the minutes that got a late sample, and
  ``samples_rollup_mark``, how far the rollups are complete, are plain tables.
  A BRIN index on ``time`` lets the rollups' refresher read the last seconds'
  rows without scanning the day.
- With the ``timescaledb`` extension available, a hypertable with compression
  and retention policies. That path cannot be tested here (TimescaleDB is not
  installable on these machines), so it stays a few plain statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

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
    quality text NOT NULL,
    unit text NOT NULL DEFAULT ''
)"""

# A table made before units were stored gets the column (empty for its old rows).
_ADD_UNIT = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT ''"

_UNIQUE_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {table}_device_tag_time ON {table} (device, tag, time)"
)

# The refresher reads a time range of the whole table every few seconds. Rows arrive
# in time order, so a block range index costs next to nothing to keep, and pages not
# summarised yet (the newest) are always read: the range costs its own pages, not the day's.
_TIME_INDEX = (
    "CREATE INDEX IF NOT EXISTS {table}_time_brin ON {table}"
    " USING brin (time) WITH (autosummarize = on)"
)

# When an hour ends, the refresher reads its minutes across every tag by time: the
# same kind of index on the minutes' buckets keeps that to the hour's own pages.
_MINUTE_INDEX = (
    "CREATE INDEX IF NOT EXISTS {table}_1m_bucket_brin ON {table}_1m"
    " USING brin (bucket) WITH (autosummarize = on)"
)

# Rollup buckets are aligned to this origin by date_bin(), which, unlike date_trunc(),
# does not depend on the session's time zone.
BUCKET_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

# The rollups of a history table: one row per device, tag and minute or hour
# (:mod:`projections.rollups` says what each column holds). ``value_count``,
# ``sum``, ``twa_seconds`` and the last four are what a minute is merged with
# and an hour composed from its minutes with.
_CREATE_ROLLUP = """
CREATE TABLE IF NOT EXISTS {rollup} (
    bucket timestamptz NOT NULL,
    device text NOT NULL,
    tag text NOT NULL,
    unit text NOT NULL DEFAULT '',
    count integer NOT NULL,
    good_count integer NOT NULL,
    min double precision,
    max double precision,
    avg double precision,
    first_value double precision,
    first_time timestamptz,
    last_value double precision,
    last_time timestamptz,
    twa double precision,
    value_count integer NOT NULL,
    sum double precision,
    twa_seconds double precision NOT NULL,
    first_sample_time timestamptz NOT NULL,
    last_sample_time timestamptz NOT NULL,
    last_held_value double precision,
    PRIMARY KEY (device, tag, bucket)
)"""

ADD_PARTITION_FUNCTION = "plantcore_add_partition(regclass, text, date)"

# Made apart, filled with what DEFAULT holds of that period, then attached:
# attaching refuses a range that DEFAULT still has rows in. It runs as its owner,
# so the search path is pinned and every name is qualified: a caller's objects
# are never found in their place. The range is on the table's partition key.
_ADD_PARTITION = r"""
CREATE OR REPLACE FUNCTION plantcore_add_partition(parent regclass, period text, day date)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    schema_name name;
    table_name name;
    key_column name;
    part text;
    first_day date;
    next_day date;
    range_start timestamptz;
    range_end timestamptz;
BEGIN
    SELECT n.nspname, c.relname, a.attname INTO schema_name, table_name, key_column
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_partitioned_table p ON p.partrelid = c.oid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
     WHERE c.oid = parent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plantcore: % is not a partitioned table', parent;
    END IF;
    CASE period
        WHEN 'day' THEN
            first_day := day;
            next_day := day + 1;
            part := table_name || '_p' || to_char(day, 'YYYYMMDD');
        WHEN 'month' THEN
            first_day := date_trunc('month', day)::date;
            next_day := (first_day + interval '1 month')::date;
            part := table_name || '_p' || to_char(day, 'YYYYMM');
        WHEN 'year' THEN
            first_day := date_trunc('year', day)::date;
            next_day := (first_day + interval '1 year')::date;
            part := table_name || '_p' || to_char(day, 'YYYY');
        ELSE
            RAISE EXCEPTION 'plantcore: % is not a partition period', period;
    END CASE;
    range_start := first_day::timestamp AT TIME ZONE 'UTC';
    range_end := next_day::timestamp AT TIME ZONE 'UTC';
    PERFORM pg_advisory_xact_lock({lock_key});
    IF to_regclass(format('%I.%I', schema_name, part)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS)',
                   schema_name, part, schema_name, table_name);
    EXECUTE format('WITH moved AS (DELETE FROM %I.%I WHERE %I >= $1 AND %I < $2'
                   ' RETURNING *) INSERT INTO %I.%I SELECT * FROM moved',
                   schema_name, table_name || '_default', key_column, key_column,
                   schema_name, part)
        USING range_start, range_end;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   schema_name, table_name, schema_name, part, range_start, range_end);
END
$$
"""

DROP_PARTITION_FUNCTION = "plantcore_drop_partition(regclass, regclass)"

# How many days each history table keeps, by schema and name: the owner's to write
# (``plantcore db init``, from the settings), what ``plantcore_drop_partition`` obeys.
RETENTION_TABLE = "plantcore_history_retention"
_CREATE_RETENTION = """
CREATE TABLE IF NOT EXISTS {schema}.plantcore_history_retention (
    table_schema name NOT NULL,
    table_name name NOT NULL,
    days integer NOT NULL CHECK (days >= 1),
    PRIMARY KEY (table_schema, table_name)
)"""

# Every partition ``plantcore_drop_partition`` dropped, noted by the function itself in
# the drop's transaction: no drop without this trace, whoever called it.
DROPS_TABLE = "plantcore_history_drops"
_CREATE_DROPS = """
CREATE TABLE IF NOT EXISTS {schema}.plantcore_history_drops (
    dropped_at timestamptz NOT NULL,
    dropped_by name NOT NULL,
    history_table text NOT NULL,
    partition text NOT NULL,
    range_start timestamptz NOT NULL,
    range_end timestamptz NOT NULL,
    row_count bigint NOT NULL,
    retention_days integer NOT NULL
)"""

# The retention policy's one way to remove history: a whole partition of a history
# table (never DEFAULT, never a row), dropped by its owner once its whole range is
# older than that table's retention, and noted. Returns the rows it held. The time
# zone and date style are pinned so that the bounds, printed as text, read back
# exactly whatever the caller's session says (an abbreviation such as IST could
# otherwise shift them by hours).
_DROP_PARTITION = r"""
CREATE OR REPLACE FUNCTION plantcore_drop_partition(parent regclass, part regclass)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $$
DECLARE
    kept integer;
    bounds text[];
    part_end timestamptz;
    cutoff timestamptz;
    held bigint;
BEGIN
    PERFORM pg_advisory_xact_lock({lock_key});
    SELECT r.days INTO kept
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN {schema}.plantcore_history_retention r
        ON r.table_schema = n.nspname AND r.table_name = c.relname
     WHERE c.oid = parent AND c.relkind = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plantcore: % is not a history table with a retention', parent;
    END IF;
    SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                        'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') INTO bounds
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = parent AND i.inhrelid = part;
    IF bounds IS NULL THEN
        RAISE EXCEPTION 'plantcore: % is not a dated partition of %', part, parent;
    END IF;
    part_end := bounds[2]::timestamptz;
    cutoff := now() - make_interval(days => kept);
    IF part_end > cutoff THEN
        RAISE EXCEPTION 'plantcore: % ends at %, after the cutoff % (% keeps % days)',
            part, part_end, cutoff, parent, kept;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', part) INTO held;
    INSERT INTO {schema}.plantcore_history_drops (dropped_at, dropped_by, history_table,
            partition, range_start, range_end, row_count, retention_days)
        VALUES (now(), session_user, parent::text, part::text, bounds[1]::timestamptz,
                part_end, held, kept);
    EXECUTE format('DROP TABLE %s', part);
    RETURN held;
END
$$
"""

_SET_RETENTION = """
INSERT INTO plantcore_history_retention (table_schema, table_name, days)
VALUES (current_schema(), $1, $2)
ON CONFLICT (table_schema, table_name) DO UPDATE SET days = excluded.days
"""

# The minutes that got a sample from before the rollups' watermark (a late one), to be
# computed again by the next refresh (:mod:`projections.rollup_refresher`).
_CREATE_MINUTES_PENDING = """
CREATE TABLE IF NOT EXISTS {table}_1m_pending (
    device text NOT NULL,
    tag text NOT NULL,
    bucket timestamptz NOT NULL,
    PRIMARY KEY (device, tag, bucket)
)"""

# One row: the rollups are complete before ``done``; samples before ``watermark`` are
# noted as late by the writer. Both start at the minute the table is made.
_CREATE_ROLLUP_MARK = """
CREATE TABLE IF NOT EXISTS {table}_rollup_mark (
    done timestamptz NOT NULL,
    watermark timestamptz NOT NULL CHECK (watermark >= done)
)"""
_START_ROLLUP_MARK = f"""
INSERT INTO {{table}}_rollup_mark (done, watermark)
SELECT minute, minute FROM date_bin('1 minute', now(), {BUCKET_ORIGIN}) AS minute
WHERE NOT EXISTS (SELECT FROM {{table}}_rollup_mark)
"""  # noqa: S608 (constants)
# Where the rollups are kept: made for each history table, whatever its storage.
_ROLLUP_BOOKKEEPING = [
    _CREATE_MINUTES_PENDING,
    _CREATE_ROLLUP_MARK,
    _START_ROLLUP_MARK,
    # Hours were once noted here by the writer; the refresher computes them now.
    "DROP TABLE IF EXISTS {table}_1h_pending",
]

# Made whatever the storage: the runtime role checks at start that each of its tables exists.
_RETENTION_TABLES = [_CREATE_RETENTION, _CREATE_DROPS]

_NATIVE = [
    *_RETENTION_TABLES,
    _CREATE_TABLE + " PARTITION BY RANGE (time)",
    _ADD_UNIT,
    _UNIQUE_INDEX,
    _TIME_INDEX,
    "CREATE TABLE IF NOT EXISTS {table}_default PARTITION OF {table} DEFAULT",
    *(
        statement.replace("{rollup}", rollup)
        for rollup in ("{table}_1m", "{table}_1h")
        for statement in (
            _CREATE_ROLLUP + " PARTITION BY RANGE (bucket)",
            "CREATE TABLE IF NOT EXISTS {rollup}_default PARTITION OF {rollup} DEFAULT",
        )
    ),
    _MINUTE_INDEX,
    *_ROLLUP_BOOKKEEPING,
    # Its first version made days only; a database from then loses it here.
    "DROP FUNCTION IF EXISTS plantcore_add_day_partition(regclass, date)",
    _ADD_PARTITION,
    f"REVOKE ALL ON FUNCTION {ADD_PARTITION_FUNCTION} FROM PUBLIC",
    _DROP_PARTITION,
    f"REVOKE ALL ON FUNCTION {DROP_PARTITION_FUNCTION} FROM PUBLIC",
]

# TimescaleDB >= 2.13 (ON CONFLICT into compressed chunks needs >= 2.11).
_TIMESCALE = [
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    *_RETENTION_TABLES,
    _CREATE_TABLE,
    _ADD_UNIT,
    _UNIQUE_INDEX,
    _CREATE_ROLLUP.replace("{rollup}", "{table}_1m"),
    _CREATE_ROLLUP.replace("{rollup}", "{table}_1h"),
    _MINUTE_INDEX,
    *_ROLLUP_BOOKKEEPING,
    "SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'),"
    " if_not_exists => TRUE)",
    "ALTER TABLE {table} SET (timescaledb.compress,"
    " timescaledb.compress_segmentby = 'device, tag')",
    "SELECT add_compression_policy('{table}', INTERVAL '{compress_after_days} days',"
    " if_not_exists => TRUE)",
    # The rollups are hypertables too, chunked as the native path partitions them, so
    # that each table's retention drops whole chunks (ADR 0052).
    "SELECT create_hypertable('{table}_1m', by_range('bucket', INTERVAL '30 days'),"
    " if_not_exists => TRUE, migrate_data => TRUE)",
    "SELECT create_hypertable('{table}_1h', by_range('bucket', INTERVAL '365 days'),"
    " if_not_exists => TRUE, migrate_data => TRUE)",
    # Removed and added again: the days given now replace those of an earlier init.
    *(
        f"SELECT remove_retention_policy('{{table}}{suffix}', if_exists => TRUE)"
        f"; SELECT add_retention_policy('{{table}}{suffix}', INTERVAL '{{{days}}} days')"
        for suffix, days in (("", "raw_days"), ("_1m", "minute_days"), ("_1h", "hour_days"))
    ),
]


def check_table_name(table: str) -> str:
    """Table names are put into SQL text, so only plain lower-case identifiers pass."""
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


def minutes_table(table: str) -> str:
    """The per-minute rollup of history table ``table``."""
    return f"{check_table_name(table)}_1m"


def hours_table(table: str) -> str:
    """The per-hour rollup of history table ``table``."""
    return f"{check_table_name(table)}_1h"


def minutes_pending_table(table: str) -> str:
    """The minutes of ``table`` that got a late sample since the last refresh."""
    return f"{minutes_table(table)}_pending"


def rollup_mark_table(table: str) -> str:
    """The one row that says how far ``table``'s rollups are complete."""
    return f"{check_table_name(table)}_rollup_mark"


def history_tables(table: str) -> tuple[str, ...]:
    """Every table made for history table ``table``: itself, its rollups and their marks."""
    return (
        check_table_name(table),
        minutes_table(table),
        hours_table(table),
        minutes_pending_table(table),
        rollup_mark_table(table),
    )


def day_of(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def partition_name(table: str, day: date) -> str:
    return Period.DAY.partition_name(table, day)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many days each history table keeps."""

    raw_days: int = 30
    minute_days: int = 365
    hour_days: int = 1825

    def spans(self, table: str) -> list[tuple[str, int]]:
        """Each of ``table``'s history tables, with the days it keeps."""
        return [
            (check_table_name(table), self.raw_days),
            (minutes_table(table), self.minute_days),
            (hours_table(table), self.hour_days),
        ]


DEFAULT_RETENTION = RetentionPolicy()


class Period(StrEnum):
    """How much time one partition of a table holds (``plantcore_add_partition``'s periods)."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"

    def start_of(self, day: date) -> date:
        if self is Period.DAY:
            return day
        if self is Period.MONTH:
            return day.replace(day=1)
        return day.replace(month=1, day=1)

    def partition_name(self, table: str, day: date) -> str:
        shape = {Period.DAY: "%Y%m%d", Period.MONTH: "%Y%m", Period.YEAR: "%Y"}[self]
        return f"{table}_p{day.strftime(shape)}"


class Partitions:
    """Makes the partitions of a natively partitioned history table, one per ``period``.

    A period gets a partition on demand only for times within ``past_days``
    before and ``future_days`` after today (UTC); other times are left to
    DEFAULT, so a bad clock cannot make thousands of partitions.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        table: str = "samples",
        period: Period = Period.DAY,
        past_days: int = 31,
        future_days: int = 7,
    ) -> None:
        self._pool = pool
        self._table = check_table_name(table)
        self._period = period
        self._past = timedelta(days=past_days)
        self._future = timedelta(days=future_days)
        self._known: set[date] = set()

    @property
    def table(self) -> str:
        return self._table

    async def ensure_for(self, times: Iterable[datetime]) -> None:
        """Make the partitions that rows at ``times`` should go to, if missing."""
        today = datetime.now(UTC).date()
        days = {day_of(ts) for ts in times}
        await self.ensure_days(d for d in days if today - self._past <= d <= today + self._future)

    async def ensure_days(self, days: Iterable[date]) -> None:
        for start in sorted({self._period.start_of(day) for day in days} - self._known):
            await self._pool.execute(
                "SELECT plantcore_add_partition($1::text::regclass, $2, $3)",
                self._table,
                self._period.value,
                start,
            )
            self._known.add(start)


async def ensure_history_schema(
    pool: asyncpg.Pool,
    *,
    table: str = "samples",
    days_ahead: int = 3,
    compress_after_days: int = 7,
    retention: RetentionPolicy = DEFAULT_RETENTION,
) -> Partitions | None:
    """Create the history table if needed (the table owner's work); idempotent.

    Sets the days each of its tables keeps to ``retention``'s. Returns
    :func:`open_history`'s partition keeper. The storage of an existing table
    is kept: installing TimescaleDB later does not convert it.
    """
    check_table_name(table)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK_KEY)
        timescale = await _use_timescale(conn, table)
        schema = await conn.fetchval("SELECT quote_ident(current_schema())")
        for statement in _TIMESCALE if timescale else _NATIVE:
            await conn.execute(
                statement.format(
                    table=table,
                    schema=schema,
                    compress_after_days=compress_after_days,
                    raw_days=retention.raw_days,
                    minute_days=retention.minute_days,
                    hour_days=retention.hour_days,
                    lock_key=_DDL_LOCK_KEY,
                )
            )
        await conn.executemany(_SET_RETENTION, retention.spans(table))
    return await open_history(pool, table=table, days_ahead=days_ahead)


class HistoryTableMissing(LookupError):
    """The history table was never created (``plantcore db init`` creates it)."""


async def open_history(
    pool: asyncpg.Pool, *, table: str = "samples", days_ahead: int = 3
) -> Partitions | None:
    """The partition keeper of an existing history table, the next days' partitions made.

    Needs no right beyond calling ``plantcore_add_partition``. Returns None
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
    partitions = Partitions(pool, table=table)
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
