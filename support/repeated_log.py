"""A condition that repeats is logged when it starts and when it ends, not every time.

A failing read of one address fails at every poll, a refused connection at every
retry, a broker outage at every publish: logged each time, they bury the one
line that matters. A :class:`RepeatedLog` keeps one *episode* per key (an
address, a device, a subject): the first occurrence is logged at the given
level, the following ones are only counted, and :meth:`RepeatedLog.ended`
logs, once, that the condition is over and how many times it happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class Episode:
    """One run of a repeated condition: since when, how often, and the latest detail."""

    started: float
    count: int
    detail: str


class RepeatedLog:
    """Episodes of repeated conditions of one kind, each keyed by what it is about."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._level = level
        self._clock = clock
        self._episodes: dict[Hashable, Episode] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._episodes

    def episode(self, key: Hashable) -> Episode | None:
        return self._episodes.get(key)

    def happened(self, key: Hashable, detail: str) -> bool:
        """Count one occurrence; log it only if it starts an episode. Whether it did."""
        episode = self._episodes.get(key)
        if episode is not None:
            episode.count += 1
            episode.detail = detail
            return False
        self._episodes[key] = Episode(self._clock(), 1, detail)
        self._log.log(self._level, "%s %s: %s", self._what, key, detail)
        return True

    def ended(self, key: Hashable) -> Episode | None:
        """Close the key's episode, logging how long it lasted and how often it happened."""
        episode = self._episodes.pop(key, None)
        if episode is not None:
            self._log.info(
                "%s %s is over after %.1f s, %d times; last: %s",
                self._what, key, self._clock() - episode.started, episode.count, episode.detail,
            )  # fmt: skip
        return episode
