"""The domain's errors: one small tree, each error carrying what its caller needs.

::

    DomainError
    ├── InvalidWrite                  the catalogue refuses a write (nothing recorded yet)
    │   ├── UnknownDevice             device
    │   ├── UnknownTag                device, tag
    │   ├── NotWritable               device, tag
    │   ├── ValueNotNumeric           device, tag, value (wrong type, NaN/inf, bool vs number)
    │   └── OutOfLimits               device, tag, value, low, high
    ├── CommandNotFound               command_id
    ├── CommandClosed                 command_id, status (the command already ended)
    ├── ConfirmationTooLate           command_id (raised after ``Expired`` was recorded)
    ├── DispatchTooLate               command_id (after ``Expired``: not dispatched in time)
    ├── NotRequester                  command_id, actor
    ├── CommandRefused                command_id, reason, detail (after Requested + Rejected)
    ├── ConfirmationRefused           command_id, reason, attempts_left, codes_left (after
    │                                 ConfirmationFailed or ApprovalRefused, and SecondFactorFailed)
    ├── InvalidTransition             command_id, status, action (not allowed in this status)
    ├── OperatorExists                username
    ├── InvalidUsername               username, reason (``empty``, ``control_character``)
    ├── UnknownOperator               username
    ├── CodeReused                    username, step (a TOTP time step already accepted)
    ├── SecondFactorRefused           username, reason, codes_left (after SecondFactorFailed)
    ├── SecondFactorLocked            username, until (too many wrong codes; recorded first)
    ├── UnknownRole                   role
    ├── InvalidScope                  scope (not ``plant``, ``area:<name>`` or ``device:<id>``)
    ├── Forbidden                     actor, action, target (the matrix says no)
    ├── SecondPersonRequired          command_id, actor (a requester approving their own)
    ├── LoginRefused                  username, reason, until (after LoginFailed was recorded)
    ├── SessionInvalid                reason (ended, expired, invalid; reuse ends the family)
    ├── OperatorAccountError          username, code, detail (disable yourself, last admin, …)
    ├── ModeReasonRequired            (a plant mode change without a reason)
    ├── InputTooLarge                 field, length, limit (a text over its bound, domain.bounds)
    ├── AlarmNotFound                 alarm_id
    └── AlarmActionRefused            alarm_id, state, action, code, detail
        ├── NothingToAcknowledge      (normal, or already acknowledged)
        ├── ShelveRefused             (out of service, already shelved, no reason, bad duration)
        ├── NotShelved
        ├── RemovalRefused            (already out of service, no reason)
        ├── NotOutOfService
        └── LatchResetRefused         (not latched, or the process is still in alarm)

Some errors are raised *after* an event was saved, so the caller knows the
refusal itself is on record: ``CommandRefused``, ``ConfirmationRefused`` and
``ConfirmationTooLate``, ``LoginRefused``, ``SecondFactorRefused``,
``SecondFactorLocked`` and ``SessionInvalid`` (a reused refresh token revokes
its session first). All the others leave the event store untouched.

An ``AlarmActionRefused`` carries a fixed ``code`` per cause (``already_shelved``,
``still_active``, …) for callers that answer machines, and ``detail`` for people.

Statuses and reasons are carried as plain strings (the values of the domain's
``StrEnum``\\ s) so that this module depends on nothing else in the domain.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidWrite(DomainError):
    """The tag catalogue refuses a write; each subclass is one rejection reason."""


class UnknownDevice(InvalidWrite):
    def __init__(self, device: str) -> None:
        super().__init__(f"unknown device {device!r}")
        self.device = device


class UnknownTag(InvalidWrite):
    def __init__(self, device: str, tag: str) -> None:
        super().__init__(f"device {device!r} has no tag {tag!r}")
        self.device = device
        self.tag = tag


class NotWritable(InvalidWrite):
    def __init__(self, device: str, tag: str) -> None:
        super().__init__(f"tag {device}/{tag} is read-only")
        self.device = device
        self.tag = tag


class ValueNotNumeric(InvalidWrite):
    """The value's type does not fit the tag (also NaN and infinities)."""

    def __init__(self, device: str, tag: str, value: object, expected: str = "a number") -> None:
        super().__init__(f"tag {device}/{tag} expects {expected}, got {value!r}")
        self.device = device
        self.tag = tag
        self.value = value


