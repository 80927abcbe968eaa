"""A use case that loses the version race tries again alone, and so wins, however many race.

A stand-in store holds one aggregate's version and refuses a save made on an
older one, as the event store does; the use case loads, takes a moment to
decide, and saves. Many threads run it at once, far more than it has attempts.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from eventsourcing.persistence import IntegrityError

from domain.time import retry_on_conflict

RACERS = 8
RACES = 25


class VersionedStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.losses = 0

    def load(self) -> int:
        with self._lock:
            return self.version

    def save(self, loaded: int) -> None:
        with self._lock:
            if self.version != loaded:
                self.losses += 1
                raise IntegrityError(f"version {loaded + 1} exists")
            self.version = loaded + 1


def race(store: VersionedStore) -> None:
    """``RACERS`` records at once, whose first attempts all decide on the same version."""
    everyone_loaded = threading.Barrier(RACERS, timeout=10)
    first_attempt = threading.local()

    @retry_on_conflict
    def record() -> None:
        loaded = store.load()
        if not getattr(first_attempt, "made", False):
            first_attempt.made = True
            everyone_loaded.wait()
        store.save(loaded)

    with ThreadPoolExecutor(RACERS) as pool:
        for future in [pool.submit(record) for _ in range(RACERS)]:
            future.result()


def test_every_racer_is_recorded_once_however_many_race() -> None:
    store = VersionedStore()
    for _ in range(RACES):
        race(store)

    assert store.version == RACERS * RACES
    # One winner a race; every loser lost once, then tried again alone and won.
    assert store.losses == (RACERS - 1) * RACES


def test_a_use_case_called_by_a_use_case_runs_within_its_turn() -> None:
    calls: list[str] = []

    @retry_on_conflict
    def inner() -> None:
        calls.append("inner")

    @retry_on_conflict
    def outer() -> None:
        inner()
        calls.append("outer")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(outer) for _ in range(4)]:
            future.result(timeout=5)
    assert calls == ["inner", "outer"] * 4
