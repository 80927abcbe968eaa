"""The alarms and area floods one alarm recorder keeps in memory between its batches.

A burst of transitions touches the same alarms batch after batch. Loading each
of them from the store for every batch (its newest snapshots, its events after
them, the snapshot's check) took three quarters of the recorder's time
(ADR 0043); a recorder keeps them here instead, as its last save left them.

This is safe although operators and the sweepers write the same aggregates.
A kept copy that is stale (someone recorded an event on it since) decides a
transition as a fresh one would, because only the recorder changes what a
transition is compared with: whether the process is active or suppressed, the
configuration, the transition ids already recorded, whether a flood or a
chattering spell has started. Where the copy would decide otherwise (a
chattering spell or a flood that a sweeper has ended since) it records an
event, and its save then conflicts with the newer version in the store: the
use case forgets the batch's copies and decides again on fresh loads. A batch
that fails for any other reason forgets them too, since it may have changed
them in memory without saving.

One recorder uses a cache at a time: the aggregates in it are mutable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TypeVar
from uuid import UUID

from domain.alarm import Alarm
from domain.alarm_flood import AlarmFlood

# An alarm holds at most 1,000 transition ids; most hold a few dozen, so 5,000 kept
# alarms cost tens of megabytes, and a plant's active alarms fit many times over.
DEFAULT_CAPACITY = 5000

Kept = Alarm | AlarmFlood
K = TypeVar("K", Alarm, AlarmFlood)


class AlarmCache:
    """Alarms and floods by id, the least recently used dropped past ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"capacity {capacity} must not be negative")
        self._capacity = capacity
        self._kept: OrderedDict[UUID, Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: UUID) -> bool:
        return key in self._kept

    def get(self, key: UUID, kind: type[K]) -> K | None:
        """The kept ``kind`` with this id, or None."""
        kept = self._kept.get(key)
        if not isinstance(kept, kind):
            return None
        self._kept.move_to_end(key)
        return kept

    def keep(self, aggregates: Iterable[Kept]) -> None:
        """Keep these, as saved: none may hold events not yet saved."""
        for aggregate in aggregates:
            if aggregate.pending_events:
                raise ValueError(f"{aggregate.id} has events not saved: it cannot be kept")
            self._kept[aggregate.id] = aggregate
            self._kept.move_to_end(aggregate.id)
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)

    def forget(self, keys: Iterable[UUID]) -> None:
        for key in keys:
            self._kept.pop(key, None)
