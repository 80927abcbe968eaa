from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import CodeReused, InvalidScope, OperatorAccountError, UnknownRole
from domain.operator import Operator, operator_id
from domain.second_factor import SecondFactorPolicy
from tests.unit.domain.plant import T0, fields


def new_operator(username: str = "ana") -> Operator:
    return Operator.register(
        username=username,
        full_name="Ana Gil",
        roles=["operator"],
        password_hash="argon2-hash",
        totp_secret_sealed="BASE32SECRET",
        actor="admin",
        at=T0,
    )


def test_id_is_derived_from_the_username() -> None:
    assert new_operator("ana").id == operator_id("ana") == new_operator("ana").id
    assert operator_id("ana") != operator_id("bob")


def test_registered_event_carries_who_and_when() -> None:
    (registered,) = new_operator().collect_events()
    assert type(registered).__name__ == "Registered"
    assert (registered.actor, registered.at, registered.username) == ("admin", T0, "ana")  # type: ignore[attr-defined]


def test_steps_only_move_forward() -> None:
    assert new_operator().last_totp_step is None
    operator = new_operator()
    operator.use_totp_step(100, T0)
    operator.use_totp_step(101, T0 + timedelta(seconds=30))
    for step in (101, 100, 5):
        with pytest.raises(CodeReused) as reused:
            operator.use_totp_step(step, T0)
        assert (reused.value.username, reused.value.step) == ("ana", step)
    assert operator.last_totp_step == 101
    used = operator.collect_events()[1:]
    assert [(e.step, e.actor) for e in used] == [(100, "ana"), (101, "ana")]  # type: ignore[attr-defined]


def test_repr_never_shows_credentials() -> None:
    text = repr(new_operator())
    assert "ana" in text
    assert "argon2-hash" not in text
    assert "BASE32SECRET" not in text


def test_registration_validates_and_sorts_the_roles() -> None:
    operator = Operator.register(
        username="carl",
        full_name="Carl Ortiz",
        roles=["supervisor", "operator", "supervisor"],
        password_hash="h",
        totp_secret_sealed="sealed",
        actor="admin",
        at=T0,
    )
    assert list(operator.roles) == ["operator", "supervisor"]
    assert (operator.scopes, operator.enabled, operator.failures) == ((), True, 0)
    assert operator.locked_until is None
    (registered,) = operator.collect_events()
    assert fields(registered) == {
        "username": "carl",
        "full_name": "Carl Ortiz",
        "roles": ["operator", "supervisor"],
        "password_hash": "h",
        "totp_secret_sealed": "sealed",
        "actor": "admin",
        "at": T0,
    }


@pytest.mark.parametrize(
    ("roles", "error"),
    [(["operator", "root"], UnknownRole), ([], OperatorAccountError)],
)
def test_registration_needs_known_roles(roles: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        Operator.register(
            username="x",
            full_name="X",
            roles=roles,
            password_hash="h",
            totp_secret_sealed="s",
            actor="admin",
            at=T0,
        )


def test_roles_granted_and_revoked() -> None:
    operator = new_operator()
    operator.collect_events()
    assert operator.grant_role("supervisor", actor="admin", at=T0) is True
    assert operator.grant_role("supervisor", actor="admin", at=T0) is False
    assert list(operator.roles) == ["operator", "supervisor"]
    with pytest.raises(UnknownRole):
        operator.grant_role("root", actor="admin", at=T0)
    assert operator.revoke_role("operator", actor="admin", at=T0) is True
    assert operator.revoke_role("operator", actor="admin", at=T0) is False
    assert list(operator.roles) == ["supervisor"]
    # The last role stays: an account without one could do nothing, not even be seen.
    with pytest.raises(OperatorAccountError) as kept:
        operator.revoke_role("supervisor", actor="admin", at=T0)
    assert kept.value.code == "role_required"
    events = operator.collect_events()
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("RoleGranted", {"role": "supervisor", "actor": "admin", "at": T0}),
        ("RoleRevoked", {"role": "operator", "actor": "admin", "at": T0}),
    ]


def test_permissions_are_recorded_in_their_canonical_form() -> None:
    operator = new_operator()
    operator.collect_events()
    assert operator.grant_permission(" area: north ", actor="admin", at=T0) is True
    assert operator.grant_permission("area:north", actor="admin", at=T0) is False
    assert operator.grant_permission("device:pump1", actor="admin", at=T0) is True
    assert list(operator.scopes) == ["area:north", "device:pump1"]
    with pytest.raises(InvalidScope):
        operator.grant_permission("zone:1", actor="admin", at=T0)
    assert operator.revoke_permission("device:pump1", actor="admin", at=T0) is True
    assert operator.revoke_permission("device:pump1", actor="admin", at=T0) is False
    assert list(operator.scopes) == ["area:north"]
    events = operator.collect_events()
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("PermissionGranted", {"scope": "area:north", "actor": "admin", "at": T0}),
        ("PermissionGranted", {"scope": "device:pump1", "actor": "admin", "at": T0}),
        ("PermissionRevoked", {"scope": "device:pump1", "actor": "admin", "at": T0}),
    ]


def test_credentials_are_replaced_by_events() -> None:
    operator = new_operator()
    operator.collect_events()
    later = T0 + timedelta(days=1)
    operator.set_password("argon2-new", actor="ana", at=later)
    refusal = operator.enroll_totp("sealed-new", step=9, policy=SecondFactorPolicy(), at=later)
    assert refusal is None
    assert (operator.password_hash, operator.totp_secret_sealed) == ("argon2-new", "sealed-new")
    events = operator.collect_events()
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("PasswordSet", {"password_hash": "argon2-new", "actor": "ana", "at": later}),
        ("TotpStepUsed", {"step": 9, "actor": "ana", "at": later}),
        (
            "TotpEnrolled",
            {"totp_secret_sealed": "sealed-new", "method": "code", "actor": "ana", "at": later},
        ),
    ]
