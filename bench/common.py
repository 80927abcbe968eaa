"""What every benchmark shares: its settings, unique names, timing and JSON output.

A benchmark is ``async def run(config: BenchConfig) -> Figures``. It times its
loops with :class:`Laps`, alternates plantcore and the raw library with
:func:`interleaved` so that both see the same machine load, and returns plain
JSON figures; :func:`emit` prints them and writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats

T = TypeVar("T")

# Figures are JSON: nested dicts of numbers and strings.
Figures = dict[str, Any]

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    quick: bool = False
    database_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    nats_url: str = "nats://127.0.0.1:4222"
    results_dir: Path | None = RESULTS_DIR
    machine: Figures = field(default_factory=dict)

    def pick(self, *, quick: T, full: T) -> T:
        """The size of a run: a few seconds with ``--quick``, up to about a minute without."""
        return quick if self.quick else full


def unique_name(prefix: str) -> str:
    """A fresh lower-case identifier (SQL name, NATS token, user), so runs never meet."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True, slots=True)
class Run:
    """``operations`` done in ``seconds`` of wall time, with each one's duration."""

    operations: int
    seconds: float
    durations: Sequence[float]

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0

    @staticmethod
    def combined(runs: Sequence[Run]) -> Run:
        """Runs one after another: their operations over their summed time."""
        return Run.concurrent(runs, sum(run.seconds for run in runs))

    @staticmethod
    def concurrent(runs: Sequence[Run], wall_seconds: float) -> Run:
        """Runs side by side: their operations over the wall time they took together."""
        return Run(
            operations=sum(run.operations for run in runs),
            seconds=wall_seconds,
            durations=[d for run in runs for d in run.durations],
        )

    def figures(self, unit: str) -> Figures:
        return {
            f"{unit}_per_s": round(self.rate, 1),
            unit: self.operations,
            "seconds": round(self.seconds, 3),
            "latency_ms": latency_ms(self.durations),
        }


class Laps:
    """A stopwatch for a loop: ``lap()`` after each operation, ``run()`` at the end."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self._durations: list[float] = []

    def lap(self) -> None:
        now = time.perf_counter()
        self._durations.append(now - self._last)
        self._last = now

    def run(self) -> Run:
        return Run(len(self._durations), self._last - self._start, list(self._durations))


def latency_ms(durations: Sequence[float]) -> Figures:
    """Percentiles (nearest rank) of per-operation durations, in milliseconds.

    ``first_tenth`` and ``last_tenth`` are the mean durations of the first and
    last tenth of the operations: a store or an index that slows down as it
    grows shows here.
    """
    if not durations:
        return {}
    ordered = sorted(durations)
    tenth = max(1, len(durations) // 10)

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": ms(rank(0.50)),
        "p99": ms(rank(0.99)),
        "max": ms(ordered[-1]),
        "first_tenth": ms(sum(durations[:tenth]) / tenth),
        "last_tenth": ms(sum(durations[-tenth:]) / tenth),
    }


async def interleaved(
    rounds: int, contenders: Mapping[str, Callable[[], Awaitable[Run]]]
) -> dict[str, Run]:
    """Run each contender once per round, in turn, and combine each one's rounds.

    Alternating spreads the machine's drift (autovacuum, page cache, another
    process) over both sides instead of giving it all to whichever ran second.
    """
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, contender in contenders.items():
            runs[name].append(await contender())
    return {name: Run.combined(each) for name, each in runs.items()}


def ratio(ours: Run, raw: Run) -> float:
    """plantcore's rate over the raw library's: 1.0 is no overhead, 0.5 is half the speed."""
    return round(ours.rate / raw.rate, 3) if raw.rate > 0 else 0.0


async def describe_machine(config: BenchConfig) -> Figures:
    """What the figures were taken on: they mean nothing without it."""
    conn = await asyncpg.connect(config.database_url)
    try:
        postgres = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    nc = await nats.connect(config.nats_url)
    try:
        nats_version = nc.connected_server_version
    finally:
        await nc.close()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres,
        "nats_server": f"{nats_version.major}.{nats_version.minor}.{nats_version.patch}",
    }


def emit(name: str, figures: Figures, config: BenchConfig) -> Figures:
    """Print one benchmark's figures as JSON and write them to ``results_dir``."""
    document: Figures = {
        "benchmark": name,
        "quick": config.quick,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": config.machine,
        **figures,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False)
    print(text, flush=True)
    if config.results_dir is not None:
        config.results_dir.mkdir(parents=True, exist_ok=True)
        (config.results_dir / f"{name}.json").write_text(text + "\n", encoding="utf-8")
    return document
