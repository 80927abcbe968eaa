"""Exponential backoff with jitter between attempts, never longer than its cap.

The ceiling doubles from ``base`` up to ``cap`` with each failed attempt and
goes back to ``base`` on :meth:`Backoff.reset`. Each delay is drawn uniformly
between half the ceiling (never less than ``base``) and the ceiling: jitter
spreads a plant's devices apart after a network outage, and no delay is ever
shorter than ``base`` nor longer than ``cap``. With ``base == cap`` every delay
is exactly ``base``, the seeds' fixed reconnect delay.

``immediate_first``: the first attempt after a reset is not delayed at all (a
device supervisor retries a lost connection at once, then waits).

Randomness comes from an injected :class:`random.Random`, so tests seed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest delay before delayed retry number ``attempt`` (0-based)."""
    # min() before the power would still overflow for huge attempts; cap the exponent.
    return min(cap, base * 2.0 ** min(attempt, 64))


@dataclass
class Backoff:
    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)
    immediate_first: bool = False
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got {self.base:g} and {self.cap:g}")

    def next_delay(self) -> float:
        attempt = self.attempt
        self.attempt += 1
        if self.immediate_first:
            if attempt == 0:
                return 0.0
            attempt -= 1
        top = ceiling(attempt, self.base, self.cap)
        return self.rng.uniform(max(self.base, top / 2), top)

    def reset(self) -> None:
        self.attempt = 0
