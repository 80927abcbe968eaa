"""Guessing TOTP codes is bounded per person, across every command, not per command.

Three attempts per command bound nothing once a guesser opens command after
command, and a second person's wrong codes used to spend the requester's
attempts. These attacks use only the use cases as they were before the
bound, so they run against the code before it as well (where each fails).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain import errors
from domain.application import PlantApplication
from domain.command import CommandStatus
from domain.errors import ConfirmationRefused, DomainError
from tests.unit.domain.plant import T0, event_names, fields, names, operator_events
from tests.unit.domain.secured_plant import awaiting_approval, challenged, secured_app

WINDOW = timedelta(minutes=15)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


def second_factor_events(app: PlantApplication, username: str) -> list[str]:
    return [n for n in names(operator_events(app, username)) if n.startswith("SecondFactor")]


def test_wrong_codes_across_commands_lock_the_persons_confirmations(app: PlantApplication) -> None:
    # Five wrong codes, each on a command of its own: no command is ever near its three.
    for attempt in range(5):
        with pytest.raises(ConfirmationRefused) as refused:
            app.confirm_command(
                actor="ana", command_id=challenged(app), totp_step=None, at=at(attempt)
            )
        assert refused.value.attempts_left == 2
    sixth = challenged(app)
    with pytest.raises(DomainError) as wrong:
        app.confirm_command(actor="ana", command_id=sixth, totp_step=None, at=at(5))
    assert not isinstance(wrong.value, ConfirmationRefused), "the sixth code was still checked"
    # Now even the right code is refused, unchecked: guessing on tells nothing.
    with pytest.raises(DomainError) as right:
        app.confirm_command(actor="ana", command_id=sixth, totp_step=5000, at=at(6))
    assert isinstance(right.value, errors.SecondFactorLocked)
    assert right.value.until == at(0) + WINDOW
    assert app.get_command(sixth).status is CommandStatus.AWAITING_CONFIRMATION
    assert event_names(app, sixth) == ["Requested", "ChallengeIssued"]
    assert app.get_operator("ana").last_totp_step is None
    assert second_factor_events(app, "ana") == [
        *["SecondFactorFailed"] * 5,
        "SecondFactorLockedOut",
        "SecondFactorRefused",
        "SecondFactorRefused",
    ]


def test_an_approvers_wrong_codes_never_end_the_requesters_command(app: PlantApplication) -> None:
    command_id = awaiting_approval(app)
    for attempt in range(3):
        with pytest.raises(ConfirmationRefused) as refused:
            app.approve_command(actor="bob", command_id=command_id, totp_step=None, at=at(attempt))
        # The requester's three attempts are untouched by the second person's guesses.
        assert refused.value.attempts_left == 3
    assert app.get_command(command_id).status is CommandStatus.AWAITING_APPROVAL
    approved = app.approve_command(actor="bob", command_id=command_id, totp_step=200, at=at(3))
    assert (approved.status, approved.approved_by) == (CommandStatus.CONFIRMED, "bob")
    events = app.command_events(command_id)
    refusals = [
        (fields(e)["actor"], fields(e)["reason"])
        for e in events
        if type(e).__name__ == "ApprovalRefused"
    ]
    assert refusals == [("bob", "wrong_code")] * 3
    assert "ConfirmationFailed" not in names(events)
    assert second_factor_events(app, "bob") == ["SecondFactorFailed"] * 3


def test_a_guessing_approver_locks_only_themselves(app: PlantApplication) -> None:
    command_id = awaiting_approval(app)
    for attempt in range(5):
        with pytest.raises(ConfirmationRefused):
            app.approve_command(actor="bob", command_id=command_id, totp_step=None, at=at(attempt))
    with pytest.raises(DomainError) as locked:
        app.approve_command(actor="bob", command_id=command_id, totp_step=200, at=at(5))
    assert not isinstance(locked.value, ConfirmationRefused)
    assert app.get_command(command_id).status is CommandStatus.AWAITING_APPROVAL
    # The requester's command waits on for someone else, who approves it.
    approved = app.approve_command(actor="admin", command_id=command_id, totp_step=300, at=at(6))
    assert (approved.status, approved.approved_by) == (CommandStatus.CONFIRMED, "admin")
    # Ana, the requester, gave no wrong code: nothing counts against her.
    assert second_factor_events(app, "ana") == []
