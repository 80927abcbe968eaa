"""Who may command what, in which plant mode and how often: each refusal is a Rejected event."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.application import CommandPolicy, PlantApplication
from domain.command import CommandStatus
from domain.errors import CommandClosed, CommandRefused, UnknownOperator
from domain.plant_mode import Mode
from tests.unit.domain.plant import T0, event_names, fields
from tests.unit.domain.secured_plant import challenged, secured_app


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


def refused(
    app: PlantApplication,
    actor: str = "ana",
    device: str = "pump1",
    tag: str = "speed",
    value: object = 1500,
    recent_requests: int = 0,
) -> CommandRefused:
    with pytest.raises(CommandRefused) as refusal:
        app.request_command(
            actor=actor,
            device=device,
            tag=tag,
            value=value,
            at=T0,
            recent_requests=recent_requests,
        )
    return refusal.value


def assert_rejected(app: PlantApplication, refusal: CommandRefused, reason: str) -> None:
    """The request and its rejection are both on record, with the reason and who asked."""
    assert refusal.reason == reason
    requested, rejected = app.command_events(refusal.command_id)
    assert type(requested).__name__ == "Requested"
    assert (type(rejected).__name__, fields(rejected)) == (
        "Rejected",
        {"reason": reason, "detail": refusal.detail, "actor": fields(requested)["actor"], "at": T0},
    )
    command = app.get_command(refusal.command_id)
    assert (command.status, command.reason) == (CommandStatus.REJECTED, reason)


def set_mode(app: PlantApplication, mode: Mode) -> None:
    app.set_plant_mode(mode=mode, reason="test", actor="admin", at=T0)


# -- permission ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "device"),
    [
        ("carl", "valve1"),  # a device scope does not reach another device
        ("ana", "sim1"),  # an area scope does not reach another area
        ("ana", "mixer9"),  # nor a device outside every area
        ("vera", "pump1"),  # a viewer may not command, whatever the scope
    ],
)
def test_a_request_without_the_permission_is_rejected_forbidden(
    app: PlantApplication, actor: str, device: str
) -> None:
    tag = "position" if device == "valve1" else "speed"
    refusal = refused(app, actor=actor, device=device, tag=tag, value=10)
    assert_rejected(app, refusal, "forbidden")
    assert refusal.detail == f"{actor!r} may not command.request on {device}"
    requested = app.command_events(refusal.command_id)[0]
    assert fields(requested) == {
        "device": device,
        "tag": tag,
        "value": 10,
        "actor": actor,
        "at": T0,
    }


def test_an_operator_without_any_scope_is_forbidden(app: PlantApplication) -> None:
    app.revoke_permission(username="bob", scope="plant", actor="admin", at=T0)
    assert_rejected(app, refused(app, actor="bob"), "forbidden")


def test_scopes_that_do_reach_the_device(app: PlantApplication) -> None:
    challenged(app, actor="ana", device="valve1", tag="position", value=10)
    challenged(app, actor="carl", device="pump1")
    challenged(app, actor="bob", device="mixer9", value=50)
    # A service account may request (and nothing more).
    challenged(app, actor="sam", device="mixer9", value=50)


def test_a_disabled_operator_is_forbidden(app: PlantApplication) -> None:
    app.disable_operator(username="bob", reason="left", actor="admin", at=T0)
    assert_rejected(app, refused(app, actor="bob"), "forbidden")


def test_an_unknown_requester_records_nothing(app: PlantApplication) -> None:
    before = app.recorder.max_notification_id()
    with pytest.raises(UnknownOperator):
        app.request_command(actor="ghost", device="pump1", tag="speed", value=1, at=T0)
    assert app.recorder.max_notification_id() == before


def test_permission_is_checked_before_the_tag_contract(app: PlantApplication) -> None:
    refusal = refused(app, actor="vera", value=-5)
    assert_rejected(app, refusal, "forbidden")


def test_an_emergency_value_does_not_bypass_the_permission(app: PlantApplication) -> None:
    assert_rejected(app, refused(app, actor="vera", value=0), "forbidden")
    closing = refused(app, actor="carl", device="valve1", tag="position", value=0)
    assert_rejected(app, closing, "forbidden")


# -- plant mode ------------------------------------------------------------------------------


def test_read_only_rejects_every_command_emergencies_too(app: PlantApplication) -> None:
    set_mode(app, Mode.READ_ONLY)
    ordinary = refused(app)
    assert_rejected(app, ordinary, "read_only")
    assert ordinary.detail == "the plant is read-only: no command is accepted"
    emergency = refused(app, value=0)
    assert_rejected(app, emergency, "read_only")
    assert emergency.detail == "the plant is read-only: no emergency action is accepted"
    assert_rejected(app, refused(app, actor="bob", device="sim1"), "read_only")


def test_simulation_mode_accepts_simulated_devices_only(app: PlantApplication) -> None:
    set_mode(app, Mode.SIMULATION)
    refusal = refused(app, actor="bob", device="pump1")
    assert_rejected(app, refusal, "simulation_mode")
    assert refusal.detail == "the plant is in simulation mode and pump1 is a real device"
    assert_rejected(app, refused(app, actor="bob", device="pump1", value=0), "simulation_mode")
    command_id = challenged(app, actor="bob", device="sim1", value=50)
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued"]


def test_back_to_normal_accepts_again(app: PlantApplication) -> None:
    set_mode(app, Mode.READ_ONLY)
    refused(app)
    set_mode(app, Mode.NORMAL)
    challenged(app)


# -- rate limit ------------------------------------------------------------------------------


def test_more_than_five_requests_a_minute_are_rate_limited(app: PlantApplication) -> None:
    ticket = app.request_command(
        actor="ana", device="pump1", tag="speed", value=1, at=T0, recent_requests=5
    )
    assert ticket.challenge == "totp"
    refusal = refused(app, recent_requests=6)
    assert_rejected(app, refusal, "rate_limited")
    assert refusal.detail == "more than 5 commands in one minute"


def test_the_rate_limit_is_the_applications() -> None:
    app = secured_app(command_policy=CommandPolicy(rate_limit=1))
    assert_rejected(app, refused(app, recent_requests=2), "rate_limited")


def test_emergency_actions_are_never_rate_limited(app: PlantApplication) -> None:
    ticket = app.request_command(
        actor="ana", device="pump1", tag="speed", value=0, at=T0, recent_requests=100
    )
    assert event_names(app, ticket.command_id) == ["Requested", "Confirmed"]


def test_the_rate_limit_comes_after_permission_and_mode(app: PlantApplication) -> None:
    assert_rejected(app, refused(app, actor="vera", recent_requests=50), "forbidden")
    set_mode(app, Mode.READ_ONLY)
    assert_rejected(app, refused(app, recent_requests=50), "read_only")


def test_the_rate_limit_comes_before_the_tag_contract(app: PlantApplication) -> None:
    assert_rejected(app, refused(app, value=-5, recent_requests=6), "rate_limited")


# -- checked again when the write is released ------------------------------------------------


def confirm_refused(app: PlantApplication, command_id: UUID) -> CommandRefused:
    with pytest.raises(CommandRefused) as refusal:
        app.confirm_command(actor="ana", command_id=command_id, totp_step=100, at=T0)
    return refusal.value


def test_a_permission_revoked_before_the_confirmation_rejects_it(app: PlantApplication) -> None:
    command_id = challenged(app)
    app.revoke_permission(username="ana", scope="area:north", actor="admin", at=T0)
    refusal = confirm_refused(app, command_id)
    assert (refusal.command_id, refusal.reason) == (command_id, "forbidden")
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued", "Rejected"]
    rejected = app.command_events(command_id)[-1]
    assert fields(rejected)["reason"] == "forbidden"
    assert fields(rejected)["actor"] == "ana"
    assert app.get_command(command_id).status is CommandStatus.REJECTED
    # The code was not spent on a command that did not go ahead.
    assert app.get_operator("ana").last_totp_step is None


def test_a_plant_gone_read_only_before_the_confirmation_rejects_it(app: PlantApplication) -> None:
    command_id = challenged(app)
    set_mode(app, Mode.READ_ONLY)
    refusal = confirm_refused(app, command_id)
    assert refusal.reason == "read_only"
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued", "Rejected"]
    assert app.get_command(command_id).reason == "read_only"
    assert app.get_operator("ana").last_totp_step is None


def test_a_disabled_requester_cannot_confirm(app: PlantApplication) -> None:
    command_id = challenged(app, actor="bob")
    app.disable_operator(username="bob", reason="left", actor="admin", at=T0)
    with pytest.raises(CommandRefused) as refusal:
        app.confirm_command(actor="bob", command_id=command_id, totp_step=1, at=T0)
    assert refusal.value.reason == "forbidden"


def test_a_rejected_command_cannot_be_confirmed_later(app: PlantApplication) -> None:
    command_id = challenged(app)
    set_mode(app, Mode.READ_ONLY)
    confirm_refused(app, command_id)
    set_mode(app, Mode.NORMAL)
    later = T0 + timedelta(seconds=1)
    with pytest.raises(CommandClosed) as closed:
        app.confirm_command(actor="ana", command_id=command_id, totp_step=100, at=later)
    assert closed.value.status == "rejected"
