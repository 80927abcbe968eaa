"""A small plant, a fixed clock and registered operators, shared by the domain's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.application import project_aggregate

from domain.application import PlantApplication
from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.command import ControlCommand

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

PLANT_TAGS = (
    TagLimits("pump1", "speed", "rpm", writable=True, kind=ValueKind.NUMBER, low=0, high=3000),
    TagLimits("pump1", "running", "", writable=True, kind=ValueKind.BOOL, low=None, high=None),
    TagLimits("pump1", "flow", "m3/h", writable=False, kind=ValueKind.NUMBER, low=0, high=50),
    TagLimits("valve1", "position", "%", writable=True, kind=ValueKind.INTEGER, low=0, high=100),
)


def make_catalog() -> TagCatalog:
    return TagCatalog(PLANT_TAGS)


def make_app() -> PlantApplication:
    app = PlantApplication(make_catalog())
    for username in ("ana", "bob"):
        app.register_operator(
            username=username,
            full_name=username.title(),
            role="operator",
            password_hash="argon2-hash",
            totp_secret="BASE32SECRET",
            actor="admin",
            at=T0,
        )
    return app


def event_names(app: PlantApplication, command_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.command_events(command_id)]


def replayed(app: PlantApplication, command_id: UUID) -> ControlCommand:
    """The command rebuilt from nothing but its stored events."""
    command: ControlCommand | None = project_aggregate(None, app.command_events(command_id))
    assert command is not None
    return command
