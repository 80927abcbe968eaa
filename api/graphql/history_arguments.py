"""The arguments of ``history`` checked, before anything reaches PostgreSQL.

Each refusal is a GraphQL error whose ``extensions.argument`` names the
argument at fault, and whose code says what is wrong with it:

=======================  ==========================================================
code                     when
=======================  ==========================================================
``unknown_device``       ``device`` is not in the plant
``unknown_tag``          a name in ``tags`` is not a tag of ``device`` (``tag``)
``invalid_time_range``   ``from`` is not before ``to``, or either has no time zone
``span_too_long``        ``to`` is more than ``maxSpanDays`` after ``from``
``invalid_bucket``       ``bucket`` is not a whole multiple of ``resolution``, the
                         finest resolution stored for data as old as ``from``
                         (raw samples: 1 s; past their retention, minutes, then
                         hours); raw samples asked for past their retention
``unknown_aggregate``    a name in ``aggregates`` is none of ``known``
``too_many_rows``        more buckets than ``maxRows`` (``bucket``), or more than
                         ``first`` (``first``)
``bad_page``             ``first`` not between 1 and ``maxRows``
``bad_cursor``           ``after`` is not a cursor of this query's raw samples
=======================  ==========================================================
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from graphql import GraphQLError

from api.graphql.error_codes import (
    INVALID_TIME_RANGE,
    SPAN_TOO_LONG,
    UNKNOWN_DEVICE,
    api_error,
)
from api.history_limits import HistoryLimits
from domain.catalog import TagCatalog
from projections.history_buckets import AGGREGATES, Fill, Grid, stored_resolution

UNKNOWN_TAG = "unknown_tag"
INVALID_BUCKET = "invalid_bucket"
UNKNOWN_AGGREGATE = "unknown_aggregate"
TOO_MANY_ROWS = "too_many_rows"
BAD_PAGE = "bad_page"
BAD_CURSOR = "bad_cursor"


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    device: str
    tags: tuple[str, ...]
    start: datetime
    end: datetime
    aggregates: frozenset[str]
    fill: Fill
    first: int
    # None: raw samples, a page at a time from ``after``.
    grid: Grid | None
    after: tuple[str, datetime] | None


def refusal(message: str, code: str, argument: str, **extensions: object) -> GraphQLError:
    return api_error(message, code, argument=argument, **extensions)


def check_history(
    catalog: TagCatalog,
    limits: HistoryLimits,
    now: datetime,
    *,
    device: str,
    tags: Sequence[str],
    start: datetime,
    end: datetime,
    bucket: int | None,
    aggregates: Sequence[str] | None,
    fill: Fill,
    first: int,
    after: str | None,
) -> HistoryRequest:
    """The request ``history``'s arguments make, or the refusal of the first one at fault."""
    if device not in catalog.devices():
        raise refusal(f"unknown device {device!r}", UNKNOWN_DEVICE, "device")
    known_tags = {limits.tag for limits in catalog.tags(device)}
    wanted = tuple(dict.fromkeys(tags))
    if not wanted:
        raise refusal("name at least one tag", UNKNOWN_TAG, "tags")
    for tag in wanted:
        if tag not in known_tags:
            raise refusal(f"{device} has no tag {tag!r}", UNKNOWN_TAG, "tags", tag=tag)
    _check_range(start, end, limits)
    names = AGGREGATES if aggregates is None else tuple(aggregates)
    for name in names:
        if name not in AGGREGATES:
            raise refusal(
                f"no aggregate {name!r}", UNKNOWN_AGGREGATE, "aggregates", known=list(AGGREGATES)
            )
    if not 1 <= first <= limits.max_rows:
        raise refusal(
            f"first must be between 1 and {limits.max_rows}", BAD_PAGE, "first",
            maxRows=limits.max_rows,
        )  # fmt: skip
    resolution = stored_resolution(
        start, now, raw_days=limits.raw_days, minute_days=limits.minute_days
    )
    grid = None
    if bucket is not None:
        grid = _check_bucket(bucket, resolution, start, end, limits, first, len(wanted))
    elif resolution != 1:
        raise refusal(
            f"raw samples are kept {limits.raw_days} days: ask for buckets of a multiple"
            f" of {resolution} s for data from {start.isoformat()}",
            INVALID_BUCKET, "bucket", resolution=resolution,
        )  # fmt: skip
    if after is not None and grid is not None:
        raise refusal("only raw samples come in pages", BAD_CURSOR, "after")
    return HistoryRequest(
        device=device,
        tags=wanted,
        start=start,
        end=end,
        aggregates=frozenset(names),
        fill=fill,
        first=first,
        grid=grid,
        after=None if after is None else decode_cursor(after, wanted),
    )


def _check_range(start: datetime, end: datetime, limits: HistoryLimits) -> None:
    for argument, ts in (("from", start), ("to", end)):
        if ts.tzinfo is None:
            raise refusal(f"{argument} needs a time zone", INVALID_TIME_RANGE, argument)
    if start >= end:
        raise refusal("from must be before to", INVALID_TIME_RANGE, "from")
    if end - start > timedelta(days=limits.max_span_days):
        raise refusal(
            f"from and to are more than {limits.max_span_days} days apart",
            SPAN_TOO_LONG, "to", maxSpanDays=limits.max_span_days,
        )  # fmt: skip


def _check_bucket(
    bucket: int,
    resolution: int,
    start: datetime,
    end: datetime,
    limits: HistoryLimits,
    first: int,
    tags: int,
) -> Grid:
    if bucket < resolution or bucket % resolution:
        raise refusal(
            f"bucket must be a whole multiple of {resolution} s for data from"
            f" {start.isoformat()}, not {bucket}",
            INVALID_BUCKET, "bucket", resolution=resolution,
        )  # fmt: skip
    grid = Grid.covering(start, end, bucket)
    rows = grid.count * tags
    if rows > limits.max_rows:
        raise refusal(
            f"{grid.count} buckets of {tags} tags make {rows} rows, more than"
            f" {limits.max_rows}: widen the bucket or narrow the range",
            TOO_MANY_ROWS, "bucket", rows=rows, maxRows=limits.max_rows,
        )  # fmt: skip
    if rows > first:
        raise refusal(
            f"{grid.count} buckets of {tags} tags make {rows} rows, more than first ({first})",
            TOO_MANY_ROWS, "first", rows=rows, maxRows=limits.max_rows,
        )  # fmt: skip
    return grid


def encode_cursor(tag: str, ts: datetime) -> str:
    return base64.urlsafe_b64encode(f"history|{ts.isoformat()}|{tag}".encode()).decode()


def decode_cursor(cursor: str, tags: Sequence[str]) -> tuple[str, datetime]:
    """The ``(tag, time)`` of the last sample a page ended on; refused unless one of ``tags``."""
    try:
        kind, ts, tag = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 2)
        at = datetime.fromisoformat(ts)
        if kind != "history" or tag not in tags or at.tzinfo is None:
            raise ValueError(kind)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise refusal(f"not a cursor of this history: {cursor!r}", BAD_CURSOR, "after") from None
    return tag, at
