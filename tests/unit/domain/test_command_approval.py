"""Critical tags: the requester signs a request, a second person signs the approval."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.application import CommandPolicy, PlantApplication
from domain.command import CommandStatus, ControlCommand
from domain.errors import (
    CommandClosed,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    Forbidden,
    InvalidTransition,
    SecondPersonRequired,
)
from domain.plant_mode import Mode
from tests.unit.domain.plant import T0, event_names, fields, replayed
from tests.unit.domain.secured_plant import awaiting_approval, challenged, secured_app

SOON = T0 + timedelta(minutes=1)
WINDOW_END = T0 + timedelta(minutes=5)


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


@pytest.fixture
def command_id(app: PlantApplication) -> UUID:
    return awaiting_approval(app)


def approve(
    app: PlantApplication, command_id: UUID, actor: str = "bob", step: int | None = 200
) -> ControlCommand:
    return app.approve_command(actor=actor, command_id=command_id, totp_step=step, at=SOON)


def last_event(app: PlantApplication, command_id: UUID) -> tuple[str, dict[str, object]]:
    event = app.command_events(command_id)[-1]
    return type(event).__name__, fields(event)


def test_the_requester_signs_a_request_and_approval_is_awaited(
    app: PlantApplication, command_id: UUID
) -> None:
    events = app.command_events(command_id)
    assert event_names(app, command_id) == [
        "Requested",
        "ChallengeIssued",
        "Confirmed",
        "ApprovalRequested",
    ]
    assert fields(events[2]) == {
        "method": "totp",
        "meaning": "request",
        "signer_name": "Ana Gil",
        "emergency": False,
        "actor": "ana",
        "at": T0,
    }
    assert fields(events[3]) == {"expires_at": WINDOW_END, "actor": "ana", "at": T0}
    command = app.get_command(command_id)
    assert (command.status, command.expires_at, command.approved_by) == (
        CommandStatus.AWAITING_APPROVAL,
        WINDOW_END,
        None,
    )
    assert not command.is_terminal
    assert app.get_operator("ana").last_totp_step == 100


def test_a_non_critical_tag_is_released_by_its_requester(app: PlantApplication) -> None:
    command_id = challenged(app)
    app.confirm_command(actor="ana", command_id=command_id, totp_step=100, at=T0)
    assert event_names(app, command_id)[-1] == "Confirmed"
    assert fields(app.command_events(command_id)[-1])["meaning"] == "execution"
    assert fields(app.command_events(command_id)[-1])["signer_name"] == "Ana Gil"
    with pytest.raises(InvalidTransition):
        approve(app, command_id)


def test_the_requester_cannot_approve(app: PlantApplication, command_id: UUID) -> None:
    with pytest.raises(SecondPersonRequired) as refused:
        approve(app, command_id, actor="ana", step=101)
    assert (refused.value.command_id, refused.value.actor) == (command_id, "ana")
    assert last_event(app, command_id) == (
        "ApprovalRefused",
        {"reason": "requester", "actor": "ana", "at": SOON},
    )
    assert app.get_command(command_id).status is CommandStatus.AWAITING_APPROVAL
    assert app.get_operator("ana").last_totp_step == 100


@pytest.mark.parametrize("actor", ["carl", "vera", "sam"])
def test_a_second_person_without_permission_on_the_device_is_forbidden(
    app: PlantApplication, command_id: UUID, actor: str
) -> None:
    # carl's scope is another device; vera is a viewer; sam, a service account, never approves.
    with pytest.raises(Forbidden) as refused:
        approve(app, command_id, actor=actor)
    assert (refused.value.actor, refused.value.action, refused.value.target) == (
        actor,
        "command.approve",
        "valve1",
    )
    assert last_event(app, command_id) == (
        "ApprovalRefused",
        {"reason": "forbidden", "actor": actor, "at": SOON},
    )
    command = app.get_command(command_id)
    assert (command.status, command.failures) == (CommandStatus.AWAITING_APPROVAL, 0)
    assert app.get_operator(actor).last_totp_step is None


def test_a_second_person_with_permission_approves_and_releases_the_write(
    app: PlantApplication, command_id: UUID
) -> None:
    command = approve(app, command_id)
    assert (command.status, command.approved_by) == (CommandStatus.CONFIRMED, "bob")
    assert last_event(app, command_id) == (
        "Approved",
        {
            "method": "totp",
            "meaning": "approval",
            "signer_name": "Bob Ruiz",
            "actor": "bob",
            "at": SOON,
        },
    )
    assert app.get_operator("bob").last_totp_step == 200
    assert replayed(app, command_id) == app.get_command(command_id)
    app.record_dispatch(command_id, SOON)
    assert app.get_command(command_id).status is CommandStatus.DISPATCHED


def test_approval_after_refusals_still_works(app: PlantApplication, command_id: UUID) -> None:
    with pytest.raises(SecondPersonRequired):
        approve(app, command_id, actor="ana")
    with pytest.raises(Forbidden):
        approve(app, command_id, actor="carl")
    # An area scope is enough for the second person too.
    app.grant_permission(username="carl", scope="area:north", actor="admin", at=T0)
    assert approve(app, command_id, actor="carl").approved_by == "carl"


def test_nothing_is_dispatched_before_the_approval(app: PlantApplication, command_id: UUID) -> None:
    with pytest.raises(InvalidTransition):
        app.record_dispatch(command_id, SOON)


def test_a_reused_approval_code_is_refused(app: PlantApplication, command_id: UUID) -> None:
    other = awaiting_approval(app, value=60, step=101)
    approve(app, other, step=200)
    with pytest.raises(ConfirmationRefused) as refused:
        approve(app, command_id, step=200)
    # Refused on the record, without spending the requester's attempts.
    assert (refused.value.reason, refused.value.attempts_left) == ("code_reused", 3)
    assert last_event(app, command_id) == (
        "ApprovalRefused",
        {"reason": "code_reused", "actor": "bob", "at": SOON},
    )
    assert approve(app, command_id, step=201).status is CommandStatus.CONFIRMED


def test_the_approval_window_expires(app: PlantApplication, command_id: UUID) -> None:
    assert app.expire_command(command_id, WINDOW_END) is False
    late = WINDOW_END + timedelta(microseconds=1)
    assert app.expire_command(command_id, late) is True
    assert last_event(app, command_id) == (
        "Expired",
        {"reason": "unanswered", "actor": "system", "at": late},
    )
    command = app.get_command(command_id)
    assert (command.status, command.is_terminal) == (CommandStatus.EXPIRED, True)
    with pytest.raises(CommandClosed):
        approve(app, command_id)


def test_a_late_approval_records_the_expiry(app: PlantApplication, command_id: UUID) -> None:
    late = WINDOW_END + timedelta(seconds=1)
    with pytest.raises(ConfirmationTooLate):
        app.approve_command(actor="bob", command_id=command_id, totp_step=200, at=late)
    assert last_event(app, command_id) == (
        "Expired",
        {"reason": "unanswered", "actor": "bob", "at": late},
    )
    assert app.get_operator("bob").last_totp_step is None


def test_the_approval_window_is_the_applications() -> None:
    app = secured_app(command_policy=CommandPolicy(approval_window=timedelta(minutes=1)))
    command_id = awaiting_approval(app)
    assert app.get_command(command_id).expires_at == T0 + timedelta(minutes=1)
    assert app.expire_command(command_id, T0 + timedelta(minutes=2)) is True


def test_a_decline_ends_the_command(app: PlantApplication, command_id: UUID) -> None:
    command = app.decline_command(
        actor="bob", command_id=command_id, reason=" pressure too high ", at=SOON
    )
    assert (command.status, command.is_terminal, command.reason) == (
        CommandStatus.DECLINED,
        True,
        "pressure too high",
    )
    assert last_event(app, command_id) == (
        "ApprovalDeclined",
        {"reason": "pressure too high", "actor": "bob", "at": SOON},
    )
    with pytest.raises(CommandClosed):
        approve(app, command_id)
    with pytest.raises(CommandClosed):
        app.record_dispatch(command_id, SOON)
    with pytest.raises(CommandClosed):
        app.cancel_command(actor="ana", command_id=command_id, at=SOON)
    assert app.expire_command(command_id, WINDOW_END + timedelta(hours=1)) is False
    assert replayed(app, command_id) == app.get_command(command_id)


def test_a_decline_without_a_reason(app: PlantApplication, command_id: UUID) -> None:
    app.decline_command(actor="bob", command_id=command_id, reason="  ", at=SOON)
    assert app.get_command(command_id).reason == "declined"


def test_only_a_permitted_second_person_declines(app: PlantApplication, command_id: UUID) -> None:
    with pytest.raises(SecondPersonRequired):
        app.decline_command(actor="ana", command_id=command_id, reason="no", at=SOON)
    with pytest.raises(Forbidden):
        app.decline_command(actor="carl", command_id=command_id, reason="no", at=SOON)
    refusals = [
        fields(e)["reason"]
        for e in app.command_events(command_id)
        if type(e).__name__ == "ApprovalRefused"
    ]
    assert refusals == ["requester", "forbidden"]
    assert app.get_command(command_id).status is CommandStatus.AWAITING_APPROVAL


def test_the_requester_may_cancel_while_approval_is_awaited(
    app: PlantApplication, command_id: UUID
) -> None:
    app.cancel_command(actor="ana", command_id=command_id, at=SOON)
    assert app.get_command(command_id).status is CommandStatus.CANCELLED


def test_a_plant_gone_read_only_rejects_the_approval(
    app: PlantApplication, command_id: UUID
) -> None:
    app.set_plant_mode(mode=Mode.READ_ONLY, reason="drill", actor="admin", at=T0)
    with pytest.raises(CommandRefused) as refused:
        approve(app, command_id)
    assert refused.value.reason == "read_only"
    name, recorded = last_event(app, command_id)
    assert (name, recorded["reason"], recorded["actor"]) == ("Rejected", "read_only", "bob")
    assert app.get_command(command_id).status is CommandStatus.REJECTED
    assert app.get_operator("bob").last_totp_step is None
