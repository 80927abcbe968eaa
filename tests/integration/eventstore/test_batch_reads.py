"""A batched load on PostgreSQL gives what one load at a time gives, snapshots checked.

The runtime role loads the alarms of a batch with two queries
(:mod:`eventstore.batch_reads`). Each aggregate must come out as the
repository's own ``get`` makes it: from its newest snapshot that agrees with
its events (here, alarms past several snapshots), from its events when the
snapshot was planted, and not at all when it was never stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.alarm import alarm_id
from domain.alarm_flood import flood_id
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.checked_snapshots import OneByOne
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from eventstore.batch_reads import PostgresBatchReads
from plantcore.db_init import InitialisedDatabase
from plantcore.open_application import open_application
from tests.integration.eventstore.forged_snapshots import insert_snapshot, snapshot_versions

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
TEMPLATE = AlarmTransition(
    transition_id="", device="press-1", condition="", kind=AlarmKind.HI,
    priority=AlarmPriority.HIGH, area="press-hall", tag="temperature", active=False,
    suppressed=False, latch=False, value=80.0, limit=80.0, message="temperature high", ts=T0,
)  # fmt: skip


@pytest.fixture
def runtime_app(plant_roles: InitialisedDatabase) -> Iterator[PlantApplication]:
    app = open_application(plant_roles.runtime_url, TagCatalog([]))
    yield app
    app.close()


def chatter(app: PlantApplication, condition: str, transitions: int) -> None:
    """``transitions`` raises and clears of one condition, a minute apart."""
    for n in range(transitions):
        at = T0 + timedelta(minutes=n)
        transition = dataclasses.replace(
            TEMPLATE, transition_id=f"{condition}/{n}", condition=condition,
            active=n % 2 == 0, ts=at,
        )  # fmt: skip
        app.record_alarm_transitions([transition], at)


def state_of(aggregate: object) -> dict[str, object]:
    return {"type": type(aggregate).__name__, **vars(aggregate)}


def test_a_batched_load_is_one_load_at_a_time(
    runtime_app: PlantApplication, plant_roles: InitialisedDatabase
) -> None:
    app = runtime_app
    chatter(app, "long", 130)  # past two snapshots (every 50 events)
    chatter(app, "short", 3)
    chatter(app, "planted", 60)
    planted = alarm_id("press-1", "planted")
    assert app.snapshots is not None
    snapshots = app.snapshots.recorder
    (honest,) = snapshots.select_events(planted)
    # An older state planted as the newest snapshot: neither load may use it.
    insert_snapshot(
        plant_roles.runtime_url,
        StoredEvent(planted, honest.originator_version + 5, honest.topic, honest.state),
    )
    assert len(snapshot_versions(plant_roles.runtime_url, planted)) == 2
    ids = [
        alarm_id("press-1", "long"),
        alarm_id("press-1", "short"),
        planted,
        flood_id("press-hall"),
        uuid4(),  # never stored
    ]
    assert isinstance(app.batch_reads, PostgresBatchReads)
    batched = app.checked_repository.get_many(ids)
    fresh = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        one_at_a_time = {key: fresh.repository.get(key) for key in ids[:-1]}
    finally:
        fresh.close()
    assert set(batched) == set(ids[:-1])
    for key, aggregate in one_at_a_time.items():
        assert state_of(batched[key]) == state_of(aggregate)
    # The reads themselves agree row for row with the library's, one aggregate at a time.
    fallback, reads = OneByOne(), PostgresBatchReads()
    events = app.events.recorder
    after: dict[UUID, int | None] = dict.fromkeys(ids, 3)
    assert reads.after(events, after) == {
        key: rows for key, rows in fallback.after(events, after).items() if rows
    }
    assert reads.newest(snapshots, ids, 2) == {
        key: rows for key, rows in fallback.newest(snapshots, ids, 2).items() if rows
    }
