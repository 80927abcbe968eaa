"""The permission matrix: what each role may do, and where a scope reaches."""

from __future__ import annotations

import itertools

import pytest

from domain.errors import InvalidScope, UnknownRole
from domain.permissions import (
    ROLE_ACTIONS,
    SCOPED_ACTIONS,
    Action,
    Role,
    Scope,
    actions_of,
    is_allowed,
    parse_role,
)

A = Action
ALARM_HANDLING = {A.ACKNOWLEDGE_ALARM, A.SHELVE_ALARM, A.RESET_ALARM_LATCH}
COMMANDING = {A.REQUEST_COMMAND, A.APPROVE_COMMAND}

# The matrix written out again, by hand, from the security design: a change to
# ROLE_ACTIONS has to be made here too, on purpose.
EXPECTED: dict[Role, set[Action]] = {
    Role.ADMIN: {
        A.VIEW,
        A.READ_HISTORY,
        *COMMANDING,
        *ALARM_HANDLING,
        A.REMOVE_ALARM_FROM_SERVICE,
        A.SET_PLANT_MODE,
        A.MANAGE_OPERATORS,
        A.MANAGE_SESSIONS,
        A.READ_HEALTH,
    },
    Role.SUPERVISOR: {
        A.VIEW,
        A.READ_HISTORY,
        *COMMANDING,
        *ALARM_HANDLING,
        A.REMOVE_ALARM_FROM_SERVICE,
        A.SET_PLANT_MODE,
        A.READ_HEALTH,
    },
    Role.OPERATOR: {A.VIEW, A.READ_HISTORY, *COMMANDING, *ALARM_HANDLING},
    Role.VIEWER: {A.VIEW, A.READ_HISTORY},
    Role.ANALYST: {A.VIEW, A.READ_HISTORY},
    Role.AUDITOR: {A.VIEW, A.READ_HISTORY, A.READ_AUDIT, A.READ_HEALTH},
    Role.SERVICE: {A.VIEW, A.REQUEST_COMMAND},
}

EVERY_PAIR = list(itertools.product(Role, Action))


def test_every_role_has_a_row() -> None:
    assert set(ROLE_ACTIONS) == set(Role)


@pytest.mark.parametrize(("role", "action"), EVERY_PAIR, ids=str)
def test_the_matrix(role: Role, action: Action) -> None:
    expected = action in EXPECTED[role]
    assert (action in ROLE_ACTIONS[role]) is expected
    # With a plant-wide scope and a device, only the role decides.
    assert is_allowed([role], ["plant"], action, device="pump1", area="north") is expected


@pytest.mark.parametrize(("role", "action"), EVERY_PAIR, ids=str)
def test_a_scoped_action_needs_a_scope_whatever_the_role(role: Role, action: Action) -> None:
    allowed = is_allowed([role], [], action, device="pump1", area="north")
    assert allowed is (action in EXPECTED[role] and action not in SCOPED_ACTIONS)


def test_the_scoped_actions_are_the_ones_on_a_machine_or_its_past() -> None:
    assert {
        *COMMANDING,
        *ALARM_HANDLING,
        A.REMOVE_ALARM_FROM_SERVICE,
        A.READ_HISTORY,
    } == SCOPED_ACTIONS


def test_service_accounts_never_approve_nor_handle_alarms() -> None:
    service = ROLE_ACTIONS[Role.SERVICE]
    assert A.APPROVE_COMMAND not in service
    assert not service & {*ALARM_HANDLING, A.REMOVE_ALARM_FROM_SERVICE}


def test_service_accounts_read_no_history() -> None:
    assert A.READ_HISTORY not in ROLE_ACTIONS[Role.SERVICE]
    # A program that needs the past gets the analyst role on purpose; roles add up.
    assert is_allowed(["service", "analyst"], ["plant"], A.READ_HISTORY, device="pump1")


def test_roles_add_up_and_unknown_names_allow_nothing() -> None:
    assert actions_of(["viewer", "auditor"]) == {
        A.VIEW,
        A.READ_HISTORY,
        A.READ_AUDIT,
        A.READ_HEALTH,
    }
    assert actions_of(["root"]) == frozenset()
    assert actions_of([]) == frozenset()
    assert not is_allowed(["root"], ["plant"], A.VIEW)
    assert is_allowed(["root", "viewer"], [], A.VIEW)


