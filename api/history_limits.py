"""What one ``history`` request may ask, and how long each resolution of the history is kept."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_SPAN_DAYS = 366


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """Rows per answer (PLANTCORE_HISTORY_MAX_ROWS) and days between ``from`` and ``to``
    (PLANTCORE_HISTORY_MAX_SPAN_DAYS); the days raw samples and minutes are kept
    (PLANTCORE_HISTORY_RAW_DAYS, PLANTCORE_HISTORY_MINUTE_DAYS), past which a
    request needs coarser buckets."""

    max_rows: int = DEFAULT_MAX_ROWS
    max_span_days: int = DEFAULT_MAX_SPAN_DAYS
    raw_days: int = 30
    minute_days: int = 365
