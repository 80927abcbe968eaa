"""The ControlCommand aggregate: one person's request to write one value to one tag.

Each arrow is one event; a command has exactly one terminal outcome (marked *)::

    Requested ─┬─▶ Rejected*
               └─▶ ChallengeIssued ─┬─▶ Confirmed ─┬─▶ WriteDispatched ─┬─▶ WriteSucceeded*
                                    │              │                    └─▶ WriteFailed*
                                    │              └─▶ Cancelled*
                                    ├─▶ ConfirmationFailed (final on the 3rd attempt*)
                                    ├─▶ Expired*
                                    └─▶ Cancelled*

The public methods decide: they check the guards and raise a
:class:`~domain.errors.DomainError`. Only then a private ``@event`` method
records the decision, and those methods only assign state, so replaying an
old event never re-runs today's rules. Time (``at``) and the acting user
(``actor``) are always passed in and stamped on every event; enums are stored
as their string values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    CommandClosed,
    ConfirmationTooLate,
    InvalidTransition,
    InvalidWrite,
    NotRequester,
    NotWritable,
    OutOfLimits,
    UnknownDevice,
    UnknownTag,
    ValueNotNumeric,
)

# What a Requested event holds: the value if JSON can carry it, else its repr.
RecordedValue = float | int | bool | str

MAX_CONFIRMATION_ATTEMPTS = 3
CONFIRMATION_METHOD = "totp"
# A garbage value is kept for the record, but not at any size.
_MAX_RECORDED_REPR = 200


class CommandStatus(StrEnum):
    REQUESTED = "requested"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    CONFIRMED = "confirmed"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    WRITE_FAILED = "write_failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    CONFIRMATION_FAILED = "confirmation_failed"


TERMINAL_STATUSES = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.WRITE_FAILED,
        CommandStatus.REJECTED,
        CommandStatus.EXPIRED,
        CommandStatus.CANCELLED,
        CommandStatus.CONFIRMATION_FAILED,
    }
)


class RejectionReason(StrEnum):
    """Why a request was rejected outright (``Rejected.reason``)."""

    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TAG = "unknown_tag"
    NOT_WRITABLE = "not_writable"
    NOT_A_NUMBER = "not_a_number"
    OUT_OF_LIMITS = "out_of_limits"


# The reason recorded for each refusal of the catalogue (the API uses the same codes).
REJECTION_REASONS: Mapping[type[InvalidWrite], RejectionReason] = {
    UnknownDevice: RejectionReason.UNKNOWN_DEVICE,
    UnknownTag: RejectionReason.UNKNOWN_TAG,
    NotWritable: RejectionReason.NOT_WRITABLE,
    ValueNotNumeric: RejectionReason.NOT_A_NUMBER,
    OutOfLimits: RejectionReason.OUT_OF_LIMITS,
}


class ConfirmationFailure(StrEnum):
    """Why a confirmation attempt failed (``ConfirmationFailed.reason``)."""

    WRONG_CODE = "wrong_code"
    CODE_REUSED = "code_reused"


def recordable(value: object) -> RecordedValue:
    """The requested value as it can be stored, so that even a rejected one is on record.

    JSON numbers and booleans are kept as they are; anything else (strings,
    ``None``, NaN, infinities, objects) is kept as its ``repr``, which also
    tells the string ``"1500"`` apart from the number ``1500``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(value)
    return repr(value)[:_MAX_RECORDED_REPR]


