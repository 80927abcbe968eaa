"""A recorder's kept alarms and floods: each loaded once, never trusted past a conflict.

The recorder keeps the aggregates it saved (:mod:`domain.alarm_cache`). These
tests drive ``record_alarm_transitions`` with one cache as the recorder does,
and check that every transition is still recorded exactly once (redelivery
changes nothing), that a copy made stale by an operator or a sweeper is never
saved over their events, and that a batch that fails leaves nothing half-done
behind in the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from domain.alarm import Alarm, AlarmState
from domain.alarm_cache import AlarmCache
from domain.alarm_flood import AlarmFlood, flood_id
from domain.application import PlantApplication
from tests.unit.domain.plant import T0
from tests.unit.domain.test_alarm_source import Source


class CountingLoads:
    """Counts the repository's batched loads (ids per call) from now on."""

    def __init__(self, app: PlantApplication, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        repository = app.checked_repository
        get_many = repository.get_many

        def counting(ids: Sequence[UUID]) -> dict[UUID, Any]:
            self.calls.append(len(ids))
            return get_many(ids)

        monkeypatch.setattr(repository, "get_many", counting)


def record(source: Source, cache: AlarmCache, *, active: bool) -> list[Any]:
    return source.app.record_alarm_transitions(
        [source.transition(active=active)], source.now, cache
    )


def test_a_kept_alarm_is_not_loaded_again(
    app: PlantApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, cache = Source(app), AlarmCache()
    record(source, cache, active=True)
    loads = CountingLoads(app, monkeypatch)
    for step in range(6):
        source.tick(61)
        record(source, cache, active=step % 2 == 1)
    assert loads.calls == []
    assert source.events() == ["Defined", "Raised"] + ["Cleared", "Raised"] * 3


def test_one_batched_load_for_a_batch_of_many_alarms(
    app: PlantApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [Source(app, condition=f"c{n}") for n in range(5)]
    for each in sources:
        each.send(active=True)
    loads = CountingLoads(app, monkeypatch)
    app.record_alarm_transitions([s.transition(active=False) for s in sources], sources[0].now)
    # One load of the five alarms, one of their area's flood.
    assert loads.calls == [5, 1]
    assert all(s.state() is AlarmState.RTN_UNACK for s in sources)


def test_a_redelivered_batch_records_nothing_with_or_without_the_cache(
    app: PlantApplication,
) -> None:
    source, cache = Source(app), AlarmCache()
    batch = [source.transition(active=True)]
    app.record_alarm_transitions(batch, source.now, cache)
    source.tick(61)
    clear = [source.transition(active=False)]
    app.record_alarm_transitions(clear, source.now, cache)
    assert app.record_alarm_transitions(batch + clear, source.now, cache) == []
    assert app.record_alarm_transitions(batch + clear, source.now, AlarmCache()) == []
    assert source.events() == ["Defined", "Raised", "Cleared"]


def test_an_alarm_acknowledged_meanwhile_is_decided_again_on_its_stored_state(
    app: PlantApplication,
) -> None:
    source, cache = Source(app), AlarmCache()
    record(source, cache, active=True)
    # An operator acknowledges through the API: the kept copy does not know.
    app.acknowledge_alarm(alarm_id=source.alarm_id, actor="ana", comment="seen", at=source.now)
    source.tick(5)
    changes = record(source, cache, active=False)
    # The stale copy would have said rtn_unack; the conflict made it load the stored one.
    assert [change.state for change in changes] == [AlarmState.NORMAL]
    assert source.events() == ["Defined", "Raised", "Acknowledged", "Cleared"]
    source.tick(5)
    assert [c.state for c in record(source, cache, active=True)] == [AlarmState.UNACK_ACTIVE]


def test_a_flood_ended_by_the_sweeper_is_not_ended_again_by_a_kept_copy(
    app: PlantApplication,
) -> None:
    sources = [Source(app, condition=f"c{n}") for n in range(11)]
    cache = AlarmCache()
    app.record_alarm_transitions(
        [s.transition(active=True) for s in sources], sources[0].now, cache
    )
    flood = app.alarm_flood("press-hall")
    assert flood is not None
    assert flood.flooding
    later = sources[0].now + timedelta(minutes=11)
    assert app.end_alarm_flood_if_over("press-hall", later)
    for each in sources:
        each.now = later
    app.record_alarm_transitions([sources[0].transition(active=False)], later, cache)
    stored = app.alarm_flood("press-hall")
    assert stored is not None
    assert not stored.flooding
    names = [type(e).__name__ for e in app.events.get(flood_id("press-hall"))]
    assert names.count("FloodEnded") == 1


def test_a_failed_save_leaves_no_unsaved_change_in_the_cache(
    app: PlantApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, cache = Source(app), AlarmCache()
    record(source, cache, active=True)
    assert source.alarm_id in cache

    def lost_connection(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the store went away")

    source.tick(61)
    with monkeypatch.context() as patched:
        patched.setattr(app, "save", lost_connection)
        with pytest.raises(ConnectionError):
            record(source, cache, active=False)
    assert source.alarm_id not in cache
    assert flood_id("press-hall") not in cache
    # The redelivered batch is recorded from the stored state.
    assert [c.events for c in record(source, cache, active=False)] == [("Cleared",)]


def test_a_conflict_is_retried_on_fresh_loads(
    app: PlantApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, cache = Source(app), AlarmCache()
    record(source, cache, active=True)
    save = app.save
    conflicts = [IntegrityError("a concurrent save")]

    def conflicting_once(*aggregates: Any, **kwargs: Any) -> Any:
        if conflicts:
            raise conflicts.pop()
        return save(*aggregates, **kwargs)

    monkeypatch.setattr(app, "save", conflicting_once)
    source.tick(61)
    assert [c.events for c in record(source, cache, active=False)] == [("Cleared",)]
    assert source.events() == ["Defined", "Raised", "Cleared"]


def saved_flood(area: str) -> AlarmFlood:
    flood = AlarmFlood(area=area, actor="system", at=T0)
    flood.collect_events()
    return flood


def test_the_cache_drops_the_least_recently_used_and_keeps_only_saved_aggregates() -> None:
    cache = AlarmCache(capacity=2)
    first, second, third = (saved_flood(area) for area in ("a", "b", "c"))
    cache.keep([first, second])
    assert cache.get(first.id, AlarmFlood) is first  # now the most recently used
    assert cache.get(first.id, Alarm) is None  # asked as another kind
    cache.keep([third])
    assert (first.id in cache, second.id in cache, third.id in cache) == (True, False, True)
    with pytest.raises(ValueError, match="not saved"):
        cache.keep([AlarmFlood(area="d", actor="system", at=T0)])
