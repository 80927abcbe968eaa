"""Progress lines: a rate and an estimate, at most one per interval."""

from __future__ import annotations

import io

from audit.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_rate_and_time_left_once_per_interval() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("audit verify", out=out, every=1.0, clock=clock)

    clock.now += 0.5
    progress.update(5_000, 1_000_000)  # too soon: nothing
    clock.now += 1.5
    progress.update(200_000, 1_000_000)  # 2 s in: 100,000 events/s, 8 s left
    progress.update(210_000, 1_000_000)  # same instant: nothing

    assert out.getvalue() == (
        "audit verify: 200000 of 1000000 events (20%), 100,000 events/s, about 8s left\n"
    )


def test_long_estimates_read_in_minutes_and_hours() -> None:
    clock = Clock()
    progress = Progress("audit verify", out=io.StringIO(), clock=clock)
    clock.now += 10
    assert progress.line(1_000, 1_000_000).endswith("about 2h46m left")
    assert progress.line(100_000, 1_000_000).endswith("about 1m30s left")
    assert progress.line(1_000_000, 1_000_000).endswith("100,000 events/s")


def test_the_unit_counted_is_named() -> None:
    clock = Clock()
    progress = Progress("history export", unit="rows", out=io.StringIO(), clock=clock)
    clock.now += 2
    assert progress.line(2_000, 4_000) == (
        "history export: 2000 of 4000 rows (50%), 1,000 rows/s, about 2s left"
    )