class OutOfLimits(InvalidWrite):
    def __init__(
        self, device: str, tag: str, value: float, low: float | None, high: float | None
    ) -> None:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "+inf" if high is None else f"{high:g}"
        super().__init__(f"{value!r} is outside the limits [{lo}, {hi}] of tag {device}/{tag}")
        self.device = device
        self.tag = tag
        self.value = value
        self.low = low
        self.high = high


class CommandNotFound(DomainError):
    def __init__(self, command_id: UUID) -> None:
        super().__init__(f"no command {command_id}")
        self.command_id = command_id


class CommandClosed(DomainError):
    def __init__(self, command_id: UUID, status: str) -> None:
        super().__init__(f"command {command_id} already ended ({status})")
        self.command_id = command_id
        self.status = status


class ConfirmationTooLate(DomainError):
    def __init__(self, command_id: UUID) -> None:
        super().__init__(f"command {command_id} expired before it was confirmed")
        self.command_id = command_id


class DispatchTooLate(DomainError):
    """A released write not dispatched within the dispatch window: recorded as expired."""

    def __init__(self, command_id: UUID, window: timedelta) -> None:
        super().__init__(
            f"command {command_id} was not dispatched within {window.total_seconds():g} s"
            " of its release: expired, not written"
        )
        self.command_id = command_id


class NotRequester(DomainError):
    def __init__(self, command_id: UUID, actor: str) -> None:
        super().__init__(f"{actor!r} did not request command {command_id}")
        self.command_id = command_id
        self.actor = actor


class CommandRefused(DomainError):
    def __init__(self, command_id: UUID, reason: str, detail: str) -> None:
        super().__init__(f"command {command_id} rejected ({reason}): {detail}")
        self.command_id = command_id
        self.reason = reason
        self.detail = detail


class ConfirmationRefused(DomainError):
    """A failed confirmation or approval code.

    ``attempts_left`` is the command's (0: it ended with this one); only its
    requester's codes use them. ``codes_left`` is the person's: wrong codes
    they may still give, on any command, before their second factor locks.
    """

    def __init__(self, command_id: UUID, reason: str, attempts_left: int, codes_left: int) -> None:
        super().__init__(
            f"code for command {command_id} refused ({reason}): the command has"
            f" {attempts_left} attempt(s) left, you {codes_left} wrong code(s)"
            " before your second factor locks"
        )
        self.command_id = command_id
        self.reason = reason
        self.attempts_left = attempts_left
        self.codes_left = codes_left


class InvalidTransition(DomainError):
    def __init__(self, command_id: UUID, status: str, action: str) -> None:
        super().__init__(f"cannot {action} command {command_id} while it is {status}")
        self.command_id = command_id
        self.status = status
        self.action = action


class OperatorExists(DomainError):
    def __init__(self, username: str) -> None:
        super().__init__(f"operator {username!r} already exists")
        self.username = username


class InvalidUsername(DomainError):
    """A new user name no one could read back: ``empty``, or holding a ``control_character``."""

    def __init__(self, username: str, reason: str) -> None:
        what = "is empty" if reason == "empty" else "holds a control or invisible character"
        super().__init__(f"the user name {username!r} {what}")
        self.username = username
        self.reason = reason


