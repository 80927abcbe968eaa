"""Exponential backoff with jitter between reconnect attempts.

The ceiling doubles from ``base`` up to ``cap`` with each failed attempt and
goes back to ``base`` on :meth:`Backoff.reset` (the supervisor resets after a
good poll, not after a bare connect, so a device that accepts and then drops
connections does not get hammered). Jitter spreads a plant's devices apart
after a network outage:

- ``full``: uniform in ``[0, ceiling]`` (the widest spread);
- ``equal``: ``ceiling / 2`` plus uniform in ``[0, ceiling / 2]`` (never
  retries sooner than half the ceiling).

Randomness comes from an injected :class:`random.Random`, so tests seed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

Jitter = Literal["full", "equal"]


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The un-jittered delay before retry number ``attempt`` (0-based)."""
    # min() before the power would still overflow for huge attempts; cap the exponent.
    return min(cap, base * 2.0 ** min(attempt, 64))


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    jitter: Jitter = "full"
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        top = ceiling(self.attempt, self.base, self.cap)
        self.attempt += 1
        if self.jitter == "full":
            return self.rng.uniform(0.0, top)
        return top / 2 + self.rng.uniform(0.0, top / 2)

    def reset(self) -> None:
        self.attempt = 0
