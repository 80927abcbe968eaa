"""Times a client sends: one without an offset is read as UTC, the log's own zone."""

from __future__ import annotations

from datetime import UTC, datetime


def read_as_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
