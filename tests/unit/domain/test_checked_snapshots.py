"""A snapshot is loaded from only once it agrees with its events; honest ones always do.

Every kind of aggregate the plant snapshots is driven past several snapshots,
then loaded by a repository that has checked nothing yet (a restarted
process): it must accept every honest snapshot and give what a replay of the
events gives. A snapshot planted in the store is refused, logged once, and the
aggregate comes from its events.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from uuid import UUID

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import JSONTranscoder, StoredEvent

from domain.alarm_flood import flood_id
from domain.application import PlantApplication
from domain.checked_snapshots import (
    CheckedSnapshotRepository,
    differing_fields,
    snapshot_disagreement,
)
from domain.errors import LoginRefused
from domain.operator import Operator, operator_id
from domain.operator_directory import directory_id
from tests.unit.domain.plant import T0
from tests.unit.domain.test_alarm_source import Source

LATER = T0 + timedelta(minutes=1)


def long_lived_everything(app: PlantApplication) -> list[UUID]:
    """An alarm, its area's flood, an operator and the directory, each past a snapshot."""
    source = Source(app)
    for serial in range(120):
        source.tick(61)
        source.send(active=serial % 2 == 0)
    for step in range(110):
        app.record_access_denied(
            username="ana", action="operators.manage", target="", source="10.0.0.1", at=LATER
        )
        with pytest.raises(LoginRefused):
            app.log_in(
                username=f"nobody-{step}", password_matches=False, source="10.0.0.1",
                session_id=f"s{step}", refresh_hash="r", at=LATER,
            )  # fmt: skip
    return [source.alarm_id, flood_id("press-hall"), operator_id("ana"), directory_id(app.plant_id)]


def test_every_honest_snapshot_agrees_with_its_events(
    app: PlantApplication, caplog: pytest.LogCaptureFixture
) -> None:
    aggregates = long_lived_everything(app)
    assert app.snapshots is not None
    cold = CheckedSnapshotRepository(app.events, app.snapshots)

    with caplog.at_level(logging.WARNING):
        for aggregate_id in aggregates:
            assert list(app.snapshots.get(aggregate_id)), aggregate_id
            loaded: Aggregate = cold.get(aggregate_id)
            assert loaded == project_aggregate(None, app.events.get(aggregate_id))
    assert caplog.records == []


def test_a_planted_snapshot_is_refused_once_and_the_events_decide(
    app: PlantApplication, caplog: pytest.LogCaptureFixture
) -> None:
    ana = app.get_operator("ana")
    version = ana.version
    ana.grant_role("admin", actor="intruder", at=LATER)
    forged = app.mapper.to_stored_event(Operator.Snapshot.take(ana))
    assert app.snapshots is not None
    app.snapshots.recorder.insert_events(
        [StoredEvent(ana.id, version, forged.topic, forged.state)]  # at the version it stands at
    )

    with caplog.at_level(logging.WARNING):
        assert app.get_operator("ana").roles == ("operator",)
        assert app.get_operator("ana").roles == ("operator",)
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == [
        f"the snapshot of {ana.id} at version {version} disagrees with its events"
    ]
    assert "roles" in caplog.text


@pytest.mark.parametrize(
    "state", [b"not json", b"[]", b'{"topic": "nowhere:Nothing", "state": {}}', b"[" * 100_000]
)
def test_a_row_that_is_no_snapshot_at_all_is_refused_like_a_forged_one(
    app: PlantApplication, caplog: pytest.LogCaptureFixture, state: bytes
) -> None:
    ana = app.get_operator("ana")
    assert app.snapshots is not None
    stored = app.mapper.to_stored_event(Operator.Snapshot.take(ana))
    app.snapshots.recorder.insert_events([StoredEvent(ana.id, ana.version, stored.topic, state)])

    with caplog.at_level(logging.WARNING):
        assert app.get_operator("ana") == ana
    assert "it cannot be read" in caplog.text


def test_a_snapshot_already_stored_at_a_version_never_fails_the_save(
    app: PlantApplication,
) -> None:
    ana = app.get_operator("ana")
    ahead = app.mapper.to_stored_event(Operator.Snapshot.take(ana))
    assert app.snapshots is not None
    app.snapshots.recorder.insert_events(
        [StoredEvent(ahead.originator_id, 50, ahead.topic, ahead.state)]
    )

    for _ in range(50):
        app.record_access_denied(
            username="ana", action="operators.manage", target="", source="10.0.0.1", at=LATER
        )

    assert app.get_operator("ana").version == ana.version + 50
    assert app.get_operator("ana").roles == ("operator",)


def test_states_are_compared_as_they_are_stored() -> None:
    transcoder = JSONTranscoder()
    stored = {"_roles": ["a", "b"], "_limits": {"hi": 2, "lo": 1}, "_value": math.nan}
    replayed = {"_value": math.nan, "_limits": {"lo": 1, "hi": 2}, "_roles": ("a", "b")}
    assert differing_fields(stored, replayed, transcoder) == []
    assert differing_fields(stored, {**replayed, "_roles": ["a"], "_extra": 1}, transcoder) == [
        "extra",
        "roles",
    ]


class Tank(Aggregate):
    """Its second shape added a level, which older snapshots lack and are upcast to."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, object]) -> None:
        state["_level"] = 0

    @event("Registered")
    def __init__(self, name: str) -> None:
        self._name = name
        self._level = 0

    @event("Filled")
    def fill(self, level: int) -> None:
        self._level = level


def test_a_snapshot_of_an_older_shape_agrees_once_upcast(app: PlantApplication) -> None:
    tank = Tank("T-1")
    taken = app.mapper.to_stored_event(Tank.Snapshot.take(tank))
    older = app.mapper.transcoder.decode(taken.state)
    for name in ("class_version", "_level"):
        older["state"].pop(name)
    stored = StoredEvent(tank.id, 1, taken.topic, app.mapper.transcoder.encode(older))
    assert snapshot_disagreement(stored, tank, app.mapper) is None

    tank.fill(7)
    forged = StoredEvent(tank.id, 2, taken.topic, app.mapper.transcoder.encode(older))
    assert snapshot_disagreement(forged, tank, app.mapper) == "it differs in level, modified_on"
