"""Times a client sends: one without an offset is read as UTC, the log's own zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def read_as_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def in_utc(at: datetime) -> datetime:
    """``at`` in UTC (without an offset: read as UTC); a time beyond what UTC can hold
    (0001-01-01 at +01:00, 9999-12-31 at -01:00) is the earliest or the latest one."""
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    try:
        return aware.astimezone(UTC)
    except OverflowError:
        offset = aware.utcoffset()
        ahead = offset is not None and offset > timedelta(0)
        return (datetime.min if ahead else datetime.max).replace(tzinfo=UTC)
