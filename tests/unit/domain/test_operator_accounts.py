"""Managing accounts through the application: register, list, disable, roles and scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.application import PlantApplication
from domain.errors import (
    CodeReused,
    InvalidScope,
    OperatorAccountError,
    OperatorExists,
    UnknownOperator,
    UnknownRole,
)
from domain.operator_directory import directory_id
from domain.permissions import Action
from tests.unit.domain.plant import T0, fields, make_catalog, names, operator_events, stored_events
from tests.unit.domain.secured_plant import PEOPLE, secured_app

LATER = T0 + timedelta(hours=1)


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


def register(app: PlantApplication, username: str, roles: list[str]) -> None:
    app.register_operator(
        username=username,
        full_name=username.title(),
        roles=roles,
        password_hash="h",
        totp_secret_sealed="s",
        actor="admin",
        at=LATER,
    )


def test_registration_lists_the_operator_on_the_directory() -> None:
    app = PlantApplication(make_catalog())
    register(app, "zoe", ["viewer"])
    register(app, "ann", ["auditor", "viewer"])
    directory = stored_events(app, directory_id("plant"))
    assert [(type(e).__name__, fields(e)) for e in directory] == [
        ("Opened", {"plant_id": "plant", "actor": "admin", "at": LATER}),
        ("OperatorListed", {"username": "zoe", "actor": "admin", "at": LATER}),
        ("OperatorListed", {"username": "ann", "actor": "admin", "at": LATER}),
    ]
    assert [op.username for op in app.list_operators()] == ["ann", "zoe"]
    assert app.get_operator("ann").roles == ("auditor", "viewer")


def test_list_operators_of_an_empty_plant() -> None:
    assert PlantApplication(make_catalog()).list_operators() == []


def test_the_people_of_the_secured_plant(app: PlantApplication) -> None:
    listed = {op.username: (op.full_name, op.roles, op.scopes) for op in app.list_operators()}
    assert listed == {user: (name, (role,), (scope,)) for user, name, role, scope in PEOPLE}


def test_a_refused_registration_records_nothing(app: PlantApplication) -> None:
    before = app.recorder.max_notification_id()
    with pytest.raises(UnknownRole):
        register(app, "zoe", ["root"])
    with pytest.raises(OperatorAccountError) as no_role:
        register(app, "zoe", [])
    assert no_role.value.code == "role_required"
    with pytest.raises(OperatorExists):
        register(app, "ana", ["viewer"])
    assert app.recorder.max_notification_id() == before
    assert app.find_operator("zoe") is None
    assert app.get_operator("ana").roles == ("operator",)


def test_unknown_operators(app: PlantApplication) -> None:
    with pytest.raises(UnknownOperator) as unknown:
        app.get_operator("ghost")
    assert unknown.value.username == "ghost"
    with pytest.raises(UnknownOperator):
        app.grant_role(username="ghost", role="viewer", actor="admin", at=LATER)
    assert not app.is_operator_allowed("ghost", Action.VIEW)


# -- disable and enable ----------------------------------------------------------------------


def test_disable_and_enable(app: PlantApplication) -> None:
    assert app.is_operator_allowed("bob", Action.REQUEST_COMMAND, device="pump1")
    assert app.disable_operator(username="bob", reason="left", actor="admin", at=LATER) is True
    assert app.disable_operator(username="bob", reason="left", actor="admin", at=LATER) is False
    assert not app.get_operator("bob").enabled
    # A disabled account may do nothing, whatever its roles and scopes.
    assert not app.is_operator_allowed("bob", Action.VIEW)
    assert app.enable_operator(username="bob", actor="admin", at=LATER) is True
    assert app.enable_operator(username="bob", actor="admin", at=LATER) is False
    assert app.get_operator("bob").enabled
    events = operator_events(app, "bob", after=2)
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("Disabled", {"reason": "left", "actor": "admin", "at": LATER}),
        ("Enabled", {"actor": "admin", "at": LATER}),
    ]


def test_nobody_disables_themselves(app: PlantApplication) -> None:
    with pytest.raises(OperatorAccountError) as refused:
        app.disable_operator(username="ana", reason="x", actor="ana", at=LATER)
    assert (refused.value.username, refused.value.code) == ("ana", "self")
    register(app, "root", ["admin"])
    with pytest.raises(OperatorAccountError) as admin_refused:
        app.disable_operator(username="admin", reason="x", actor="admin", at=LATER)
    assert admin_refused.value.code == "self"
    assert app.get_operator("admin").enabled
    assert names(operator_events(app, "ana")) == ["Registered", "PermissionGranted"]


def test_the_last_admin_cannot_be_disabled(app: PlantApplication) -> None:
    with pytest.raises(OperatorAccountError) as refused:
        app.disable_operator(username="admin", reason="x", actor="bob", at=LATER)
    assert (refused.value.username, refused.value.code) == ("admin", "last_admin")
    assert app.get_operator("admin").enabled
    # With a second admin the first may go; then the second is the last one.
    register(app, "root", ["admin"])
    assert app.disable_operator(username="admin", reason="x", actor="root", at=LATER)
    with pytest.raises(OperatorAccountError) as last:
        app.disable_operator(username="root", reason="x", actor="bob", at=LATER)
    assert last.value.code == "last_admin"


def test_a_disabled_admin_does_not_count(app: PlantApplication) -> None:
    register(app, "root", ["admin", "viewer"])
    app.disable_operator(username="root", reason="holiday", actor="admin", at=LATER)
    with pytest.raises(OperatorAccountError) as refused:
        app.disable_operator(username="admin", reason="x", actor="bob", at=LATER)
    assert refused.value.code == "last_admin"
    app.grant_role(username="admin", role="viewer", actor="admin", at=LATER)
    with pytest.raises(OperatorAccountError) as demoted:
        app.revoke_role(username="admin", role="admin", actor="admin", at=LATER)
    assert demoted.value.code == "last_admin"
    assert app.get_operator("admin").roles == ("admin", "viewer")


# -- roles -----------------------------------------------------------------------------------


def test_grant_and_revoke_roles(app: PlantApplication) -> None:
    assert app.grant_role(username="ana", role="supervisor", actor="admin", at=LATER) is True
    assert app.grant_role(username="ana", role="supervisor", actor="admin", at=LATER) is False
    assert app.is_operator_allowed("ana", Action.SET_PLANT_MODE)
    assert app.revoke_role(username="ana", role="supervisor", actor="admin", at=LATER) is True
    assert app.revoke_role(username="ana", role="supervisor", actor="admin", at=LATER) is False
    assert not app.is_operator_allowed("ana", Action.SET_PLANT_MODE)
    events = operator_events(app, "ana", after=2)
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("RoleGranted", {"role": "supervisor", "actor": "admin", "at": LATER}),
        ("RoleRevoked", {"role": "supervisor", "actor": "admin", "at": LATER}),
    ]
    with pytest.raises(UnknownRole):
        app.grant_role(username="ana", role="superuser", actor="admin", at=LATER)


def test_an_analyst_is_registered_and_granted_like_any_role(app: PlantApplication) -> None:
    register(app, "ida", ["analyst"])
    app.grant_permission(username="ida", scope="device:pump1", actor="admin", at=LATER)
    assert app.get_operator("ida").roles == ("analyst",)
    assert app.is_operator_allowed("ida", Action.READ_HISTORY, device="pump1")
    assert not app.is_operator_allowed("ida", Action.READ_HISTORY, device="valve1")
    assert not app.is_operator_allowed("ida", Action.REQUEST_COMMAND, device="pump1")
    # Recorded by its name, as every role is: the events of the other roles are unchanged.
    assert app.grant_role(username="ana", role="analyst", actor="admin", at=LATER) is True
    granted = operator_events(app, "ana")[-1]
    assert (type(granted).__name__, fields(granted)["role"]) == ("RoleGranted", "analyst")
    assert app.get_operator("ana").roles == ("analyst", "operator")


def test_the_last_role_is_kept(app: PlantApplication) -> None:
    with pytest.raises(OperatorAccountError) as refused:
        app.revoke_role(username="ana", role="operator", actor="admin", at=LATER)
    assert refused.value.code == "role_required"
    assert app.get_operator("ana").roles == ("operator",)


def test_the_last_admin_keeps_the_admin_role(app: PlantApplication) -> None:
    app.grant_role(username="admin", role="viewer", actor="admin", at=LATER)
    with pytest.raises(OperatorAccountError) as refused:
        app.revoke_role(username="admin", role="admin", actor="admin", at=LATER)
    assert refused.value.code == "last_admin"
    register(app, "root", ["admin"])
    assert app.revoke_role(username="admin", role="admin", actor="root", at=LATER)
    assert app.get_operator("admin").roles == ("viewer",)
    # Other roles of the last admin may go.
    app.grant_role(username="root", role="operator", actor="root", at=LATER)
    assert app.revoke_role(username="root", role="operator", actor="root", at=LATER)


# -- scopes ----------------------------------------------------------------------------------


def test_grant_and_revoke_permissions(app: PlantApplication) -> None:
    assert not app.is_operator_allowed(
        "carl", Action.REQUEST_COMMAND, device="valve1", area="north"
    )
    assert app.grant_permission(username="carl", scope="area:north", actor="admin", at=LATER)
    assert not app.grant_permission(username="carl", scope="area:north", actor="admin", at=LATER)
    assert app.is_operator_allowed("carl", Action.REQUEST_COMMAND, device="valve1", area="north")
    assert app.revoke_permission(username="carl", scope="area:north", actor="admin", at=LATER)
    assert not app.revoke_permission(username="carl", scope="area:north", actor="admin", at=LATER)
    assert app.get_operator("carl").scopes == ("device:pump1",)
    events = operator_events(app, "carl", after=2)
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("PermissionGranted", {"scope": "area:north", "actor": "admin", "at": LATER}),
        ("PermissionRevoked", {"scope": "area:north", "actor": "admin", "at": LATER}),
    ]
    with pytest.raises(InvalidScope):
        app.grant_permission(username="carl", scope="everything", actor="admin", at=LATER)
    assert len(operator_events(app, "carl")) == 4


# -- credentials -----------------------------------------------------------------------------


def test_set_password_and_enroll_totp(app: PlantApplication) -> None:
    app.set_password(username="ana", password_hash="argon2:new", actor="ana", at=LATER)
    app.enroll_totp(username="ana", totp_step=9, totp_secret_sealed="sealed:new", at=LATER)
    ana = app.get_operator("ana")
    assert (ana.password_hash, ana.totp_secret_sealed) == ("argon2:new", "sealed:new")
    events = operator_events(app, "ana", after=2)
    assert [(type(e).__name__, fields(e)) for e in events] == [
        ("PasswordSet", {"password_hash": "argon2:new", "actor": "ana", "at": LATER}),
        ("TotpStepUsed", {"step": 9, "actor": "ana", "at": LATER}),
        (
            "TotpEnrolled",
            {"totp_secret_sealed": "sealed:new", "method": "code", "actor": "ana", "at": LATER},
        ),
    ]


def test_a_totp_step_is_used_once_and_only_forward(app: PlantApplication) -> None:
    ana = app.get_operator("ana")
    ana.use_totp_step(500, T0)
    app.save(ana)
    reloaded = app.get_operator("ana")
    assert reloaded.last_totp_step == 500
    for step in (500, 499):
        with pytest.raises(CodeReused):
            reloaded.use_totp_step(step, T0)
    (used,) = operator_events(app, "ana", after=2)
    assert (type(used).__name__, fields(used)) == (
        "TotpStepUsed",
        {"step": 500, "actor": "ana", "at": T0},
    )