def test_parse_role() -> None:
    assert parse_role("supervisor") is Role.SUPERVISOR
    for text in ("root", "Admin", "", " operator"):
        with pytest.raises(UnknownRole) as unknown:
            parse_role(text)
        assert unknown.value.role == text


# -- scopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "name", "canonical"),
    [
        ("plant", "plant", "", "plant"),
        ("  plant ", "plant", "", "plant"),
        ("area:north", "area", "north", "area:north"),
        ("area: north ", "area", "north", "area:north"),
        ("device:pump1", "device", "pump1", "device:pump1"),
        (" device:pump1", "device", "pump1", "device:pump1"),
    ],
)
def test_valid_scopes(text: str, kind: str, name: str, canonical: str) -> None:
    scope = Scope.parse(text)
    assert (scope.kind, scope.name, str(scope)) == (kind, name, canonical)
    assert Scope.parse(str(scope)) == scope


@pytest.mark.parametrize(
    "text",
    ["", " ", "Plant", "plants", "area", "area:", "area:  ", "device:", "zone:x", "pump1", ":x"],
)
def test_invalid_scopes(text: str) -> None:
    with pytest.raises(InvalidScope) as invalid:
        Scope.parse(text)
    assert invalid.value.scope == text


def test_the_plant_scope_covers_every_device() -> None:
    plant = Scope.parse("plant")
    assert plant.covers("pump1", "north")
    assert plant.covers("mixer9", "")


def test_a_device_scope_covers_that_device_only() -> None:
    scope = Scope.parse("device:pump1")
    assert scope.covers("pump1", "north")
    assert scope.covers("pump1", "")
    assert not scope.covers("pump10", "north")
    assert not scope.covers("valve1", "north")


def test_an_area_scope_covers_the_devices_of_that_area() -> None:
    scope = Scope.parse("area:north")
    assert scope.covers("pump1", "north")
    assert scope.covers("valve1", "north")
    assert not scope.covers("sim1", "south")
    # A device outside every area is reached by a device or plant scope only.
    assert not scope.covers("mixer9", "")
    # The area's name is not a device's name.
    assert not scope.covers("north", "")


def test_a_scoped_action_without_a_device_is_refused() -> None:
    assert not is_allowed(["admin"], ["plant"], A.REQUEST_COMMAND)
    assert not is_allowed(["operator"], ["plant"], A.ACKNOWLEDGE_ALARM, area="north")
    # An action that is not on a machine needs no device and no scope.
    assert is_allowed(["admin"], [], A.MANAGE_OPERATORS)


def test_scopes_on_commands() -> None:
    request = A.REQUEST_COMMAND
    assert is_allowed(["operator"], ["device:pump1"], request, device="pump1", area="north")
    assert not is_allowed(["operator"], ["device:pump1"], request, device="valve1", area="north")
    assert is_allowed(["operator"], ["area:north"], request, device="valve1", area="north")
    assert not is_allowed(["operator"], ["area:north"], request, device="sim1", area="south")
    assert not is_allowed(["operator"], ["area:north"], request, device="mixer9")
    assert is_allowed(
        ["operator"], ["area:south", "device:mixer9"], request, device="mixer9", area=""
    )
    # A scope without the role is nothing.
    assert not is_allowed(["viewer"], ["plant"], request, device="pump1", area="north")


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_scopes_on_history(role: str) -> None:
    read = A.READ_HISTORY
    assert is_allowed([role], ["device:pump1"], read, device="pump1", area="north")
    assert not is_allowed([role], ["device:pump1"], read, device="valve1", area="north")
    assert is_allowed([role], ["area:north"], read, device="valve1", area="north")
    assert not is_allowed([role], ["area:north"], read, device="sim1", area="south")
    assert is_allowed([role], ["plant"], read, device="mixer9")
    # No scope, no history: the role alone reads no device's past.
    assert not is_allowed([role], [], read, device="pump1", area="north")
    assert not is_allowed([role], ["plant"], read)
