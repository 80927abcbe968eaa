"""Times a client sends, read as UTC, the ends of the calendar included (0001-01-01)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from api.graphql.times import in_utc


def test_a_time_without_an_offset_is_utc_and_one_with_an_offset_is_converted() -> None:
    assert in_utc(datetime(2026, 12, 7, 12)) == datetime(2026, 12, 7, 12, tzinfo=UTC)
    paris = datetime(2026, 12, 7, 13, tzinfo=timezone(timedelta(hours=1)))
    assert in_utc(paris) == datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_the_ends_of_the_calendar_stay_where_utc_can_hold_them() -> None:
    assert in_utc(datetime(1, 1, 1, 0, 0, 0, 11)) == datetime(1, 1, 1, 0, 0, 0, 11, tzinfo=UTC)
    ahead = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert in_utc(ahead) == datetime.min.replace(tzinfo=UTC)
    behind = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1)))
    assert in_utc(behind) == datetime.max.replace(tzinfo=UTC)
