"""The minute and hour rollups of a history table: the SQL of the writer and of the refresher.

The writer only inserts raw rows (:class:`projections.history.HistoryWriter`);
the rollups are computed behind it by a refresher that tracks its position
(:class:`projections.rollup_refresher.RollupRefresher`), with one row per
history table, ``<table>_rollup_mark (done, watermark)``:

- Rows from ``watermark`` on are not rolled up yet. A write takes
  ``pg_advisory_xact_lock_shared`` on the mark, then, in the statement that
  inserts its raw rows, notes in ``<table>_1m_pending`` the minute of each row
  it really added from before the watermark (a late sample: rare). A
  redelivered batch adds no row, so it notes nothing.
- Step A moves ``watermark`` to the start of the database clock's current
  minute, in a transaction of its own that takes the same lock exclusively: it
  waits for the writes in flight, and every write after it sees the new
  watermark. A device whose clock runs ahead of the server's sends rows at or
  after the watermark: they wait for the clock.
- Step B, in one transaction, computes every minute in ``[done, watermark)``
  from the raw rows, and again, whole, every pending minute it takes out; then,
  from its minutes, every hour that has ended before the watermark's hour and
  either got one of those minutes or ends in this step; and sets ``done`` to
  ``watermark``. Every raw row before ``done`` is in a minute, or its minute
  is pending: a crash between A and B loses nothing, since B covers
  ``[done, watermark)`` whenever it runs.

An hour is computed once it has ended, and again only for a late minute: the
hour in progress would otherwise be computed from all its minutes at every
minute (4,000 tags at minute 55 read 220,000 minute rows a minute). Its
buckets are served from its minutes meanwhile (:mod:`projections.history_query`),
so ``samples_1h`` holds the hours before ``done``'s hour, and nothing after.

A minute is always computed whole from its raw rows, so the result never
depends on the order they came in, and an hour whole from its minutes. The
rows of a minute are aggregated in one sort: the first and last values are
picked by markers the window over each minute sets, not by ordered aggregates
that would sort each group again, and device and tag are compared bytewise
(``COLLATE "C"``), which groups exactly as the default collation does (ADR 0038).

What each column holds (also in docs/history.md):

- ``count``: all samples of the bucket; ``good_count``: those of quality good.
- ``min``, ``max``, ``avg``, ``sum``, ``value_count``: over the good samples
  that have a value (a good ``null`` has none); NULL when there is none.
- ``first_value``/``first_time``, ``last_value``/``last_time``: the first and
  last of those good samples.
- ``twa``: the time-weighted average of those values. Each value holds from
  its sample until the next sample of the tag (of any quality: a sample that is
  not good ends the hold, and the time it covers counts for nothing) or until
  the end of its minute, whichever comes first. The time between a minute's
  start and its first sample is not covered: a bucket is computed from its own
  rows. ``twa_seconds`` is the time covered. An hour's ``twa`` is its minutes'
  ``twa`` weighted by their ``twa_seconds``: the same rule over the hour.
- ``unit``: the unit of the bucket's last sample.
- ``first_sample_time``, ``last_sample_time``: the bucket's first and last
  samples of any quality; ``last_held_value``: the value the last one holds to
  the minute's end (NULL when it is not good or has none).
"""

from __future__ import annotations

from projections.history_schema import (
    BUCKET_ORIGIN,
    check_table_name,
    hours_table,
    minutes_pending_table,
    minutes_table,
    rollup_mark_table,
)

ROLLUP_COLUMNS = (
    "bucket, device, tag, unit, count, good_count, min, max, avg, first_value, first_time,"
    " last_value, last_time, twa, value_count, sum, twa_seconds,"
    " first_sample_time, last_sample_time, last_held_value"
)
_REPLACE = " ON CONFLICT (device, tag, bucket) DO UPDATE SET " + ", ".join(
    f"{column} = excluded.{column}"
    for column in ROLLUP_COLUMNS.replace(" ", "").split(",")
    if column not in ("bucket", "device", "tag")
)

# The writers' and the refresher's lock on a table's rollups: the first number is
# plantcore's ("plnt"), the second the mark table's oid.
_LOCK_KEY = "1886154356, '{mark}'::regclass::oid::int"

