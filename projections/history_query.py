"""Reading the history back: raw samples a page at a time, and buckets of any width.

Raw pages are read tag by tag, each with the ``(device, tag, time)`` index in
its order, so a page costs its own rows and no sort. Buckets are computed in
PostgreSQL from the source :func:`~projections.history_buckets.source_for`
picks, one row per tag and bucket that holds samples; the empty ones are added
by the caller (:func:`~projections.history_buckets.series`).

The aggregates are those of the rollups (:mod:`projections.rollups`), over a
bucket's GOOD samples with a value (``count`` over all of them): from raw
samples, computed by the rollups' rule over buckets of the width asked; from
minute or hour rows, composed: the min of the mins, the max of the maxes, the
sum of the sums over the count of values, ``first`` of the row with the
earliest ``first_time`` (``last``: the latest ``last_time``), and the twa of
the rows weighted by the seconds each covered.

The rollups are complete only before their mark's ``done``
(:mod:`projections.rollup_refresher`): buckets served from them take the hours
before ``done``'s hour from the hour rows, the minutes before ``done`` from the
minute rows, and the minutes from ``done`` on computed from the raw rows by the
rollups' own rule, so the last minutes of a trend are there before the
refresher has stored them, and the same as once it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from domain.messages import Quality
from projections.history_buckets import HOURS, RAW, Bucket, BucketSource, Grid
from projections.history_schema import (
    BUCKET_ORIGIN,
    check_table_name,
    hours_table,
    minutes_table,
    rollup_mark_table,
)
from projections.rollups import minutes_from_raw


@dataclass(frozen=True, slots=True)
class StoredSample:
    tag: str
    time: datetime
    value: float | None
    quality: Quality
    unit: str


async def read_samples(
    pool: asyncpg.Pool,
    device: str,
    tags: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    limit: int,
    after: tuple[str, datetime] | None = None,
    table: str = "samples",
) -> list[StoredSample]:
    """Up to ``limit`` samples of ``tags`` in ``[start, end)``, tag by tag in the order
    given, each tag's in time order; ``after`` is the last ``(tag, time)`` already read."""
    sql = (
        f"SELECT tag, time, value, quality, unit FROM {check_table_name(table)}"  # noqa: S608 (checked name)
        " WHERE device = $1 AND tag = $2 AND time > $3 AND time < $4 ORDER BY time LIMIT $5"
    )
    # ``time > $3`` keeps the query one shape: a tag read from its start begins just before.
    from_start = start - _INSTANT
    remaining = list(tags)
    resume = from_start
    if after is not None:
        remaining = remaining[remaining.index(after[0]) :]
        resume = after[1]
    found: list[StoredSample] = []
    for tag in remaining:
        rows = await pool.fetch(sql, device, tag, resume, end, limit - len(found))
        found += [
            StoredSample(tag, r["time"], r["value"], Quality(r["quality"]), r["unit"]) for r in rows
        ]
        if len(found) >= limit:
            break
        resume = from_start
    return found


# The finest step of a timestamptz.
_INSTANT = timedelta(microseconds=1)


# The rollups' rule (projections/rollups.py) over buckets of any width: each good value
# holds until the tag's next sample or its bucket's end, whichever comes first.
_FROM_RAW = """
SELECT tag, slot,
       count(*) AS count,
       count(*) FILTER (WHERE quality = 'good') AS good_count,
       min(good_value) AS min,
       max(good_value) AS max,
       avg(good_value) AS avg,
       (array_agg(good_value ORDER BY time) FILTER (WHERE good_value IS NOT NULL))[1] AS first,
       (array_agg(good_value ORDER BY time DESC)
           FILTER (WHERE good_value IS NOT NULL))[1] AS last,
       sum(good_value * held) / nullif(sum(held) FILTER (WHERE good_value IS NOT NULL), 0)
           AS twa,
       (array_agg(unit ORDER BY time DESC))[1] AS unit
  FROM (
    SELECT tag, time, unit, quality, slot,
           CASE WHEN quality = 'good' THEN value END AS good_value,
           extract(epoch FROM least(lead(time) OVER held, to_timestamp((slot + 1) * $5))
                              - time)::double precision AS held
      FROM (SELECT tag, time, unit, quality, value,
                   floor(extract(epoch FROM time) / $5)::bigint AS slot
              FROM {table}
             WHERE device = $1 AND tag = ANY($2::text[]) AND time >= $3 AND time < $4) AS rows
    WINDOW held AS (PARTITION BY tag, slot ORDER BY time)
  ) AS samples_of_buckets
 GROUP BY tag, slot
"""

