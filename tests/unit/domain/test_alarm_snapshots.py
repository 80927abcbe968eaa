"""A long-lived alarm loads from a snapshot, and the snapshot is exactly what a replay gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from eventsourcing.application import project_aggregate

from domain.alarm import Alarm
from domain.alarm_flood import AlarmFlood, flood_id
from domain.application import PlantApplication
from tests.unit.domain.test_alarm_source import Source


def _long_lived(app: PlantApplication, transitions: int) -> Source:
    source = Source(app)
    for serial in range(transitions):
        source.tick(61)
        source.send(active=serial % 2 == 0)
    return source


def _count_events_read(app: PlantApplication) -> list[int]:
    """Count the events each read of the event store yields, from now on."""
    reads: list[int] = []
    original = app.events.get

    def counting_get(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events = list(original(*args, **kwargs))
        reads.append(len(events))
        return iter(events)

    app.events.get = counting_get  # type: ignore[method-assign]
    return reads


def test_a_long_lived_alarm_loads_from_its_latest_snapshot(app: PlantApplication) -> None:
    source = _long_lived(app, 320)
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(source.alarm_id, desc=True, limit=1))
    assert snapshots
    assert snapshots[0].originator_version == 300
    reads = _count_events_read(app)
    alarm = app.get_alarm(source.alarm_id)
    assert alarm.version == 321
    assert reads == [21]


def test_a_snapshot_restores_exactly_what_a_replay_gives(app: PlantApplication) -> None:
    source = _long_lived(app, 120)
    app.acknowledge_alarm(alarm_id=source.alarm_id, actor="ana", comment="", at=source.tick(1))
    app.shelve_alarm(
        alarm_id=source.alarm_id,
        actor="ana",
        reason="tests",
        duration=timedelta(hours=1),
        at=source.tick(1),
    )
    loaded = app.get_alarm(source.alarm_id)
    replayed: Alarm | None = project_aggregate(None, app.alarm_events(source.alarm_id))
    assert replayed is not None
    assert loaded == replayed
    assert loaded.kind is replayed.kind
    assert loaded.raised_at == replayed.raised_at


def test_the_area_flood_is_snapshotted_too(app: PlantApplication) -> None:
    _long_lived(app, 120)
    assert app.snapshots is not None
    assert list(app.snapshots.get(flood_id("press-hall")))
    loaded = app.alarm_flood("press-hall")
    replayed: AlarmFlood | None = project_aggregate(None, app.events.get(flood_id("press-hall")))
    assert loaded == replayed
