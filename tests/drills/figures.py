"""What a drill measured: kept as JSON under ``var/drills/`` for docs/reliability.md.

Figures are measured, never asserted on for speed: a drill fails on what was
lost or doubled, and reports how long recovery took and how far the buffer
filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

FIGURES_DIR = Path(__file__).parents[2] / "var" / "drills"


def record_figures(drill: str, figures: Any) -> Path:
    """Write ``figures`` to ``var/drills/<drill>.json`` and say where."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{drill}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"{drill} drill figures: {path}")
    return path


class PeakWatch:
    """The highest value a probe showed since the last :meth:`take`, sampled in the background.

    A probe that fails (the plant core is down and serves no metrics) or
    answers None is skipped: the peak is of what could be seen.
    """

    def __init__(self, probe: Callable[[], Awaitable[float | None]], interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._peak: float | None = None

    def take(self) -> float | None:
        """The peak since the last call, and start a new one."""
        peak, self._peak = self._peak, None
        return peak

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PeakWatch]:
        sampling = asyncio.create_task(self._sample())
        try:
            yield self
        finally:
            sampling.cancel()
            await asyncio.wait({sampling})

    async def _sample(self) -> None:
        while True:
            try:
                value = await self._probe()
            except (OSError, httpx.TransportError):  # the plant core is away
                value = None
            if value is not None:
                self._peak = value if self._peak is None else max(self._peak, value)
            await asyncio.sleep(self._interval)
