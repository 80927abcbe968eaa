"""Operators registered by the first release (one role, the TOTP secret in clear) still load."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.application import PlantApplication
from domain.operator import CLEAR_SECRET_PREFIX, Operator, operator_id
from tests.unit.domain.plant import T0, fields, make_catalog, names, operator_events


def v1_registered(username: str = "olga") -> dict[str, Any]:
    """The state of a ``Registered`` event as the first release stored it."""
    return {
        "timestamp": T0,
        "originator_topic": get_topic(Operator),
        "username": username,
        "full_name": "Olga Vidal",
        "role": "supervisor",
        "password_hash": "argon2-old",
        "totp_secret": "JBSWY3DPEHPK3PXP",
        "actor": "admin",
        "at": T0,
    }


def store_v1_operator(app: PlantApplication, username: str = "olga") -> None:
    """Write a v1 ``Registered`` straight into the recorder, as the old code left it."""
    stored = StoredEvent(
        originator_id=operator_id(username),
        originator_version=1,
        topic=get_topic(Operator.Registered),
        state=app.mapper.transcoder.encode(v1_registered(username)),
    )
    app.recorder.insert_events([stored])


def test_the_upcast_on_a_state_dict() -> None:
    state = v1_registered()
    Operator.Registered.upcast_v1_v2(state)
    assert "role" not in state
    assert "totp_secret" not in state
    assert state["roles"] == ["supervisor"]
    # The clear secret is kept, marked, so that the API can seal it on first use.
    assert state["totp_secret_sealed"] == CLEAR_SECRET_PREFIX + "JBSWY3DPEHPK3PXP"
    assert state["totp_secret_sealed"].startswith("clear:")
    untouched = {"username", "full_name", "password_hash", "actor", "at", "timestamp"}
    assert {k: state[k] for k in untouched} == {k: v1_registered()[k] for k in untouched}


def test_registered_is_version_2() -> None:
    assert Operator.Registered.class_version == 2


def test_a_stored_v1_operator_loads_as_v2() -> None:
    app = PlantApplication(make_catalog())
    store_v1_operator(app)
    operator = app.get_operator("olga")
    assert operator.id == operator_id("olga")
    assert (operator.username, operator.full_name, operator.roles) == (
        "olga",
        "Olga Vidal",
        ("supervisor",),
    )
    assert operator.totp_secret_sealed == "clear:JBSWY3DPEHPK3PXP"
    assert (operator.password_hash, operator.scopes, operator.enabled) == ("argon2-old", (), True)
    (registered,) = operator_events(app, "olga")
    assert fields(registered)["roles"] == ["supervisor"]
    assert "role" not in fields(registered)


def test_a_v1_operator_carries_on_with_new_events() -> None:
    app = PlantApplication(make_catalog())
    store_v1_operator(app)
    later = T0 + timedelta(days=30)
    app.grant_permission(username="olga", scope="area:north", actor="admin", at=later)
    # Olga replaces her clear secret with a code of it, as every such operator should.
    app.enroll_totp(username="olga", totp_step=9, totp_secret_sealed="sealed:new", at=later)
    operator = app.get_operator("olga")
    assert operator.scopes == ("area:north",)
    assert operator.totp_secret_sealed == "sealed:new"
    assert operator.version == 4
    assert names(operator_events(app, "olga")) == [
        "Registered",
        "PermissionGranted",
        "TotpStepUsed",
        "TotpEnrolled",
    ]
    # The stored v1 event itself is left as it was: upcasting happens on every read.
    (first, *_) = app.recorder.select_events(operator_id("olga"))
    assert b'"role":"supervisor"' in first.state
    assert b"class_version" not in first.state
