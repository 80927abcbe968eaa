"""The ``history`` query: a device's stored samples, raw or in buckets of any width.

Without ``bucket``: the raw samples of each tag in ``[from, to)``, tag by tag
in the order asked, each in time order, ``first`` at a time (``endCursor`` /
``after``). With ``bucket`` (seconds): one row per tag and bucket, served
from the coarsest stored resolution dividing the width
(:mod:`projections.history_buckets`, :mod:`projections.history_query`), with
the ``aggregates`` asked for (the others null) and empty buckets filled as
``fill`` says. Every argument is checked before PostgreSQL is asked anything
(:mod:`.history_arguments`), and the caller before them: reading a device's
history needs ``history.read`` in a scope covering the device.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import strawberry

from api.context import PlantContext
from api.graphql.history_arguments import check_history, encode_cursor
from api.services import Services
from domain.messages import Quality
from domain.permissions import Action
from projections import history_buckets
from projections.history_buckets import Bucket, Fill, series, source_for
from projections.history_query import StoredSample, read_buckets, read_samples

strawberry.enum(Fill, name="HistoryFill")

# The runtime's history table (projections.history_schema).
HISTORY_TABLE = "samples"


@strawberry.type
class HistorySample:
    tag: str
    time: datetime
    value: float | None
    quality: Quality
    unit: str

    @classmethod
    def from_model(cls, sample: StoredSample, unit: str) -> HistorySample:
        return cls(
            tag=sample.tag,
            time=sample.time,
            value=sample.value,
            quality=sample.quality,
            unit=sample.unit or unit,
        )


@strawberry.type
class HistoryBucket:
    tag: str
    time: datetime = strawberry.field(description="The bucket's start.")
    unit: str
    count: int | None = strawberry.field(description="Samples stored in the bucket.")
    good_share: float | None = strawberry.field(
        description="The share of them of GOOD quality; null for an empty bucket."
    )
    quality: Quality = strawberry.field(
        description="GOOD: every sample was; BAD: none was, or none was stored;"
        " UNCERTAIN: some were, or the values were filled."
    )
    filled: bool = strawberry.field(description="The values come from fill, not from samples.")
    min: float | None
    max: float | None
    avg: float | None
    first: float | None
    last: float | None
    twa: float | None = strawberry.field(description="Time-weighted average.")

    @classmethod
    def from_model(cls, bucket: Bucket, unit: str, asked: frozenset[str]) -> HistoryBucket:
        def value(name: str, given: float | int | None) -> float | int | None:
            return given if name in asked else None

        return cls(
            tag=bucket.tag, time=bucket.start, unit=bucket.unit or unit,
            count=bucket.count if "count" in asked else None,
            good_share=value("goodShare", bucket.good_share),
            quality=bucket.quality, filled=bucket.filled,
            min=value("min", bucket.min), max=value("max", bucket.max),
            avg=value("avg", bucket.avg), first=value("first", bucket.first),
            last=value("last", bucket.last), twa=value("twa", bucket.twa),
        )  # fmt: skip


@strawberry.type
class HistoryPage:
    samples: list[HistorySample] = strawberry.field(description="Raw samples; empty with bucket.")
    buckets: list[HistoryBucket] = strawberry.field(description="Buckets; empty without bucket.")
    source: str = strawberry.field(
        description="The table the rows were read from: samples, samples_1m or samples_1h."
    )
    end_cursor: str | None
    has_next_page: bool


_DOC_FROM = "Start of the range (inclusive), with a time zone; widened to a bucket's start."
_DOC_BUCKET = "Bucket width in seconds; none for raw samples."
_DOC_AGGREGATES = "count, min, max, avg, first, last, twa, goodShare (default: all)."


async def history(
    info: strawberry.Info[PlantContext, None],
    device: str,
    tags: list[str],
    from_: Annotated[datetime, strawberry.argument(name="from", description=_DOC_FROM)],
    to: datetime,
    bucket: Annotated[int | None, strawberry.argument(description=_DOC_BUCKET)] = None,
    aggregates: Annotated[
        list[str] | None, strawberry.argument(description=_DOC_AGGREGATES)
    ] = None,
    fill: Fill = Fill.NONE,
    first: int = 500,
    after: str | None = None,
) -> HistoryPage:
    services = info.context.services
    await info.context.authorize(Action.READ_HISTORY, device=device)
    request = check_history(
        services.catalog, services.history_limits, services.clock(),
        device=device, tags=tags, start=from_, end=to, bucket=bucket,
        aggregates=aggregates, fill=fill, first=first, after=after,
    )  # fmt: skip
    pool = _pool(services)
    units = {limits.tag: limits.unit for limits in services.catalog.tags(device)}
    if request.grid is None:
        found = await read_samples(
            pool, device, request.tags, request.start, request.end,
            limit=request.first + 1, after=request.after,
        )  # fmt: skip
        page = found[: request.first]
        more = len(found) > request.first
        return HistoryPage(
            samples=[HistorySample.from_model(s, units[s.tag]) for s in page],
            buckets=[],
            source=HISTORY_TABLE,
            end_cursor=encode_cursor(page[-1].tag, page[-1].time) if page else after,
            has_next_page=more,
        )
    source = source_for(request.grid.width)
    stored = await read_buckets(pool, device, request.tags, request.grid, source)
    rows: list[HistoryBucket] = []
    for tag in request.tags:
        mine = [(slot, bucket) for slot, bucket in stored if bucket.tag == tag]
        for filled in history_buckets.fill(
            series(tag, units[tag], request.grid, mine), request.fill
        ):
            rows.append(HistoryBucket.from_model(filled, units[tag], request.aggregates))
    return HistoryPage(
        samples=[],
        buckets=rows,
        source=source.table(HISTORY_TABLE),
        end_cursor=None,
        has_next_page=False,
    )


def _pool(services: Services) -> asyncpg.Pool:
    if services.pool is None:
        raise RuntimeError("the API was started without the history database")
    return services.pool
