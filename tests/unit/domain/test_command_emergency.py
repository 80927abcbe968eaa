"""Emergency actions: released at once by their authenticated requester, without a code."""

from __future__ import annotations

import pytest

from domain.application import PlantApplication
from domain.catalog import TagLimits, ValueKind
from domain.command import CommandStatus
from domain.errors import CommandRefused
from tests.unit.domain.plant import T0, event_names, fields, replayed
from tests.unit.domain.secured_plant import challenged, secured_app


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


@pytest.mark.parametrize(
    ("device", "tag", "value", "recorded"),
    [
        ("pump1", "speed", 0, 0),
        ("pump1", "speed", 0.0, 0.0),
        ("pump1", "running", False, False),
        # A critical tag's emergency value needs no second person either.
        ("valve1", "position", 0, 0),
        ("valve1", "position", 0.0, 0),
    ],
)
def test_an_emergency_value_is_confirmed_at_once(
    app: PlantApplication, device: str, tag: str, value: object, recorded: object
) -> None:
    ticket = app.request_command(actor="ana", device=device, tag=tag, value=value, at=T0)
    assert (ticket.challenge, ticket.expires_at) == ("none", T0)
    assert event_names(app, ticket.command_id) == ["Requested", "Confirmed"]
    requested, confirmed = app.command_events(ticket.command_id)
    assert fields(requested)["value"] == recorded
    assert type(fields(requested)["value"]) is type(recorded)
    assert fields(confirmed) == {
        "method": "none",
        "meaning": "execution",
        "signer_name": "Ana Gil",
        "emergency": True,
        "actor": "ana",
        "at": T0,
    }
    command = app.get_command(ticket.command_id)
    assert (command.status, command.emergency, command.approved_by) == (
        CommandStatus.CONFIRMED,
        True,
        None,
    )
    assert replayed(app, ticket.command_id) == command
    # No second factor was asked, so none was spent.
    assert app.get_operator("ana").last_totp_step is None


def test_an_emergency_command_goes_on_to_the_write(app: PlantApplication) -> None:
    ticket = app.request_command(actor="bob", device="pump1", tag="running", value=False, at=T0)
    app.record_dispatch(ticket.command_id, T0)
    app.record_write_succeeded(ticket.command_id, False, T0)
    assert app.get_command(ticket.command_id).status is CommandStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("device", "tag", "value"),
    [
        ("pump1", "speed", 1),
        ("pump1", "running", True),
        ("valve1", "position", 1),
    ],
)
def test_other_values_are_challenged(
    app: PlantApplication, device: str, tag: str, value: object
) -> None:
    command_id = challenged(app, device=device, tag=tag, value=value)
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued"]
    assert not app.get_command(command_id).emergency


def test_a_bool_does_not_pass_for_a_number_on_a_number_tag(app: PlantApplication) -> None:
    # False == 0 in Python: the stop value of a number tag must not let a boolean through.
    with pytest.raises(CommandRefused) as refused:
        app.request_command(actor="ana", device="pump1", tag="speed", value=False, at=T0)
    assert refused.value.reason == "not_a_number"
    assert event_names(app, refused.value.command_id) == ["Requested", "Rejected"]


def limits(emergency_values: tuple[float | int | bool, ...], kind: ValueKind) -> TagLimits:
    return TagLimits("d", "t", "", True, kind, None, None, emergency_values=emergency_values)


@pytest.mark.parametrize(
    ("emergency_values", "kind", "value", "expected"),
    [
        ((0,), ValueKind.NUMBER, 0, True),
        ((0,), ValueKind.NUMBER, 0.0, True),
        ((0,), ValueKind.NUMBER, False, False),
        ((1,), ValueKind.NUMBER, True, False),
        ((0.0,), ValueKind.NUMBER, 0, True),
        ((False,), ValueKind.BOOL, False, True),
        ((False,), ValueKind.BOOL, 0, False),
        ((True,), ValueKind.BOOL, 1, False),
        ((True,), ValueKind.BOOL, 1.0, False),
        ((False,), ValueKind.BOOL, True, False),
        # A misconfigured stop value (0 on a bool tag) never turns False into an emergency.
        ((0,), ValueKind.BOOL, False, False),
        ((0, 5), ValueKind.INTEGER, 5, True),
        ((), ValueKind.NUMBER, 0, False),
    ],
)
def test_is_emergency_keeps_bools_and_numbers_apart(
    emergency_values: tuple[float | int | bool, ...],
    kind: ValueKind,
    value: float | int | bool,
    expected: bool,
) -> None:
    assert limits(emergency_values, kind).is_emergency(value) is expected
