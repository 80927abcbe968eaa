"""The minute and hour rollups of a history table, kept in the raw insert's transaction.

The statement that inserts a batch's raw rows also aggregates the rows it
really added, per device, tag and minute, into a temporary table of minutes
(a redelivered batch adds none, and so touches no bucket). Then, in the same
transaction:

1. Each touched minute that got a row from before its last sample (a late
   sample) is computed again whole from its raw rows: the result depends only
   on the rows, never on the order they came in.
2. Each other touched minute of ``<table>_1m`` (its new rows all come after
   its last sample: the usual case, samples arrive in order) has the added
   rows' aggregate merged into it: a row is made, or counts and sums are added
   and the hold of its last value is cut at the first new sample.
3. Each touched hour is noted in ``<table>_1h_pending``.

Every ``hour_refresh_seconds`` (:class:`projections.history.HistoryWriter`), a
write's transaction takes the pending hours out and computes each of them again
from its minutes in ``<table>_1h``: late in an hour a fleet's hour holds
hundreds of thousands of minutes, far too many to read again at every write
(ADR 0038). An hour is always computed whole from its minutes, so a late or
redelivered sample changes it as it changes its minute; it lags behind its
minutes by up to the refresh period.

The added rows are aggregated once, in one sort (ADR 0038): the first and last
values are picked by markers the window over each minute sets, not by ordered
aggregates that would sort each group again, and device and tag are compared
bytewise (``COLLATE "C"``), which groups exactly as the default collation does.

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
    check_table_name,
    hours_pending_table,
    hours_table,
    minutes_table,
)

# date_bin() does not depend on the session's time zone, as date_trunc() does.
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
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

# The aggregate of rows from ``_HELD_ROWS``: sorted by device, tag and bucket
# as they come, so it needs no sort of its own. Each "first" or "last" is the
# one row its marker picks, so max() returns that row's value.
_AGGREGATE = """
SELECT bucket, device, tag,
    max(unit) FILTER (WHERE closes),
    count(*),
    count(*) FILTER (WHERE quality = 'good'),
    min(good_value),
    max(good_value),
    avg(good_value),
    max(good_value) FILTER (WHERE first_valued),
    min(time) FILTER (WHERE good_value IS NOT NULL),
    max(good_value) FILTER (WHERE last_valued),
    max(time) FILTER (WHERE good_value IS NOT NULL),
    sum(good_value * held) / nullif(sum(held) FILTER (WHERE good_value IS NOT NULL), 0),
    count(good_value),
    sum(good_value),
    coalesce(sum(held) FILTER (WHERE good_value IS NOT NULL), 0),
    min(time),
    max(time),
    max(good_value) FILTER (WHERE closes)
FROM ({rows}) rows_of_buckets
GROUP BY device, tag, bucket
"""

# Each row of ``source`` held until the next row of its minute, or the minute's
# end; ``closes`` marks a minute's last row, ``first_valued`` and
# ``last_valued`` its first and last good row with a value (times are unique
# per device and tag, so each marks one row). Both windows share one sort, and
# it is a pass when the rows come in its order (the writer sends them so).
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

_ADDED_ROWS = (
    "SELECT date_bin('1 minute', time, {origin}) AS bucket, device, tag, time, value, quality,"
    " unit FROM added"
)

_LATE_MINUTES_ROWS = """
SELECT t.bucket, s.device, s.tag, s.time, s.value, s.quality, s.unit
FROM (
    SELECT a.device, a.tag, a.bucket
    FROM {added} a JOIN {minutes} m ON m.device = a.device AND m.tag = a.tag AND m.bucket = a.bucket
    WHERE a.first_sample_time < m.last_sample_time
) t
JOIN {table} s ON s.device = t.device AND s.tag = t.tag
    AND s.time >= t.bucket AND s.time < t.bucket + INTERVAL '1 minute'
