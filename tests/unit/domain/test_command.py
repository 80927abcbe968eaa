"""The ControlCommand aggregate on its own, without the application."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import CanMutateAggregate

from domain import command as command_module
from domain.command import (
    CommandStatus,
    ConfirmationFailure,
    ControlCommand,
    RejectionReason,
    recordable,
)
from domain.errors import ConfirmationTooLate, InvalidTransition
from tests.unit.domain.plant import T0

DEADLINE = T0 + timedelta(seconds=30)
LATE = DEADLINE + timedelta(microseconds=1)


def awaiting() -> ControlCommand:
    command = ControlCommand.request(device="pump1", tag="speed", value=10, actor="ana", at=T0)
    command.issue_challenge(expires_at=DEADLINE, actor="ana", at=T0)
    return command


def test_the_event_catalogue_is_stable() -> None:
    # Renaming an event orphans the stored ones: this list only ever grows.
    names = {
        name
        for name, value in vars(ControlCommand).items()
        if isinstance(value, type) and issubclass(value, CanMutateAggregate)
    }
    # The library's own base classes, never triggered by a ControlCommand.
    names -= {"Event", "Created"}
    assert names == {
        "Requested",
        "Rejected",
        "ChallengeIssued",
        "Confirmed",
        "ApprovalRequested",
        "Approved",
        "ApprovalRefused",
        "ApprovalDeclined",
        "ConfirmationFailed",
        "Expired",
        "Cancelled",
        "WriteDispatched",
        "WriteSucceeded",
        "WriteFailed",
    }


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        (1500, 1500),
        (2.5, 2.5),
        (True, True),
        (False, False),
        ("1500", "'1500'"),
        (None, "None"),
        (math.inf, "inf"),
        (math.nan, "nan"),
        ([1, 2], "[1, 2]"),
    ],
)
def test_recordable_keeps_json_numbers_and_reprs_the_rest(given: object, recorded: object) -> None:
    value = recordable(given)
    assert value == recorded
    assert type(value) is type(recorded)


def test_a_challenged_command_cannot_be_challenged_again() -> None:
    command = awaiting()
    with pytest.raises(InvalidTransition):
        command.issue_challenge(expires_at=DEADLINE, actor="ana", at=T0)


def test_a_command_can_be_rejected_until_its_write_is_dispatched() -> None:
    # The plant may go read-only, or the requester lose the permission, while it waits.
    command = awaiting()
    command.reject(reason=RejectionReason.READ_ONLY, detail="read-only", actor="ana", at=T0)
    assert (command.status, command.reason) == (CommandStatus.REJECTED, "read_only")
    dispatched = awaiting()
    dispatched.confirm(signer_name="Ana", approval_until=None, actor="ana", at=T0)
    dispatched.dispatch(actor="dispatcher", at=T0)
    with pytest.raises(InvalidTransition):
        dispatched.reject(reason=RejectionReason.FORBIDDEN, detail="", actor="ana", at=T0)


def test_the_aggregate_itself_refuses_late_answers() -> None:
    command = awaiting()
    answers: list[Callable[[], None]] = [
        lambda: command.confirm(signer_name="Ana", approval_until=None, actor="ana", at=LATE),
        lambda: command.fail_confirmation(
            reason=ConfirmationFailure.WRONG_CODE, actor="ana", at=LATE
        ),
        lambda: command.cancel(actor="ana", at=LATE),
    ]
    for answer in answers:
        with pytest.raises(ConfirmationTooLate):
            answer()
    assert command.status is CommandStatus.AWAITING_CONFIRMATION


def test_expire_only_after_the_deadline() -> None:
    command = awaiting()
    assert not command.is_overdue(DEADLINE)
    with pytest.raises(InvalidTransition):
        command.expire(actor="system", at=DEADLINE)
    command.expire(actor="system", at=LATE)
    assert command.status is CommandStatus.EXPIRED


def test_replay_does_not_rerun_todays_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    command = awaiting()
    for _ in range(3):
        command.fail_confirmation(reason=ConfirmationFailure.WRONG_CODE, actor="ana", at=T0)
    events = command.collect_events()
    # A later release allows more attempts: what was decided then stays decided.
    monkeypatch.setattr(command_module, "MAX_CONFIRMATION_ATTEMPTS", 5)
    again: ControlCommand | None = project_aggregate(None, events)
    assert again is not None
    assert again.status is CommandStatus.CONFIRMATION_FAILED
    assert again.failures == 3
