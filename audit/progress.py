"""Progress of a long run: done of total, items per second, time left (on stderr).

``plantcore audit verify`` counts events; ``plantcore history export`` counts rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Call :meth:`update` as often as you like; it writes at most once per ``every`` seconds."""

    def __init__(
        self,
        label: str,
        *,
        unit: str = "events",
        out: TextIO | None = None,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.out = out if out is not None else sys.stderr
        self.every = every
        self.clock = clock
        self.started = clock()
        self._last_written = self.started

    def line(self, done: int, total: int) -> str:
        elapsed = self.clock() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {done} of {total} {self.unit}"
        if total > 0:
            text += f" ({100 * done / total:.0f}%)"
        if rate > 0:
            text += f", {rate:,.0f} {self.unit}/s"
            if total > done:
                text += f", about {_duration((total - done) / rate)} left"
        return text

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self._last_written < self.every:
            return
        self._last_written = now
        self.out.write(self.line(done, total) + "\n")
        self.out.flush()

    def rate(self, done: int) -> float:
        elapsed = self.clock() - self.started
        return done / elapsed if elapsed > 0 else 0.0
