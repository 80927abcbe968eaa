"""A small plant, a fixed clock and registered operators, shared by the domain's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import DomainEvent

from domain.application import PlantApplication
from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.command import ControlCommand
from domain.operator import operator_id

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

PLANT_TAGS = (
    TagLimits("pump1", "speed", "rpm", writable=True, kind=ValueKind.NUMBER, low=0, high=3000),
    TagLimits("pump1", "running", "", writable=True, kind=ValueKind.BOOL, low=None, high=None),
    TagLimits("pump1", "flow", "m3/h", writable=False, kind=ValueKind.NUMBER, low=0, high=50),
    TagLimits("valve1", "position", "%", writable=True, kind=ValueKind.INTEGER, low=0, high=100),
)

# What every event carries besides its own fields.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def make_catalog() -> TagCatalog:
    return TagCatalog(PLANT_TAGS)


def make_app() -> PlantApplication:
    """Ana and Bob, operators who may command anything in the plant."""
    app = PlantApplication(make_catalog())
    for username in ("ana", "bob"):
        app.register_operator(
            username=username,
            full_name=username.title(),
            roles=["operator"],
            password_hash="argon2-hash",
            totp_secret_sealed="sealed:BASE32SECRET",
            actor="admin",
            at=T0,
        )
        app.grant_permission(username=username, scope="plant", actor="admin", at=T0)
    return app


def event_names(app: PlantApplication, command_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.command_events(command_id)]


def replayed(app: PlantApplication, command_id: UUID) -> ControlCommand:
    """The command rebuilt from nothing but its stored events."""
    command: ControlCommand | None = project_aggregate(None, app.command_events(command_id))
    assert command is not None
    return command


def stored_events(app: PlantApplication, aggregate_id: UUID, after: int = 0) -> list[DomainEvent]:
    """Any aggregate's stored events after version ``after``, oldest first."""
    return [e for e in app.events.get(aggregate_id, gt=after) if isinstance(e, DomainEvent)]


def operator_events(app: PlantApplication, username: str, after: int = 0) -> list[DomainEvent]:
    return stored_events(app, operator_id(username), after)


def names(events: list[DomainEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def fields(event: object) -> dict[str, Any]:
    """An event's own fields, without the envelope (id, version, timestamp, topic)."""
    return {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
