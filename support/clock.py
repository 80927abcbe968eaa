"""The wall clock every part reads when it is not handed one: an aware time in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