class ControlCommand(Aggregate):
    @classmethod
    def request(
        cls, *, device: str, tag: str, value: object, actor: str, at: datetime
    ) -> ControlCommand:
        return cls(device=device, tag=tag, value=recordable(value), actor=actor, at=at)

    @event("Requested")
    def __init__(
        self, *, device: str, tag: str, value: RecordedValue, actor: str, at: datetime
    ) -> None:
        self._device = device
        self._tag = tag
        self._value = value
        self._requested_by = actor
        self._status = CommandStatus.REQUESTED
        self._expires_at: datetime | None = None
        self._failures = 0
        self._read_back: float | int | bool | None = None
        self._reason: str | None = None
        self._detail = ""

    # -- what the API and the dispatcher read ------------------------------------------------

    @property
    def device(self) -> str:
        return self._device

    @property
    def tag(self) -> str:
        return self._tag

    @property
    def value(self) -> RecordedValue:
        return self._value

    @property
    def requested_by(self) -> str:
        return self._requested_by

    @property
    def status(self) -> CommandStatus:
        return self._status

    @property
    def is_terminal(self) -> bool:
        return self._status in TERMINAL_STATUSES

    @property
    def expires_at(self) -> datetime | None:
        """When the confirmation window closes; ``None`` until a challenge is issued."""
        return self._expires_at

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def attempts_left(self) -> int:
        return MAX_CONFIRMATION_ATTEMPTS - self._failures

    @property
    def read_back(self) -> float | int | bool | None:
        return self._read_back

    @property
    def reason(self) -> str | None:
        """The last rejection, confirmation failure or write failure reason."""
        return self._reason

    @property
    def detail(self) -> str:
        """The human-readable explanation of a rejection."""
        return self._detail

    def is_overdue(self, at: datetime) -> bool:
        """Awaiting a confirmation whose window closed before ``at``."""
        return (
            self._status is CommandStatus.AWAITING_CONFIRMATION
            and self._expires_at is not None
            and at > self._expires_at
        )

    # -- decisions ---------------------------------------------------------------------------

    def reject(self, *, reason: RejectionReason, detail: str, actor: str, at: datetime) -> None:
        self._require(CommandStatus.REQUESTED, "reject")
        self._rejected(reason=reason.value, detail=detail, actor=actor, at=at)

    def issue_challenge(self, *, expires_at: datetime, actor: str, at: datetime) -> None:
        self._require(CommandStatus.REQUESTED, "challenge")
        self._challenge_issued(
            method=CONFIRMATION_METHOD, expires_at=expires_at, actor=actor, at=at
        )

    def check_confirmable(self, actor: str) -> None:
        """Raise unless ``actor`` may answer the challenge (the clock is checked apart)."""
        self._require_requester(actor)
        self._require(CommandStatus.AWAITING_CONFIRMATION, "confirm")

    def confirm(self, *, actor: str, at: datetime) -> None:
        self._check_answer(actor, at)
        self._confirmed(method=CONFIRMATION_METHOD, actor=actor, at=at)

    def fail_confirmation(self, *, reason: ConfirmationFailure, actor: str, at: datetime) -> None:
        """Record a failed attempt; the last allowed one ends the command."""
        self._check_answer(actor, at)
        attempt = self._failures + 1
        self._confirmation_failed(
            reason=reason.value,
            attempt=attempt,
            final=attempt >= MAX_CONFIRMATION_ATTEMPTS,
            actor=actor,
            at=at,
        )

    def expire(self, *, actor: str, at: datetime) -> None:
        self._require(CommandStatus.AWAITING_CONFIRMATION, "expire")
        # Expiry is a fact about the clock, so only a closed window may be recorded as one.
        if not self.is_overdue(at):
            raise InvalidTransition(self.id, self._status, "expire")
        self._expired(actor=actor, at=at)

    def check_cancellable(self, actor: str) -> None:
        """Raise unless ``actor`` may cancel now: before the write is dispatched."""
        self._require_requester(actor)
        if self._status not in (CommandStatus.AWAITING_CONFIRMATION, CommandStatus.CONFIRMED):
            raise InvalidTransition(self.id, self._status, "cancel")

    def cancel(self, *, actor: str, at: datetime) -> None:
        self.check_cancellable(actor)
        # Once the window has closed, the only thing left to record is the expiry.
        if self.is_overdue(at):
            raise ConfirmationTooLate(self.id)
        self._cancelled(actor=actor, at=at)

    def dispatch(self, *, actor: str, at: datetime) -> None:
        self._require(CommandStatus.CONFIRMED, "dispatch")
        self._write_dispatched(actor=actor, at=at)

    def write_succeeded(
        self, *, read_back: float | int | bool | None, actor: str, at: datetime
    ) -> None:
        self._require(CommandStatus.DISPATCHED, "record the write of")
        self._write_succeeded(read_back=read_back, actor=actor, at=at)

    def write_failed(self, *, reason: str, actor: str, at: datetime) -> None:
        self._require(CommandStatus.DISPATCHED, "record the write of")
        self._write_failed(reason=reason, actor=actor, at=at)

    def _require(self, status: CommandStatus, action: str) -> None:
        if self.is_terminal:
            raise CommandClosed(self.id, self._status)
        if self._status is not status:
            raise InvalidTransition(self.id, self._status, action)

    def _require_requester(self, actor: str) -> None:
        if self.is_terminal:
            raise CommandClosed(self.id, self._status)
        # Only the requester answers for now; the two-person rule will widen this.
        if actor != self._requested_by:
            raise NotRequester(self.id, actor)

    def _check_answer(self, actor: str, at: datetime) -> None:
        self.check_confirmable(actor)
        if self.is_overdue(at):
            raise ConfirmationTooLate(self.id)

    # -- records (state changes only: these run again on every replay) -----------------------

    @event("Rejected")
    def _rejected(self, *, reason: str, detail: str, actor: str, at: datetime) -> None:
        self._status = CommandStatus.REJECTED
        self._reason = reason
        self._detail = detail

    @event("ChallengeIssued")
    def _challenge_issued(
        self, *, method: str, expires_at: datetime, actor: str, at: datetime
    ) -> None:
        self._status = CommandStatus.AWAITING_CONFIRMATION
        self._expires_at = expires_at

    @event("Confirmed")
    def _confirmed(self, *, method: str, actor: str, at: datetime) -> None:
        self._status = CommandStatus.CONFIRMED

    @event("ConfirmationFailed")
    def _confirmation_failed(
        self, *, reason: str, attempt: int, final: bool, actor: str, at: datetime
    ) -> None:
        self._failures = attempt
        self._reason = reason
        if final:
            self._status = CommandStatus.CONFIRMATION_FAILED

    @event("Expired")
    def _expired(self, *, actor: str, at: datetime) -> None:
        self._status = CommandStatus.EXPIRED

    @event("Cancelled")
    def _cancelled(self, *, actor: str, at: datetime) -> None:
        self._status = CommandStatus.CANCELLED

    @event("WriteDispatched")
    def _write_dispatched(self, *, actor: str, at: datetime) -> None:
        self._status = CommandStatus.DISPATCHED

    @event("WriteSucceeded")
    def _write_succeeded(
        self, *, read_back: float | int | bool | None, actor: str, at: datetime
    ) -> None:
        self._status = CommandStatus.SUCCEEDED
        self._read_back = read_back

    @event("WriteFailed")
    def _write_failed(self, *, reason: str, actor: str, at: datetime) -> None:
        self._status = CommandStatus.WRITE_FAILED
        self._reason = reason