class UnknownOperator(DomainError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no operator {username!r}")
        self.username = username


class CodeReused(DomainError):
    def __init__(self, username: str, step: int) -> None:
        super().__init__(f"the TOTP code of time step {step} was already used by {username!r}")
        self.username = username
        self.step = step


class SecondFactorRefused(DomainError):
    """A wrong or reused code, or an enrolment token that does not work; recorded first.

    ``codes_left`` is how many more the person may get wrong before their
    second factor locks (0: it just locked).
    """

    def __init__(self, username: str, reason: str, codes_left: int) -> None:
        super().__init__(
            f"second factor of {username!r} refused ({reason}),"
            f" {codes_left} wrong answer(s) left before it locks"
        )
        self.username = username
        self.reason = reason
        self.codes_left = codes_left


class SecondFactorLocked(DomainError):
    """Too many wrong codes in the window: every answer is refused until ``until``."""

    def __init__(self, username: str, until: datetime) -> None:
        super().__init__(
            f"the second factor of {username!r} is locked after too many wrong codes"
            f" until {until.isoformat()} (or an admin's unlockSecondFactor)"
        )
        self.username = username
        self.until = until


class UnknownRole(DomainError):
    def __init__(self, role: str) -> None:
        super().__init__(f"no role {role!r}")
        self.role = role


class InvalidScope(DomainError):
    def __init__(self, scope: str) -> None:
        super().__init__(f"{scope!r} is not a scope: use plant, area:<name> or device:<id>")
        self.scope = scope


class Forbidden(DomainError):
    """The permission matrix does not allow ``action`` to ``actor`` on ``target``."""

    def __init__(self, actor: str, action: str, target: str = "") -> None:
        where = f" on {target}" if target else ""
        super().__init__(f"{actor!r} may not {action}{where}")
        self.actor = actor
        self.action = action
        self.target = target


class SecondPersonRequired(DomainError):
    def __init__(self, command_id: UUID, actor: str) -> None:
        super().__init__(
            f"command {command_id} needs the approval of a second person, not {actor!r}"
        )
        self.command_id = command_id
        self.actor = actor


class LoginRefused(DomainError):
    """``reason``: ``invalid_credentials``, ``locked`` (``until`` set) or ``disabled``."""

    def __init__(self, username: str, reason: str, until: datetime | None = None) -> None:
        detail = f" until {until.isoformat()}" if until else ""
        super().__init__(f"login of {username!r} refused ({reason}){detail}")
        self.username = username
        self.reason = reason
        self.until = until


class SessionInvalid(DomainError):
    """``reason``: ``ended`` (or never was), ``expired``, ``disabled``, ``invalid`` (a refresh
    token not of this session) or ``refresh_reused`` (the session was revoked for it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"session not valid ({reason})")
        self.reason = reason


class OperatorAccountError(DomainError):
    """A change to an account that would leave it or the plant unmanageable."""

    def __init__(self, username: str, code: str, detail: str) -> None:
        super().__init__(f"{username!r}: {detail}")
        self.username = username
        self.code = code
        self.detail = detail


class ModeReasonRequired(DomainError):
    def __init__(self) -> None:
        super().__init__("changing the plant mode needs a reason")


class InputTooLarge(DomainError):
    """A text longer than the plant records (:mod:`domain.bounds`); nothing was recorded."""

    def __init__(self, field: str, length: int, limit: int) -> None:
        super().__init__(f"{field} has {length} characters, more than {limit}")
        self.field = field
        self.length = length
        self.limit = limit


class AlarmNotFound(DomainError):
    def __init__(self, alarm_id: UUID) -> None:
        super().__init__(f"no alarm {alarm_id}")
        self.alarm_id = alarm_id


class AlarmActionRefused(DomainError):
    """An operator action the alarm's state does not allow; nothing was recorded."""

    def __init__(self, alarm_id: UUID, state: str, action: str, code: str, detail: str) -> None:
        super().__init__(f"cannot {action} alarm {alarm_id} ({state}): {detail}")
        self.alarm_id = alarm_id
        self.state = state
        self.action = action
        self.code = code
        self.detail = detail


class NothingToAcknowledge(AlarmActionRefused):
    def __init__(self, alarm_id: UUID, state: str) -> None:
        super().__init__(
            alarm_id,
            state,
            "acknowledge",
            "nothing_to_acknowledge",
            "no alarm has been raised since it was last acknowledged or normal",
        )


class ShelveRefused(AlarmActionRefused):
    """``code``: ``out_of_service``, ``already_shelved``, ``reason_required``, ``bad_duration``."""

    def __init__(self, alarm_id: UUID, state: str, code: str, detail: str) -> None:
        super().__init__(alarm_id, state, "shelve", code, detail)


class NotShelved(AlarmActionRefused):
    def __init__(self, alarm_id: UUID, state: str) -> None:
        super().__init__(alarm_id, state, "unshelve", "not_shelved", "the alarm is not shelved")


class RemovalRefused(AlarmActionRefused):
    """``code`` is ``already_out_of_service`` or ``reason_required``."""

    def __init__(self, alarm_id: UUID, state: str, code: str, detail: str) -> None:
        super().__init__(alarm_id, state, "remove from service", code, detail)


class NotOutOfService(AlarmActionRefused):
    def __init__(self, alarm_id: UUID, state: str) -> None:
        super().__init__(
            alarm_id,
            state,
            "return to service",
            "not_out_of_service",
            "the alarm is in service",
        )


class LatchResetRefused(AlarmActionRefused):
    """``code`` is ``not_latched`` or ``still_active`` (the process is still in alarm)."""

    def __init__(self, alarm_id: UUID, state: str, code: str, detail: str) -> None:
        super().__init__(alarm_id, state, "reset the latch of", code, detail)