# The aggregate of rows from ``_HELD_ROWS``: sorted by device, tag and bucket
# as they come, so it needs no sort of its own. Each "first" or "last" is the
# one row its marker picks, so max() returns that row's value.
_AGGREGATE = """
SELECT bucket, device, tag,
    max(unit) FILTER (WHERE closes) AS unit,
    count(*) AS count,
    count(*) FILTER (WHERE quality = 'good') AS good_count,
    min(good_value) AS min,
    max(good_value) AS max,
    avg(good_value) AS avg,
    max(good_value) FILTER (WHERE first_valued) AS first_value,
    min(time) FILTER (WHERE good_value IS NOT NULL) AS first_time,
    max(good_value) FILTER (WHERE last_valued) AS last_value,
    max(time) FILTER (WHERE good_value IS NOT NULL) AS last_time,
    sum(good_value * held) / nullif(sum(held) FILTER (WHERE good_value IS NOT NULL), 0) AS twa,
    count(good_value) AS value_count,
    sum(good_value) AS sum,
    coalesce(sum(held) FILTER (WHERE good_value IS NOT NULL), 0) AS twa_seconds,
    min(time) AS first_sample_time,
    max(time) AS last_sample_time,
    max(good_value) FILTER (WHERE closes) AS last_held_value
FROM ({rows}) rows_of_buckets
GROUP BY device, tag, bucket
"""

# Each row of ``source`` held until the next row of its minute, or the minute's
# end; ``closes`` marks a minute's last row, ``first_valued`` and
# ``last_valued`` its first and last good row with a value (times are unique
# per device and tag, so each marks one row). Both windows share one sort.
_HELD_ROWS = """
SELECT bucket, device, tag, time, unit, quality, good_value,
    extract(epoch FROM coalesce(next_time, bucket + INTERVAL '1 minute') - time)
        ::double precision AS held,
    next_time IS NULL AS closes,
    time = first_valued_time AS first_valued,
    time = last_valued_time AS last_valued
FROM (
    SELECT *,
        lead(time) OVER held AS next_time,
        min(time) FILTER (WHERE good_value IS NOT NULL) OVER minute AS first_valued_time,
        max(time) FILTER (WHERE good_value IS NOT NULL) OVER minute AS last_valued_time
    FROM (
        SELECT bucket, device COLLATE "C" AS device, tag COLLATE "C" AS tag, time, unit, quality,
            CASE WHEN quality = 'good' THEN value END AS good_value
        FROM ({source}) source
    ) valued
    WINDOW minute AS (PARTITION BY device, tag, bucket), held AS (minute ORDER BY time)
) windowed
"""

# The raw rows of a history table in their minutes, where ``condition`` holds.
_RAW_MINUTE_ROWS = (
    "SELECT date_bin('1 minute', time, {origin}) AS bucket, device, tag, time, value, quality,"
    " unit FROM {table} WHERE {condition}"
)


def minutes_from_raw(table: str, condition: str) -> str:
    """A query of the minute rows (``ROLLUP_COLUMNS``) of ``table``'s raw rows where
    ``condition`` holds, by the rollups' rule: what a refresh would store for them."""
    return _AGGREGATE.format(
        rows=_HELD_ROWS.format(
            source=_RAW_MINUTE_ROWS.format(
                origin=BUCKET_ORIGIN, table=check_table_name(table), condition=condition
            )
        )
    )


# A refresh's minutes: those of [done, watermark) ($1, $2) from their rows, and each
# pending minute from before them whole from its rows.
_REFRESHED_ROWS = (
    _RAW_MINUTE_ROWS.replace("{condition}", "time >= $1 AND time < $2")
    + """
UNION ALL
SELECT t.bucket, s.device, s.tag, s.time, s.value, s.quality, s.unit
FROM {taken_1m} t
JOIN {table} s ON s.device = t.device AND s.tag = t.tag
    AND s.time >= t.bucket AND s.time < t.bucket + INTERVAL '1 minute'
WHERE t.bucket < $1
"""
)

# A no-op update rather than DO NOTHING: it locks the pending row, so a refresh
# that would take it waits for this write, and computes its minute from a later
# statement that sees the write's rows.
_NOTE_LATE = """
INSERT INTO {pending} (device, tag, bucket)
SELECT DISTINCT device, tag, date_bin('1 minute', time, {origin}) FROM added
WHERE time < (SELECT watermark FROM {mark})
ON CONFLICT (device, tag, bucket) DO UPDATE SET bucket = excluded.bucket
"""

_HOURS = """
INSERT INTO {hours} ({columns})
SELECT h.bucket, m.device, m.tag,
    (array_agg(m.unit ORDER BY m.bucket DESC))[1],
    sum(m.count),
    sum(m.good_count),
    min(m.min),
    max(m.max),
    sum(m.sum) / nullif(sum(m.value_count), 0),
    (array_agg(m.first_value ORDER BY m.first_time) FILTER (WHERE m.first_time IS NOT NULL))[1],
    min(m.first_time),
    (array_agg(m.last_value ORDER BY m.last_time DESC) FILTER (WHERE m.last_time IS NOT NULL))[1],
    max(m.last_time),
    sum(m.twa * m.twa_seconds) / nullif(sum(m.twa_seconds), 0),
    sum(m.value_count),
    sum(m.sum),
    sum(m.twa_seconds),
    min(m.first_sample_time),
    max(m.last_sample_time),
    (array_agg(m.last_held_value ORDER BY m.bucket DESC))[1]
FROM {taken_1h} h
JOIN {minutes} m ON m.device = h.device AND m.tag = h.tag
    AND m.bucket >= h.bucket AND m.bucket < h.bucket + INTERVAL '1 hour'
GROUP BY h.bucket, m.device, m.tag
"""