"""

# The hold of the minute's last value, cut at the first new sample.
_CUT = (
    "CASE WHEN m.last_held_value IS NULL THEN 0 ELSE extract(epoch FROM"
    " m.bucket + INTERVAL '1 minute' - excluded.first_sample_time)::double precision END"
)
_NEW_SUM = (
    "CASE WHEN m.sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN m.sum"
    " ELSE m.sum + excluded.sum END"
)
_NEW_TWA_SECONDS = f"(m.twa_seconds - {_CUT} + excluded.twa_seconds)"
_MERGE = f"""
 ON CONFLICT (device, tag, bucket) DO UPDATE SET
    unit = excluded.unit,
    count = m.count + excluded.count,
    good_count = m.good_count + excluded.good_count,
    min = least(m.min, excluded.min),
    max = greatest(m.max, excluded.max),
    avg = ({_NEW_SUM}) / nullif(m.value_count + excluded.value_count, 0),
    first_value = CASE WHEN m.first_time IS NULL THEN excluded.first_value ELSE m.first_value END,
    first_time = coalesce(m.first_time, excluded.first_time),
    last_value = CASE WHEN excluded.last_time IS NULL THEN m.last_value
        ELSE excluded.last_value END,
    last_time = coalesce(excluded.last_time, m.last_time),
    twa = (coalesce(m.twa * m.twa_seconds, 0) - coalesce(m.last_held_value * {_CUT}, 0)
        + coalesce(excluded.twa * excluded.twa_seconds, 0)) / nullif({_NEW_TWA_SECONDS}, 0),
    value_count = m.value_count + excluded.value_count,
    sum = {_NEW_SUM},
    twa_seconds = {_NEW_TWA_SECONDS},
    last_sample_time = excluded.last_sample_time,
    last_held_value = excluded.last_held_value
WHERE m.last_sample_time < excluded.first_sample_time
"""

# A no-op update rather than DO NOTHING: it locks the pending row, so a refresh
# in another transaction that would take it waits for this one's minutes.
_NOTE_PENDING = """
INSERT INTO {pending} (device, tag, bucket)
SELECT DISTINCT device, tag, date_bin('1 hour', bucket, {origin}) FROM {added}
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
FROM {taken} h
JOIN {minutes} m ON m.device = h.device AND m.tag = h.tag
    AND m.bucket >= h.bucket AND m.bucket < h.bucket + INTERVAL '1 hour'
GROUP BY h.bucket, m.device, m.tag
"""


class RollupStatements:
    """The SQL that keeps ``table``'s rollups, given the rows a transaction added.

    ``added`` is a temporary table of the minutes' columns, filled by
    :attr:`note_added` with the aggregate of the CTE ``added`` of the statement
    that inserts the raw rows; the statements run in the order :attr:`in_order`
    gives. ``taken`` is a temporary table of the hours :attr:`refresh_hours`
    takes out of the pending ones and computes again.
    """

    def __init__(self, table: str, added: str, taken: str) -> None:
        names = {
            "table": check_table_name(table),
            "added": check_table_name(added),
            "taken": check_table_name(taken),
            "minutes": minutes_table(table),
            "hours": hours_table(table),
            "pending": hours_pending_table(table),
            "columns": ROLLUP_COLUMNS,
            "origin": _ORIGIN,
        }
        self.create_added = (
            f"CREATE TEMP TABLE IF NOT EXISTS {added}"
            f" (LIKE {names['minutes']} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self.note_added = f"INSERT INTO {added} ({ROLLUP_COLUMNS})" + _AGGREGATE.format(
            rows=_HELD_ROWS.format(source=_ADDED_ROWS.format(**names))
        )
        insert_minutes = f"INSERT INTO {names['minutes']} AS m ({ROLLUP_COLUMNS})"
        recomputed = _AGGREGATE.format(
            rows=_HELD_ROWS.format(source=_LATE_MINUTES_ROWS.format(**names))
        )
        merged = f" SELECT {ROLLUP_COLUMNS} FROM {added}"  # noqa: S608 (checked name)
        self.in_order = (
            insert_minutes + recomputed + _REPLACE,  # before the merge moves last_sample_time
            insert_minutes + merged + _MERGE,
            _NOTE_PENDING.format(**names),
        )
        # Two statements: the second's snapshot sees the minutes of every
        # transaction the first waited for (see _NOTE_PENDING).
        self.refresh_hours = (
            f"CREATE TEMP TABLE IF NOT EXISTS {taken}"
            f" (LIKE {names['pending']}) ON COMMIT DELETE ROWS",
            f"WITH taken AS (DELETE FROM {names['pending']} RETURNING *)"  # noqa: S608
            f" INSERT INTO {taken} SELECT * FROM taken",
            _HOURS.format(**names) + _REPLACE,
        )
