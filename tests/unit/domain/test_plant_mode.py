"""The plant mode: normal until someone switches it, with a reason, on the record."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.application import PlantApplication
from domain.errors import ModeReasonRequired
from domain.plant_mode import Mode, plant_mode_id
from tests.unit.domain.plant import T0, fields, make_catalog, names, stored_events

LATER = T0 + timedelta(hours=1)


@pytest.fixture
def app() -> PlantApplication:
    return PlantApplication(make_catalog())


def mode_events(app: PlantApplication) -> list[tuple[str, dict[str, object]]]:
    return [(type(e).__name__, fields(e)) for e in stored_events(app, plant_mode_id("plant"))]


def test_a_plant_that_never_switched_is_normal(app: PlantApplication) -> None:
    assert app.plant_mode() is Mode.NORMAL
    assert app.find_plant_mode() is None


def test_a_change_is_recorded_with_who_why_and_the_previous_mode(app: PlantApplication) -> None:
    plant_mode = app.set_plant_mode(
        mode=Mode.READ_ONLY, reason="  intrusion suspected ", actor="admin", at=T0
    )
    assert app.plant_mode() is Mode.READ_ONLY
    assert (plant_mode.mode, plant_mode.reason, plant_mode.changed_by, plant_mode.changed_at) == (
        Mode.READ_ONLY,
        "intrusion suspected",
        "admin",
        T0,
    )
    app.set_plant_mode(mode=Mode.SIMULATION, reason="training", actor="sup", at=LATER)
    assert app.plant_mode() is Mode.SIMULATION
    assert mode_events(app) == [
        ("Started", {"plant_id": "plant", "actor": "admin", "at": T0}),
        (
            "ModeChanged",
            {
                "mode": "read_only",
                "previous": "normal",
                "reason": "intrusion suspected",
                "actor": "admin",
                "at": T0,
            },
        ),
        (
            "ModeChanged",
            {
                "mode": "simulation",
                "previous": "read_only",
                "reason": "training",
                "actor": "sup",
                "at": LATER,
            },
        ),
    ]


@pytest.mark.parametrize("reason", ["", "   ", "\n"])
def test_a_change_needs_a_reason(app: PlantApplication, reason: str) -> None:
    with pytest.raises(ModeReasonRequired):
        app.set_plant_mode(mode=Mode.READ_ONLY, reason=reason, actor="admin", at=T0)
    assert app.plant_mode() is Mode.NORMAL
    assert app.find_plant_mode() is None
    app.set_plant_mode(mode=Mode.READ_ONLY, reason="drill", actor="admin", at=T0)
    with pytest.raises(ModeReasonRequired):
        app.set_plant_mode(mode=Mode.NORMAL, reason=reason, actor="admin", at=LATER)
    assert app.plant_mode() is Mode.READ_ONLY
    assert names(stored_events(app, plant_mode_id("plant"))) == ["Started", "ModeChanged"]


def test_setting_the_current_mode_again_records_nothing(app: PlantApplication) -> None:
    app.set_plant_mode(mode=Mode.SIMULATION, reason="training", actor="admin", at=T0)
    before = mode_events(app)
    plant_mode = app.set_plant_mode(mode=Mode.SIMULATION, reason="again", actor="bob", at=LATER)
    # Not even a reason is needed to stay where the plant is.
    app.set_plant_mode(mode=Mode.SIMULATION, reason="", actor="bob", at=LATER)
    assert mode_events(app) == before
    assert (plant_mode.reason, plant_mode.changed_by) == ("training", "admin")


# BUG (domain/access.py, set_plant_mode): on a plant that never switched, the PlantMode is
# created (a pending ``Started``) before ``change`` decides nothing changed, and
# ``if plant_mode.pending_events: self.save(...)`` then saves that bare ``Started``.
def test_setting_normal_on_a_plant_that_never_switched_records_nothing(
    app: PlantApplication,
) -> None:
    before = app.recorder.max_notification_id()
    plant_mode = app.set_plant_mode(mode=Mode.NORMAL, reason="", actor="admin", at=T0)
    assert plant_mode.mode is Mode.NORMAL
    assert app.plant_mode() is Mode.NORMAL
    # Expected: no ModeChanged, and no Started either, since nothing changed.
    assert app.recorder.max_notification_id() == before
    assert app.find_plant_mode() is None


def test_plants_have_their_own_modes() -> None:
    north = PlantApplication(make_catalog(), plant_id="north")
    north.set_plant_mode(mode=Mode.READ_ONLY, reason="x", actor="admin", at=T0)
    assert stored_events(north, plant_mode_id("plant")) == []
    assert names(stored_events(north, plant_mode_id("north"))) == ["Started", "ModeChanged"]