# The columns of a rollup row that buckets are composed from.
_COMPOSED = (
    "bucket, tag, unit, count, good_count, min, max, sum, value_count,"
    " first_value, first_time, last_value, last_time, twa, twa_seconds"
)
_OF_THE_TAGS = "device = $1 AND tag = ANY($2::text[])"

# Composed from rollup rows: sums and counts added, the twa weighted by the time
# each row's values covered.
_FROM_ROLLUP = """
WITH mark AS (SELECT done, date_bin('1 hour', done, {origin}) AS done_hour FROM {mark})
SELECT tag, floor(extract(epoch FROM bucket) / $5)::bigint AS slot,
       sum(count) AS count,
       sum(good_count) AS good_count,
       min(min) AS min,
       max(max) AS max,
       sum(sum) / nullif(sum(value_count), 0) AS avg,
       (array_agg(first_value ORDER BY first_time)
           FILTER (WHERE first_time IS NOT NULL))[1] AS first,
       (array_agg(last_value ORDER BY last_time DESC)
           FILTER (WHERE last_time IS NOT NULL))[1] AS last,
       sum(twa * twa_seconds) / nullif(sum(twa_seconds), 0) AS twa,
       (array_agg(unit ORDER BY bucket DESC))[1] AS unit
  FROM ({rows}) AS rollup_rows
 GROUP BY tag, slot
"""


def _rollup_rows(table: str, source: BucketSource) -> str:
    """The rows of ``source`` (minutes or hours) of ``table`` for the tags and range
    ``$1..$4``, each from the layer complete for its time (see the module's doc)."""
    done, done_hour = "(SELECT done FROM mark)", "(SELECT done_hour FROM mark)"
    hours = (
        f"SELECT {_COMPOSED} FROM {hours_table(table)} WHERE {_OF_THE_TAGS}"  # noqa: S608
        f" AND bucket >= $3 AND bucket < least($4, {done_hour})"
    )
    minutes_from = f"greatest($3, {done_hour})" if source is HOURS else "$3"
    minutes = (
        f"SELECT {_COMPOSED} FROM {minutes_table(table)} WHERE {_OF_THE_TAGS}"  # noqa: S608
        f" AND bucket >= {minutes_from} AND bucket < least($4, {done})"
    )
    tail = minutes_from_raw(table, f"{_OF_THE_TAGS} AND time >= greatest($3, {done}) AND time < $4")
    layers = [minutes, f"SELECT {_COMPOSED} FROM ({tail}) AS raw_minutes"]  # noqa: S608
    return " UNION ALL ".join([hours, *layers] if source is HOURS else layers)


async def read_buckets(
    pool: asyncpg.Pool,
    device: str,
    tags: Sequence[str],
    grid: Grid,
    source: BucketSource,
    *,
    table: str = "samples",
) -> list[tuple[int, Bucket]]:
    """The ``(slot, bucket)`` of every bucket of ``grid`` holding samples of ``tags``,
    read from ``source`` of history table ``table``."""
    if source is RAW:
        sql = _FROM_RAW.format(table=check_table_name(table))
    else:
        sql = _FROM_ROLLUP.format(
            origin=BUCKET_ORIGIN, mark=rollup_mark_table(table), rows=_rollup_rows(table, source)
        )
    rows = await pool.fetch(
        sql,
        device,
        list(tags),
        grid.start,
        grid.end,
        grid.width,
    )
    return [
        (
            row["slot"],
            Bucket(
                tag=row["tag"],
                start=grid.start_of(row["slot"]),
                unit=row["unit"] or "",
                count=row["count"],
                good_count=row["good_count"],
                min=row["min"],
                max=row["max"],
                avg=row["avg"],
                first=row["first"],
                last=row["last"],
                twa=row["twa"],
            ),
        )
        for row in rows
    ]
