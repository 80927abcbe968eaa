"""The bucket grid of a history query, the table that serves it, and the fill of empty buckets.

Buckets are aligned to the Unix epoch, as TimescaleDB's ``time_bucket`` aligns
them: a bucket of ``width`` seconds starts at a multiple of ``width`` seconds
since 1970-01-01 UTC, so an hour starts on the hour and a day at UTC midnight.
A range ``[start, end)`` is widened to whole buckets: from the start of the
bucket holding ``start`` to the end of the bucket holding the instant before
``end``. Because every source row (a raw sample, a minute, an hour) lies in one
epoch-aligned bucket of any width its resolution divides, the same buckets come
out of whichever source serves them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.messages import Quality

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BucketSource:
    """Where buckets are computed from: a history table's raw samples (``suffix`` empty)
    or one of its rollups, and the width of its rows in seconds."""

    suffix: str
    resolution: int

    def table(self, history_table: str) -> str:
        return history_table + self.suffix


RAW = BucketSource("", 1)
MINUTES = BucketSource("_1m", 60)
HOURS = BucketSource("_1h", 3600)
# Coarsest first: a bucket is served from the first of these whose rows fit it exactly.
SOURCES = (HOURS, MINUTES, RAW)

# The names a client asks for, as the GraphQL fields of a bucket spell them.
AGGREGATES = ("count", "min", "max", "avg", "first", "last", "twa", "goodShare")


class Fill(StrEnum):
    NONE = "none"
    PREVIOUS = "previous"
    LINEAR = "linear"


def source_for(width: int) -> BucketSource:
    """The coarsest source whose rows divide buckets of ``width`` seconds."""
    return next(source for source in SOURCES if width % source.resolution == 0)


def stored_resolution(start: datetime, now: datetime, *, raw_days: int, minute_days: int) -> int:
    """The finest resolution, in seconds, still stored for data from ``start`` on.

    Raw samples are kept ``raw_days``, minutes ``minute_days``, hours longer.
    """
    if start >= now - timedelta(days=raw_days):
        return RAW.resolution
    if start >= now - timedelta(days=minute_days):
        return MINUTES.resolution
    return HOURS.resolution


def epoch_seconds(ts: datetime) -> float:
    return (ts - EPOCH).total_seconds()


@dataclass(frozen=True, slots=True)
class Grid:
    """``count`` buckets of ``width`` seconds, the first starting ``first_slot * width``."""

    width: int
    first_slot: int
    count: int

    @classmethod
    def covering(cls, start: datetime, end: datetime, width: int) -> Grid:
        first = math.floor(epoch_seconds(start) / width)
        last = math.ceil(epoch_seconds(end) / width)
        return cls(width, first, max(last - first, 0))

    @property
    def start(self) -> datetime:
        return self.start_of(self.first_slot)

    @property
    def end(self) -> datetime:
        return self.start_of(self.first_slot + self.count)

    def start_of(self, slot: int) -> datetime:
        return EPOCH + timedelta(seconds=slot * self.width)

    def slots(self) -> range:
        return range(self.first_slot, self.first_slot + self.count)


@dataclass(frozen=True, slots=True)
class Bucket:
    """The aggregates of one tag over one bucket; an empty bucket has a count of 0."""

    tag: str
    start: datetime
    unit: str
    count: int = 0
    good_count: int = 0
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    first: float | None = None
    last: float | None = None
    twa: float | None = None
    filled: bool = False

    @property
    def good_share(self) -> float | None:
        return self.good_count / self.count if self.count else None

    @property
    def quality(self) -> Quality:
        """GOOD when every sample was, BAD when none was (or none was stored), else
        UNCERTAIN; a filled bucket's values are estimates: UNCERTAIN."""
        if self.filled:
            return Quality.UNCERTAIN
        if self.count and self.good_count == self.count:
            return Quality.GOOD
        if self.good_count == 0:
            return Quality.BAD
        return Quality.UNCERTAIN

    @property
    def empty(self) -> bool:
        return self.count == 0


def series(tag: str, unit: str, grid: Grid, stored: Sequence[tuple[int, Bucket]]) -> list[Bucket]:
    """Every bucket of ``grid`` for ``tag``: the ``(slot, bucket)`` pairs stored, empty ones
    in between."""
    by_slot = dict(stored)
    return [by_slot.get(slot) or Bucket(tag, grid.start_of(slot), unit) for slot in grid.slots()]


def fill(buckets: Sequence[Bucket], how: Fill) -> list[Bucket]:
    """``buckets`` (one tag's, in time order) with the empty ones filled ``how``.

    PREVIOUS copies the last bucket with data before; LINEAR interpolates in
    time between the buckets with data either side. Empty buckets before the
    first bucket with data (and, for LINEAR, after the last) stay empty: a
    value is never invented from outside the answer.
    """
    if how is Fill.NONE:
        return list(buckets)
    known = [i for i, bucket in enumerate(buckets) if not bucket.empty]
    out = list(buckets)
    for before, after in zip(known, [*known[1:], None], strict=True):
        end = len(buckets) if after is None else after
        for i in range(before + 1, end):
            if how is Fill.PREVIOUS:
                out[i] = _filled(buckets[i], buckets[before], buckets[before])
            elif after is not None:
                out[i] = _filled(buckets[i], buckets[before], buckets[after])
    return out


def _filled(empty: Bucket, left: Bucket, right: Bucket) -> Bucket:
    span = (right.start - left.start).total_seconds()
    share = (empty.start - left.start).total_seconds() / span if span else 0.0

    def value(name: str) -> float | None:
        return _between(getattr(left, name), getattr(right, name), share)

    return replace(
        empty, filled=True, min=value("min"), max=value("max"), avg=value("avg"),
        first=value("first"), last=value("last"), twa=value("twa"),
    )  # fmt: skip


def _between(left: float | None, right: float | None, share: float) -> float | None:
    if left is None or right is None:
        return None
    return left + (right - left) * share
