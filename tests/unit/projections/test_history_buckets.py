"""The bucket grid, the source a width is served from, and the fill of empty buckets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.messages import Quality
from projections.history_buckets import (
    HOURS,
    MINUTES,
    RAW,
    Bucket,
    Fill,
    Grid,
    fill,
    series,
    source_for,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("width", "source"),
    [(1, RAW), (45, RAW), (60, MINUTES), (90, RAW), (900, MINUTES), (3600, HOURS), (86400, HOURS)],
)
def test_a_width_is_served_by_the_coarsest_source_dividing_it(width: int, source: object) -> None:
    assert source_for(width) is source


def test_the_grid_is_aligned_to_the_epoch_and_covers_the_whole_range() -> None:
    grid = Grid.covering(T0.replace(minute=7, second=30), T0.replace(minute=31), 600)
    assert (grid.start, grid.end, grid.count) == (T0, T0.replace(minute=40), 4)


def buckets(values: list[float | None]) -> list[Bucket]:
    grid = Grid.covering(T0, T0.replace(minute=len(values)), 60)
    stored = [
        (slot, Bucket("speed", grid.start_of(slot), "rpm", count=1, good_count=1, avg=value))
        for slot, value in zip(grid.slots(), values, strict=True)
        if value is not None
    ]
    return series("speed", "rpm", grid, stored)


def test_fill_previous_and_linear_only_between_buckets_with_data() -> None:
    given = buckets([None, 10.0, None, None, 40.0, None])
    assert [b.avg for b in fill(given, Fill.NONE)] == [None, 10.0, None, None, 40.0, None]
    assert [b.avg for b in fill(given, Fill.PREVIOUS)] == [None, 10.0, 10.0, 10.0, 40.0, 40.0]
    assert [b.avg for b in fill(given, Fill.LINEAR)] == [None, 10.0, 20.0, 30.0, 40.0, None]
    filled = fill(given, Fill.LINEAR)
    assert [b.filled for b in filled] == [False, False, True, True, False, False]
    assert [b.quality for b in filled] == [
        Quality.BAD, Quality.GOOD, Quality.UNCERTAIN, Quality.UNCERTAIN, Quality.GOOD, Quality.BAD,
    ]  # fmt: skip
    assert all(b.count == 0 and b.good_share is None for b in filled if b.filled)