class RollupStatements:
    """The SQL that keeps ``table``'s rollups: the writer's part and the refresher's steps.

    The refresher's temporary tables (per connection, emptied at each commit)
    hold the pending minutes it took out and the hours it computes again.
    """

    def __init__(self, table: str) -> None:
        names = {
            "table": check_table_name(table),
            "minutes": minutes_table(table),
            "hours": hours_table(table),
            "pending": minutes_pending_table(table),
            "mark": rollup_mark_table(table),
            "taken_1m": f"{table}_taken_1m",
            "taken_1h": f"{table}_taken_1h",
            "columns": ROLLUP_COLUMNS,
            "origin": BUCKET_ORIGIN,
        }
        lock_key = _LOCK_KEY.format(**names)
        # The writer: this lock, the watermark, then its insert statement, with
        # note_late as a CTE over the rows it added (``added``) if any is before it.
        self.lock_for_write = f"SELECT pg_advisory_xact_lock_shared({lock_key})"
        self.note_late = _NOTE_LATE.format(**names)
        # Read after the lock: a step A that moved it has committed, and none can until
        # this write does.
        self.read_watermark = f"SELECT watermark FROM {names['mark']}"  # noqa: S608
        # Step A: the mark first (a step B in progress finishes), then the writers in
        # flight; writes wait only for those.
        self.advance = (
            f"SELECT FROM {names['mark']} FOR UPDATE",
            f"SELECT pg_advisory_xact_lock({lock_key})",
            f"UPDATE {names['mark']} SET watermark = greatest(watermark,"  # noqa: S608
            f" date_bin('1 minute', coalesce($1, clock_timestamp()), {BUCKET_ORIGIN}))"
            " RETURNING watermark",
        )
        # Step B, in this order: the pending minutes are taken by a statement of their
        # own, so that the next one's snapshot sees the writes it waited for.
        self.read_mark = f"SELECT done, watermark FROM {names['mark']} FOR UPDATE"  # noqa: S608
        self.create_taken = tuple(
            f"CREATE TEMP TABLE IF NOT EXISTS {names[taken]}"
            f" (LIKE {names['pending']} INCLUDING INDEXES) ON COMMIT DELETE ROWS"
            for taken in ("taken_1m", "taken_1h")
        )
        self.take_pending = (
            f"WITH taken AS (DELETE FROM {names['pending']} RETURNING *)"  # noqa: S608
            f" INSERT INTO {names['taken_1m']} SELECT * FROM taken"
        )
        # The hours that have ended once ``done`` is the watermark ($2).
        ended_hours = f"date_bin('1 hour', $2, {BUCKET_ORIGIN})"
        computed = _AGGREGATE.format(rows=_HELD_ROWS.format(source=_REFRESHED_ROWS.format(**names)))
        self.compute_minutes = (
            f"WITH computed AS (INSERT INTO {names['minutes']} ({ROLLUP_COLUMNS})"  # noqa: S608
            f"{computed}{_REPLACE} RETURNING device, tag, bucket)"
            f" INSERT INTO {names['taken_1h']} (device, tag, bucket)"
            f" SELECT DISTINCT device, tag, date_bin('1 hour', bucket, {BUCKET_ORIGIN})"
            f" FROM computed WHERE bucket < {ended_hours}"
        )
        # Run when the hour of ``done`` ($1) has ended by the watermark ($2), after
        # compute_minutes, whose minutes it sees: every hour that ends in this step.
        self.take_ended_hours = (
            f"INSERT INTO {names['taken_1h']} (device, tag, bucket)"  # noqa: S608
            f" SELECT DISTINCT device, tag, date_bin('1 hour', bucket, {BUCKET_ORIGIN})"
            f" FROM {names['minutes']}"
            f" WHERE bucket >= date_bin('1 hour', $1, {BUCKET_ORIGIN}) AND bucket < {ended_hours}"
            " ON CONFLICT DO NOTHING"
        )
        self.compute_hours = _HOURS.format(**names) + _REPLACE
        self.set_done = f"UPDATE {names['mark']} SET done = $1"  # noqa: S608
