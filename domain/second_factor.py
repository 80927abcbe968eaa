"""The rules of the second factor that are not about one event: limits, reasons, purposes.

A TOTP code proves that the person at the console holds their authenticator.
Two things must hold for that proof to mean anything:

- **Guessing is bounded per person.** A six-digit code falls to a million
  guesses; three attempts per command would still allow unlimited guesses
  over many commands. Every wrong or reused code an operator gives, to
  confirm, approve, enrol or sign a recovery, counts against *them* in a
  sliding window (:class:`SecondFactorPolicy`); past the limit every further
  answer of theirs is refused, right or wrong, until the window has passed
  or an admin unlocks them.
- **The first factor never replaces the second.** Enrolling a new secret over
  an existing one needs a code of the current one. An account without a
  usable secret (new, or recovered after a lost authenticator) enrols with a
  one-time enrolment token. A recovery's token is made of two parts, each
  shown to one of the two admins who signed it, so no admin alone ever holds
  a token that works.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

# How far back an operator remembers wrong codes; the failure window cannot be longer.
FAILURE_MEMORY = timedelta(hours=24)
# What a code was for (``target`` of SecondFactorFailed and SecondFactorRefused).
ENROLMENT_TARGET = "enrolment"


def command_target(command_id: UUID) -> str:
    return f"command:{command_id}"


def recovery_target(username: str) -> str:
    return f"recovery:{username}"


class SecondFactorFailure(StrEnum):
    """Why an answer of the second factor failed (``SecondFactorFailed.reason``)."""

    WRONG_CODE = "wrong_code"
    CODE_REUSED = "code_reused"
    INVALID_ENROLMENT_TOKEN = "invalid_enrolment_token"  # noqa: S105 - a reason, not a secret


class EnrolmentMethod(StrEnum):
    """How a secret was enrolled (``TotpEnrolled.method``)."""

    # Over an existing secret, proven with a code of it.
    CODE = "code"
    # With a one-time enrolment token: a new account, or after a recovery.
    TOKEN = "token"  # noqa: S105 - a method's name
    # Before enrolling needed more than the password (``TotpEnrolled`` version 1).
    PASSWORD = "password"  # noqa: S105 - a method's name


@dataclass(frozen=True, slots=True)
class SecondFactorPolicy:
    """How many wrong codes a person may give, and how long tokens and requests last."""

    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    # A new account's token, or a recovery's once approved: a weekend long.
    enrolment_token_lifetime: timedelta = timedelta(hours=72)
    # A recovery request waits this long for a second admin's approval.
    recovery_request_lifetime: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if not timedelta(0) < self.failure_window <= FAILURE_MEMORY:
            raise ValueError(f"failure_window must be positive and at most {FAILURE_MEMORY}")

    def locked_until(self, failures: Iterable[datetime], at: datetime) -> datetime | None:
        """When the lockout that ``failures`` cause at ``at`` ends, or ``None`` if there is none.

        Locked while the window before ``at`` holds ``max_failures`` failures:
        until the oldest of the last ``max_failures`` leaves the window.
        """
        recent = sorted(t for t in failures if t > at - self.failure_window)
        if len(recent) < self.max_failures:
            return None
        return recent[-self.max_failures] + self.failure_window

    def failures_in_window(self, failures: Iterable[datetime], at: datetime) -> int:
        return sum(1 for t in failures if t > at - self.failure_window)
