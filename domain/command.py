"""The ControlCommand aggregate: one person's request to write one value to one tag.

Each arrow is one event; a command has exactly one terminal outcome (marked *)::

    Requested ─┬─▶ Rejected*
               ├─▶ Confirmed (emergency: no second factor) ─▶ WriteDispatched ─▶ …
               └─▶ ChallengeIssued ─┬─▶ Confirmed ─┬─▶ WriteDispatched ─┬─▶ WriteSucceeded*
                                    │              │                    └─▶ WriteFailed*
                                    │              ├─▶ ApprovalRequested ─┬─▶ Approved (releases)
                                    │              │                      ├─▶ ApprovalRefused
                                    │              │                      ├─▶ ApprovalDeclined*
                                    │              │                      └─▶ Expired*, Cancelled*
                                    │              └─▶ Cancelled*
                                    ├─▶ ConfirmationFailed (final on the 3rd attempt*)
                                    ├─▶ Expired*
                                    └─▶ Cancelled*

Only the requester's wrong codes are ``ConfirmationFailed`` and count toward
the command's three attempts; an approver's are ``ApprovalRefused``: they count
against the approver (:mod:`domain.second_factor`), never against the command.

Until its write is released (by the requester's confirmation, or the
approval of a critical write), a command can still be ``Rejected``: the plant
went read-only, the requester lost the permission. Once released, it is
dispatched.

``Confirmed`` and ``Approved`` are electronic signatures (21 CFR 11.50): they
record the signer's full name, the time and the meaning of the signature:
``execution`` when the requester's confirmation releases the write,
``request`` when a critical tag's write still needs a second person, whose
``Approved`` then carries ``approval``. An emergency action is ``Confirmed``
with ``emergency`` set and method ``none``: authenticated, but without the
second factor, so that security never delays a stop.

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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.bounds import fits_int64, recorded_repr
from domain.errors import (
    CommandClosed,
    ConfirmationTooLate,
    InvalidTransition,
    InvalidWrite,
    NotRequester,
    NotWritable,
    OutOfLimits,
    SecondPersonRequired,
    UnknownDevice,
    UnknownTag,
    ValueNotNumeric,
)

# What a Requested event holds: the value if JSON can carry it, else its repr.
RecordedValue = float | int | bool | str

MAX_CONFIRMATION_ATTEMPTS = 3
CONFIRMATION_METHOD = "totp"
# How an emergency action is confirmed: it is not, beyond the login.
EMERGENCY_METHOD = "none"


class CommandStatus(StrEnum):
    REQUESTED = "requested"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_APPROVAL = "awaiting_approval"
    CONFIRMED = "confirmed"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    WRITE_FAILED = "write_failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    CONFIRMATION_FAILED = "confirmation_failed"
    DECLINED = "declined"


TERMINAL_STATUSES = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.WRITE_FAILED,
        CommandStatus.REJECTED,
        CommandStatus.EXPIRED,
        CommandStatus.CANCELLED,
        CommandStatus.CONFIRMATION_FAILED,
        CommandStatus.DECLINED,
    }
)
# Waiting for a person: the window of ``expires_at`` applies.
AWAITING_STATUSES = frozenset(
    {CommandStatus.AWAITING_CONFIRMATION, CommandStatus.AWAITING_APPROVAL}
)
# Before the write leaves: a refusal can still stop the command.
REFUSABLE_STATUSES = frozenset(
    {CommandStatus.REQUESTED, *AWAITING_STATUSES, CommandStatus.CONFIRMED}
)


class SignatureMeaning(StrEnum):
    """What an electronic signature on a command means (21 CFR 11.50(a)(3))."""

    REQUEST = "request"
    APPROVAL = "approval"
    EXECUTION = "execution"


class RejectionReason(StrEnum):
    """Why a request was rejected outright (``Rejected.reason``)."""

    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TAG = "unknown_tag"
    NOT_WRITABLE = "not_writable"
    NOT_A_NUMBER = "not_a_number"
    OUT_OF_LIMITS = "out_of_limits"
    FORBIDDEN = "forbidden"
    READ_ONLY = "read_only"
    SIMULATION_MODE = "simulation_mode"
    RATE_LIMITED = "rate_limited"
    # A device or tag id, or a value, larger than the plant records (domain.bounds).
    INPUT_TOO_LARGE = "input_too_large"


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
    ``None``, NaN, infinities, integers beyond 64 bits, objects) is kept as
    its clipped ``repr``, which also tells the string ``"1500"`` apart from
    the number ``1500``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and fits_int64(value):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(value)
    return recorded_repr(value)


class ExpiryReason(StrEnum):
    """Why a command expired (``Expired.reason``)."""

    # Nobody confirmed or approved it within its window.
    UNANSWERED = "unanswered"
    # Released, but not dispatched within the dispatch window (a crash, a database
    # outage or a restart in between): written late, it would surprise its operator.
    NOT_DISPATCHED = "not_dispatched"


class ControlCommand(Aggregate):
    class Expired(Aggregate.Event):
        reason: str
        actor: str
        at: datetime

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 had one kind of expiry: a window nobody answered.
            state["reason"] = ExpiryReason.UNANSWERED.value

    class Confirmed(Aggregate.Event):
        method: str
        meaning: str
        signer_name: str
        emergency: bool
        actor: str
        at: datetime

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 (before signatures) was always the requester releasing the write;
            # the signer's full name was not recorded then, and is not invented now.
            state["meaning"] = SignatureMeaning.EXECUTION.value
            state["signer_name"] = ""
            state["emergency"] = False

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
        self._released_at: datetime | None = None
        self._failures = 0
        self._read_back: float | int | bool | None = None
        self._reason: str | None = None
        self._detail = ""
        self._emergency = False
        self._approved_by: str | None = None

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
    def approved_by(self) -> str | None:
        return self._approved_by

    @property
    def emergency(self) -> bool:
        return self._emergency

    @property
    def status(self) -> CommandStatus:
        return self._status

    @property
    def is_terminal(self) -> bool:
        return self._status in TERMINAL_STATUSES

    @property
    def expires_at(self) -> datetime | None:
        """When the current confirmation or approval window closes; ``None`` before one."""
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
        """The last rejection, confirmation failure, expiry or write failure reason."""
        return self._reason

    @property
    def detail(self) -> str:
        """The human-readable explanation of a rejection."""
        return self._detail

    def is_overdue(self, at: datetime) -> bool:
        """Awaiting a confirmation or an approval whose window closed before ``at``."""
        return (
            self._status in AWAITING_STATUSES
            and self._expires_at is not None
            and at > self._expires_at
        )

    # -- decisions ---------------------------------------------------------------------------

    def reject(self, *, reason: RejectionReason, detail: str, actor: str, at: datetime) -> None:
        """Refuse the command: at its request, or later, as long as nothing was written."""
        if self.is_terminal:
            raise CommandClosed(self.id, self._status)
        if self._status not in REFUSABLE_STATUSES:
            raise InvalidTransition(self.id, self._status, "reject")
        self._rejected(reason=reason.value, detail=detail, actor=actor, at=at)

    def issue_challenge(self, *, expires_at: datetime, actor: str, at: datetime) -> None:
        self._require(CommandStatus.REQUESTED, "challenge")
        self._challenge_issued(
            method=CONFIRMATION_METHOD, expires_at=expires_at, actor=actor, at=at
        )

    def authorize_emergency(self, *, signer_name: str, actor: str, at: datetime) -> None:
        """An emergency action: released by its authenticated requester, without a code."""
        self._require(CommandStatus.REQUESTED, "authorize")
        if actor != self._requested_by:
            raise NotRequester(self.id, actor)
        self._confirmed(
            method=EMERGENCY_METHOD,
            meaning=SignatureMeaning.EXECUTION.value,
            signer_name=signer_name,
            emergency=True,
            actor=actor,
            at=at,
        )

    def check_confirmable(self, actor: str) -> None:
        """Raise unless ``actor`` may answer the challenge (the clock is checked apart)."""
        self._require_requester(actor)
        self._require(CommandStatus.AWAITING_CONFIRMATION, "confirm")

    def confirm(
        self,
        *,
        signer_name: str,
        approval_until: datetime | None,
        actor: str,
        at: datetime,
    ) -> None:
        """The requester's signature; with ``approval_until`` a second person must approve."""
        self._check_answer(actor, at)
        meaning = SignatureMeaning.REQUEST if approval_until else SignatureMeaning.EXECUTION
        self._confirmed(
            method=CONFIRMATION_METHOD,
            meaning=meaning.value,
            signer_name=signer_name,
            emergency=False,
            actor=actor,
            at=at,
        )
        if approval_until is not None:
            self._approval_requested(expires_at=approval_until, actor=actor, at=at)

    def check_approvable(self, actor: str) -> None:
        """Raise unless ``actor`` may approve now: a second person, while approval is awaited."""
        if self.is_terminal:
            raise CommandClosed(self.id, self._status)
        if self._status is not CommandStatus.AWAITING_APPROVAL:
            raise InvalidTransition(self.id, self._status, "approve")
        if actor == self._requested_by:
            raise SecondPersonRequired(self.id, actor)

    def approve(self, *, signer_name: str, actor: str, at: datetime) -> None:
        self._check_approval(actor, at)
        self._approved(
            method=CONFIRMATION_METHOD,
            meaning=SignatureMeaning.APPROVAL.value,
            signer_name=signer_name,
            actor=actor,
            at=at,
        )

    def refuse_approval(self, *, reason: str, actor: str, at: datetime) -> None:
        """Record an approval attempt the command does not count.

        Its requester, someone without the permission, or a wrong or reused
        code: an approver's failed code counts against the approver (see
        :mod:`domain.second_factor`), never toward the requester's attempts.
        """
        if self._status is not CommandStatus.AWAITING_APPROVAL:
            raise InvalidTransition(self.id, self._status, "approve")
        self._approval_refused(reason=reason, actor=actor, at=at)

    def decline(self, *, reason: str, actor: str, at: datetime) -> None:
        """The second person says no: the command ends without a write."""
        self._check_approval(actor, at)
        self._approval_declined(reason=reason, actor=actor, at=at)

    def fail_confirmation(self, *, reason: ConfirmationFailure, actor: str, at: datetime) -> None:
        """Record the requester's failed code; the last allowed one ends the command."""
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
        if self.is_terminal:
            raise CommandClosed(self.id, self._status)
        # Expiry is a fact about the clock, so only a closed window may be recorded as one.
        if not self.is_overdue(at):
            raise InvalidTransition(self.id, self._status, "expire")
        self._expired(reason=ExpiryReason.UNANSWERED.value, actor=actor, at=at)

    def check_cancellable(self, actor: str) -> None:
        """Raise unless ``actor`` may cancel now: before the write is dispatched."""
        self._require_requester(actor)
        if self._status not in (*AWAITING_STATUSES, CommandStatus.CONFIRMED):
            raise InvalidTransition(self.id, self._status, "cancel")

    def cancel(self, *, actor: str, at: datetime) -> None:
        self.check_cancellable(actor)
        # Once the window has closed, the only thing left to record is the expiry.
        if self.is_overdue(at):
            raise ConfirmationTooLate(self.id)
        self._cancelled(actor=actor, at=at)

    def check_dispatchable(self) -> None:
        """Raise unless the write may leave now: released, and not yet dispatched or ended."""
        self._require(CommandStatus.CONFIRMED, "dispatch")

    def is_stale(self, at: datetime, dispatch_window: timedelta) -> bool:
        """Released longer than ``dispatch_window`` before ``at`` and still not dispatched."""
        return (
            self._status is CommandStatus.CONFIRMED
            and self._released_at is not None
            and at > self._released_at + dispatch_window
        )

    def expire_undispatched(self, *, dispatch_window: timedelta, actor: str, at: datetime) -> None:
        """Record that the released write is too old to go out; it never will."""
        self.check_dispatchable()
        if not self.is_stale(at, dispatch_window):
            raise InvalidTransition(self.id, self._status, "expire")
        self._expired(reason=ExpiryReason.NOT_DISPATCHED.value, actor=actor, at=at)

    def dispatch(self, *, actor: str, at: datetime) -> None:
        self.check_dispatchable()
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
        if actor != self._requested_by:
            raise NotRequester(self.id, actor)

    def _check_answer(self, actor: str, at: datetime) -> None:
        self.check_confirmable(actor)
        if self.is_overdue(at):
            raise ConfirmationTooLate(self.id)

    def _check_approval(self, actor: str, at: datetime) -> None:
        self.check_approvable(actor)
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

    @event(Confirmed)
    def _confirmed(
        self,
        *,
        method: str,
        meaning: str,
        signer_name: str,
        emergency: bool,
        actor: str,
        at: datetime,
    ) -> None:
        self._status = CommandStatus.CONFIRMED
        self._emergency = emergency
        # A critical tag's request is followed by ApprovalRequested: released only later.
        self._released_at = at

    @event("ApprovalRequested")
    def _approval_requested(self, *, expires_at: datetime, actor: str, at: datetime) -> None:
        self._status = CommandStatus.AWAITING_APPROVAL
        self._expires_at = expires_at

    @event("Approved")
    def _approved(
        self, *, method: str, meaning: str, signer_name: str, actor: str, at: datetime
    ) -> None:
        self._status = CommandStatus.CONFIRMED
        self._approved_by = actor
        self._released_at = at

    @event("ApprovalRefused")
    def _approval_refused(self, *, reason: str, actor: str, at: datetime) -> None:
        self._reason = reason

    @event("ApprovalDeclined")
    def _approval_declined(self, *, reason: str, actor: str, at: datetime) -> None:
        self._status = CommandStatus.DECLINED
        self._reason = reason

    @event("ConfirmationFailed")
    def _confirmation_failed(
        self, *, reason: str, attempt: int, final: bool, actor: str, at: datetime
    ) -> None:
        self._failures = attempt
        self._reason = reason
        if final:
            self._status = CommandStatus.CONFIRMATION_FAILED

    @event(Expired)
    def _expired(self, *, reason: str, actor: str, at: datetime) -> None:
        self._status = CommandStatus.EXPIRED
        self._reason = reason

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
