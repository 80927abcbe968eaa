"""The Operator aggregate: a person (or an integrator's service account) and their access.

Everything that decides whether someone may act is an event of their
operator, so that it can be read back from the log:

- the account: ``Registered``, ``Disabled``, ``Enabled``;
- what they may do and where: ``RoleGranted``/``RoleRevoked``,
  ``PermissionGranted``/``PermissionRevoked`` (scopes, see :mod:`domain.permissions`);
- their credentials: ``PasswordSet`` (an Argon2id hash), ``TotpEnrolled`` (the
  TOTP secret *sealed* by the API with the plant's secrets key, opaque here),
  ``TotpStepUsed`` (a code is accepted once per time step);
- their second factor's safeguards (:mod:`domain.second_factor`):
  ``EnrolmentTokenIssued`` (a new account enrols with a one-time token),
  ``TotpRecoveryRequested`` and ``TotpRecoveryApproved`` (two admins replace a
  lost authenticator by a token), ``SecondFactorFailed``,
  ``SecondFactorLockedOut``, ``SecondFactorRefused`` and
  ``SecondFactorUnlocked`` (wrong codes counted per person);
- their sessions: ``LoginSucceeded`` (starts one), ``LoginFailed`` (with the
  source address), ``LockedOut``, ``Unlocked``, ``SessionRefreshed``,
  ``LoggedOut``, ``SessionRevoked``;
- what they were refused: ``AccessDenied`` (the action, the device if any, the
  source address), whenever the permission matrix says no.

A session is a family of refresh tokens: each refresh replaces the token and
remembers the old one's hash, and presenting an old one again (a stolen token
used after its owner refreshed, or the other way round) revokes the session.

The id is derived from the username, so registering the same name twice
collides in the event store itself (a version conflict) instead of racing a
"does it exist?" check.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    CodeReused,
    LoginRefused,
    OperatorAccountError,
    SecondFactorLocked,
    SecondFactorRefused,
    SessionInvalid,
)
from domain.permissions import Scope, parse_role
from domain.second_factor import (
    ENROLMENT_TARGET,
    FAILURE_MEMORY,
    EnrolmentMethod,
    SecondFactorFailure,
    SecondFactorPolicy,
)

# Fixed forever: changing it would orphan every stored operator.
OPERATOR_NAMESPACE = UUID("6f1c1d0e-5b8a-4c1e-9a57-0d3c8f7e2b41")
# Version 1 of ``Registered`` held the TOTP secret in clear; its upcast marks it so.
CLEAR_SECRET_PREFIX = "clear:"  # noqa: S105 - a marker, not a secret
OWN_RECOVERY = "your own second factor is recovered by two other admins"


def operator_id(username: str) -> UUID:
    """The id of the account stored under exactly ``username``.

    New names are stored in their normal form (:mod:`domain.usernames`), so
    pass a name through :func:`~domain.usernames.normalise_username` first;
    accounts from before keep the id of the name as it was typed then.
    """
    return uuid5(OPERATOR_NAMESPACE, "operator:" + username)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Lockout after ``max_failures`` wrong passwords in a row, for longer each time."""

    max_failures: int = 5
    first_lockout: timedelta = timedelta(minutes=1)
    longest_lockout: timedelta = timedelta(hours=1)
    # A session (its refresh tokens) ends this long after login, refreshed or not: one shift.
    session_lifetime: timedelta = timedelta(hours=12)
    # Wrong TOTP codes per person, enrolment tokens and recovery requests.
    second_factor: SecondFactorPolicy = field(default_factory=SecondFactorPolicy)

    def lockout(self, lockouts: int) -> timedelta:
        """The ``lockouts``-th lockout of a streak lasts twice the one before, up to the longest."""
        # Doubling stops at the longest: past ~40 lockouts 2**n would overflow a timedelta.
        longer = self.first_lockout
        for _ in range(lockouts - 1):
            if longer >= self.longest_lockout:
                break
            longer *= 2
        return min(longer, self.longest_lockout)


class SessionRecord(TypedDict):
    source: str
    started_at: datetime
    expires_at: datetime
    generation: int
    refresh_hash: str
    used_hashes: list[str]


class EnrolmentRecord(TypedDict):
    # The SHA-256 of each part of the token: one, or a recovery's two (one per admin).
    token_hashes: list[str]
    expires_at: datetime


class RecoveryRecord(TypedDict):
    requested_by: str
    token_hash: str
    expires_at: datetime


# A refusal of the second factor, recorded on the operator and to be raised once saved.
SecondFactorRefusal = SecondFactorRefused | SecondFactorLocked


@dataclass(frozen=True, slots=True)
class SessionView:
    """One open session as an admin sees it."""

    session_id: str
    username: str
    source: str
    started_at: datetime
    expires_at: datetime
    refreshes: int


class Operator(Aggregate):
    # Version 2 added the second factor's enrolment, recovery and failures (snapshots upcast).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        # A snapshot from before: no token outstanding, no recovery asked, no wrong code counted.
        state["_enrolment"] = None
        state["_recovery"] = None
        state["_totp_failures"] = []

    class Registered(Aggregate.Created):
        username: str
        full_name: str
        roles: list[str]
        password_hash: str
        totp_secret_sealed: str
        actor: str
        at: datetime

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 had one role and the TOTP secret in clear.
            state["roles"] = [state.pop("role")]
            state["totp_secret_sealed"] = CLEAR_SECRET_PREFIX + state.pop("totp_secret")

    class TotpEnrolled(Aggregate.Event):
        totp_secret_sealed: str
        method: str
        actor: str
        at: datetime

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 was enrolled with the password alone.
            state["method"] = EnrolmentMethod.PASSWORD.value

    @staticmethod
    def create_id(*_: Any, username: str, **__: Any) -> UUID:
        return operator_id(username)

    @classmethod
    def register(
        cls,
        *,
        username: str,
        full_name: str,
        roles: Iterable[str],
        password_hash: str,
        totp_secret_sealed: str,
        actor: str,
        at: datetime,
    ) -> Operator:
        checked = sorted({parse_role(role).value for role in roles})
        if not checked:
            raise OperatorAccountError(username, "role_required", "an operator needs a role")
        return cls(
            username=username,
            full_name=full_name,
            roles=checked,
            password_hash=password_hash,
            totp_secret_sealed=totp_secret_sealed,
            actor=actor,
            at=at,
        )

    @event(Registered)
    def __init__(
        self,
        *,
        username: str,
        full_name: str,
        roles: list[str],
        password_hash: str,
        totp_secret_sealed: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._username = username
        self._full_name = full_name
        self._roles = list(roles)
        self._scopes: list[str] = []
        self._enabled = True
        self._password_hash = password_hash
        self._totp_secret_sealed = totp_secret_sealed
        self._last_totp_step: int | None = None
        self._enrolment: EnrolmentRecord | None = None
        self._recovery: RecoveryRecord | None = None
        # When wrong codes were given (the last FAILURE_MEMORY of them): counted per person.
        self._totp_failures: list[datetime] = []
        self._failures = 0
        self._lockouts = 0
        self._locked_until: datetime | None = None
        self._sessions: dict[str, SessionRecord] = {}

    # -- what the API reads ------------------------------------------------------------------

    @property
    def username(self) -> str:
        return self._username

    @property
    def full_name(self) -> str:
        return self._full_name

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._roles)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self._scopes)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def password_hash(self) -> str:
        return self._password_hash

    @property
    def totp_secret_sealed(self) -> str:
        return self._totp_secret_sealed

    @property
    def last_totp_step(self) -> int | None:
        return self._last_totp_step

    @property
    def totp_enrolled(self) -> bool:
        """Whether a secret is enrolled; a new or recovered account has none until it enrols."""
        return bool(self._totp_secret_sealed)

    @property
    def enrolment_token_expires_at(self) -> datetime | None:
        """When the outstanding enrolment token stops working; ``None`` without one."""
        return self._enrolment["expires_at"] if self._enrolment is not None else None

    def totp_recovery_requested_by(self, at: datetime) -> str | None:
        """The admin whose recovery request still waits for a second admin at ``at``."""
        recovery = self._recovery
        if recovery is None or at >= recovery["expires_at"]:
            return None
        return recovery["requested_by"]

    def second_factor_locked_until(
        self, policy: SecondFactorPolicy, at: datetime
    ) -> datetime | None:
        return policy.locked_until(self._totp_failures, at)

    @property
    def failures(self) -> int:
        """Wrong passwords since the last login or unlock."""
        return self._failures

    @property
    def locked_until(self) -> datetime | None:
        return self._locked_until

    def is_locked(self, at: datetime) -> bool:
        return self._locked_until is not None and at < self._locked_until

    def open_sessions(self, at: datetime) -> list[SessionView]:
        return [
            SessionView(
                session_id=session_id,
                username=self._username,
                source=record["source"],
                started_at=record["started_at"],
                expires_at=record["expires_at"],
                refreshes=record["generation"],
            )
            for session_id, record in sorted(self._sessions.items())
            if at < record["expires_at"]
        ]

    def check_session(self, session_id: str, at: datetime) -> None:
        """Raise :class:`SessionInvalid` unless ``session_id`` is open at ``at``."""
        if not self._enabled:
            raise SessionInvalid("disabled")
        record = self._sessions.get(session_id)
        if record is None:
            raise SessionInvalid("ended")
        if at >= record["expires_at"]:
            raise SessionInvalid("expired")

    def __repr__(self) -> str:
        # The library's repr prints every attribute: credentials must never reach a log.
        return (
            f"Operator(username={self._username!r}, roles={self._roles!r}, version={self.version})"
        )

    # -- the account -------------------------------------------------------------------------

    def disable(self, *, reason: str, actor: str, at: datetime) -> bool:
        if not self._enabled:
            return False
        if actor == self._username:
            raise OperatorAccountError(self._username, "self", "you cannot disable yourself")
        self._disabled(reason=reason, actor=actor, at=at)
        return True

    def enable(self, *, actor: str, at: datetime) -> bool:
        if self._enabled:
            return False
        self._enabled_again(actor=actor, at=at)
        return True

    def grant_role(self, role: str, *, actor: str, at: datetime) -> bool:
        checked = parse_role(role).value
        if checked in self._roles:
            return False
        self._role_granted(role=checked, actor=actor, at=at)
        return True

    def revoke_role(self, role: str, *, actor: str, at: datetime) -> bool:
        checked = parse_role(role).value
        if checked not in self._roles:
            return False
        if len(self._roles) == 1:
            raise OperatorAccountError(
                self._username, "role_required", "an operator keeps at least one role"
            )
        self._role_revoked(role=checked, actor=actor, at=at)
        return True

    def grant_permission(self, scope: str, *, actor: str, at: datetime) -> bool:
        checked = str(Scope.parse(scope))
        if checked in self._scopes:
            return False
        self._permission_granted(scope=checked, actor=actor, at=at)
        return True

    def revoke_permission(self, scope: str, *, actor: str, at: datetime) -> bool:
        checked = str(Scope.parse(scope))
        if checked not in self._scopes:
            return False
        self._permission_revoked(scope=checked, actor=actor, at=at)
        return True

    def set_password(self, password_hash: str, *, actor: str, at: datetime) -> None:
        """Record the new hash; set by someone else (a reset), it also ends every session."""
        self._password_set(password_hash=password_hash, actor=actor, at=at)
        if actor != self._username:
            for session_id in sorted(self._sessions):
                self._session_revoked(
                    session_id=session_id, reason="password reset", actor=actor, at=at
                )

    def use_totp_step(self, step: int, at: datetime) -> None:
        """Accept a TOTP code of time ``step`` once only (RFC 6238 §5.2).

        Steps only move forward: an older step is refused too, so a code
        captured earlier cannot be replayed while it is still in the
        verifier's tolerance window.
        """
        if self._last_totp_step is not None and step <= self._last_totp_step:
            raise CodeReused(self._username, step)
        self._totp_step_used(step=step, actor=self._username, at=at)

    # -- the second factor -------------------------------------------------------------------

    def answer_second_factor(
        self, step: int | None, *, target: str, policy: SecondFactorPolicy, at: datetime
    ) -> SecondFactorRefusal | None:
        """Record this person's answer of a code of time ``step`` (``None``: a wrong code).

        Answers the refusal to raise once saved, or ``None`` when the step is now
        spent. While locked, every answer is refused unchecked (and recorded):
        guessing on is pointless. ``target`` says what the code was for.
        """
        locked = self._refuse_if_locked(target, policy, at)
        if locked is not None:
            return locked
        if step is None:
            return self._fail_second_factor(SecondFactorFailure.WRONG_CODE, target, policy, at)
        try:
            self.use_totp_step(step, at)
        except CodeReused:
            return self._fail_second_factor(SecondFactorFailure.CODE_REUSED, target, policy, at)
        return None

    def enroll_totp(
        self, totp_secret_sealed: str, *, step: int | None, policy: SecondFactorPolicy, at: datetime
    ) -> SecondFactorRefusal | None:
        """Replace the secret, proven by a code of time ``step`` of the current one.

        The password alone never replaces the second factor: whoever knows or
        reset it still lacks the authenticator. An account without a secret
        enrols with its token instead (:meth:`enroll_totp_with_token`).
        """
        if not self.totp_enrolled:
            raise OperatorAccountError(
                self._username,
                "totp_not_enrolled",
                "no authenticator is enrolled: enrol with your enrolment token",
            )
        refusal = self.answer_second_factor(step, target=ENROLMENT_TARGET, policy=policy, at=at)
        if refusal is None:
            self._totp_enrolled(
                totp_secret_sealed=totp_secret_sealed,
                method=EnrolmentMethod.CODE.value,
                actor=self._username,
                at=at,
            )
        return refusal

    def enroll_totp_with_token(
        self,
        totp_secret_sealed: str,
        *,
        presented_hashes: Sequence[str],
        policy: SecondFactorPolicy,
        at: datetime,
    ) -> SecondFactorRefusal | None:
        """Enrol with the outstanding one-time token, given as the hashes of its parts.

        A token that does not match, ran out or was used counts as a wrong code.
        """
        locked = self._refuse_if_locked(ENROLMENT_TARGET, policy, at)
        if locked is not None:
            return locked
        if not self._token_matches(presented_hashes, at):
            failure = SecondFactorFailure.INVALID_ENROLMENT_TOKEN
            return self._fail_second_factor(failure, ENROLMENT_TARGET, policy, at)
        self._totp_enrolled(
            totp_secret_sealed=totp_secret_sealed,
            method=EnrolmentMethod.TOKEN.value,
            actor=self._username,
            at=at,
        )
        return None

    def issue_enrolment_token(
        self, token_hash: str, *, expires_at: datetime, actor: str, at: datetime
    ) -> None:
        """A new account's first enrolment: its token, shown once to whoever created it."""
        self._enrolment_token_issued(
            token_hash=token_hash, expires_at=expires_at, actor=actor, at=at
        )

    def request_totp_recovery(
        self,
        *,
        reason: str,
        token_hash: str,
        signer_name: str,
        expires_at: datetime,
        actor: str,
        at: datetime,
    ) -> None:
        """An admin, signing with their own code, asks to replace this lost authenticator.

        ``token_hash`` is the hash of the first part of the enrolment token,
        shown to this admin only.
        """
        self.check_totp_recovery_requestable(actor, at)
        self._totp_recovery_requested(
            reason=reason,
            token_hash=token_hash,
            signer_name=signer_name,
            expires_at=expires_at,
            actor=actor,
            at=at,
        )

    def check_totp_recovery_requestable(self, actor: str, at: datetime) -> None:
        """Raise unless ``actor`` may ask for a recovery now; checked before their code is spent."""
        if actor == self._username:
            raise OperatorAccountError(self._username, "self", OWN_RECOVERY)
        waiting = self.totp_recovery_requested_by(at)
        if waiting is not None:
            raise OperatorAccountError(
                self._username,
                "recovery_pending",
                f"{waiting!r} already asked for a recovery, which waits for a second admin",
            )

    def check_totp_recovery_approvable(self, actor: str, at: datetime) -> None:
        """Raise unless ``actor`` may approve the waiting recovery: a second admin, not its owner.

        Checked before the approver's code is spent.
        """
        requested_by = self.totp_recovery_requested_by(at)
        if requested_by is None:
            raise OperatorAccountError(
                self._username, "no_recovery_request", "no recovery request waits for an approval"
            )
        if actor == self._username:
            raise OperatorAccountError(self._username, "self", OWN_RECOVERY)
        if actor == requested_by:
            raise OperatorAccountError(
                self._username,
                "second_person_required",
                f"the recovery {requested_by!r} asked for needs a second admin's approval",
            )

    def approve_totp_recovery(
        self,
        *,
        token_hash: str,
        token_expires_at: datetime,
        signer_name: str,
        actor: str,
        at: datetime,
    ) -> None:
        """The second admin's signed approval: the old secret and every session end.

        ``token_hash`` is the hash of the token's second part, shown to this
        admin only; the account enrols with both parts.
        """
        self.check_totp_recovery_approvable(actor, at)
        self._totp_recovery_approved(
            token_hash=token_hash,
            token_expires_at=token_expires_at,
            signer_name=signer_name,
            actor=actor,
            at=at,
        )

    def unlock_second_factor(self, *, actor: str, at: datetime) -> bool:
        """Forget the wrong codes given; never by their owner, who could then guess on."""
        if actor == self._username:
            raise OperatorAccountError(
                self._username, "self", "another admin unlocks your second factor"
            )
        if not self._totp_failures:
            return False
        self._second_factor_unlocked(actor=actor, at=at)
        return True

    def _refuse_if_locked(
        self, target: str, policy: SecondFactorPolicy, at: datetime
    ) -> SecondFactorLocked | None:
        """Record and answer the refusal of any answer while locked; ``None`` when not locked."""
        until = self.second_factor_locked_until(policy, at)
        if until is None:
            return None
        self._second_factor_refused(target=target, until=until, actor=self._username, at=at)
        return SecondFactorLocked(self._username, until)

    def _fail_second_factor(
        self, reason: SecondFactorFailure, target: str, policy: SecondFactorPolicy, at: datetime
    ) -> SecondFactorRefused:
        failures = policy.failures_in_window(self._totp_failures, at) + 1
        self._second_factor_failed(
            reason=reason.value, target=target, failures=failures, actor=self._username, at=at
        )
        until = self.second_factor_locked_until(policy, at)
        if until is not None:
            self._second_factor_locked_out(until=until, actor="system", at=at)
        return SecondFactorRefused(self._username, reason.value, policy.max_failures - failures)

    def _token_matches(self, presented_hashes: Sequence[str], at: datetime) -> bool:
        enrolment = self._enrolment
        if enrolment is None or at >= enrolment["expires_at"]:
            return False
        expected, given = sorted(enrolment["token_hashes"]), sorted(presented_hashes)
        # Every part is compared, in constant time, whatever the first comparisons gave.
        matches = [hmac.compare_digest(e, g) for e, g in zip(expected, given, strict=False)]
        return len(expected) == len(given) and all(matches)

    def deny(self, *, action: str, target: str, source: str, at: datetime) -> None:
        """Record that the permission matrix refused this operator ``action`` (on ``target``)."""
        self._access_denied(
            action=action, target=target, source=source, actor=self._username, at=at
        )

    # -- logging in and sessions -------------------------------------------------------------

    def check_password(
        self, *, password_matches: bool, source: str, policy: LoginPolicy, at: datetime
    ) -> LoginRefused | None:
        """Record a refused password (at login, or re-entered to change a credential).

        Answers the refusal to raise once saved, or ``None`` if the password may
        be used. A locked account is refused whatever the password, so that
        trying one during the lockout tells nothing; those attempts do not
        lengthen it.
        """
        actor = self._username
        if self.is_locked(at):
            self._login_failed(
                source=source, reason="locked", failures=self._failures, actor=actor, at=at
            )
            return LoginRefused(self._username, "locked", self._locked_until)
        if password_matches:
            return None
        failures = self._failures + 1
        self._login_failed(
            source=source, reason="invalid_credentials", failures=failures, actor=actor, at=at
        )
        if failures % policy.max_failures == 0:
            lockouts = self._lockouts + 1
            until = at + policy.lockout(lockouts)
            self._locked_out(until=until, lockouts=lockouts, actor="system", at=at)
            return LoginRefused(self._username, "locked", until)
        return LoginRefused(self._username, "invalid_credentials")

    def log_in(
        self,
        *,
        password_matches: bool,
        source: str,
        session_id: str,
        refresh_hash: str,
        policy: LoginPolicy,
        at: datetime,
    ) -> LoginRefused | None:
        """Record the attempt; the refusal to raise once it is saved, or ``None``."""
        refusal = self.check_password(
            password_matches=password_matches, source=source, policy=policy, at=at
        )
        if refusal is not None:
            return refusal
        if not self._enabled:
            self._login_failed(
                source=source,
                reason="disabled",
                failures=self._failures,
                actor=self._username,
                at=at,
            )
            return LoginRefused(self._username, "disabled")
        self._login_succeeded(
            session_id=session_id,
            source=source,
            refresh_hash=refresh_hash,
            expires_at=at + policy.session_lifetime,
            actor=self._username,
            at=at,
        )
        return None

    def unlock(self, *, actor: str, at: datetime) -> bool:
        if self._failures == 0 and self._locked_until is None:
            return False
        self._unlocked(actor=actor, at=at)
        return True

    def refresh(
        self, *, session_id: str, presented_hash: str, new_hash: str, source: str, at: datetime
    ) -> SessionInvalid | None:
        """Rotate the session's refresh token; the refusal to raise once saved, or ``None``.

        Presenting a token this session already replaced revokes the whole
        session (recorded, so it must be saved before the refusal is raised).
        """
        self.check_session(session_id, at)
        record = self._sessions[session_id]
        if hmac.compare_digest(record["refresh_hash"], presented_hash):
            self._session_refreshed(
                session_id=session_id,
                generation=record["generation"] + 1,
                refresh_hash=new_hash,
                source=source,
                actor=self._username,
                at=at,
            )
            return None
        if any(hmac.compare_digest(old, presented_hash) for old in record["used_hashes"]):
            self._session_revoked(
                session_id=session_id, reason="refresh_reused", actor="system", at=at
            )
            return SessionInvalid("refresh_reused")
        # Not a token of this session at all: refused, but an outsider cannot end it.
        return SessionInvalid("invalid")

    def log_out(self, session_id: str, *, at: datetime) -> bool:
        if session_id not in self._sessions:
            return False
        self._logged_out(session_id=session_id, actor=self._username, at=at)
        return True

    def revoke_session(self, session_id: str, *, reason: str, actor: str, at: datetime) -> bool:
        if session_id not in self._sessions:
            return False
        self._session_revoked(session_id=session_id, reason=reason, actor=actor, at=at)
        return True

    # -- records (state changes only: these run again on every replay) -----------------------

    @event("Disabled")
    def _disabled(self, *, reason: str, actor: str, at: datetime) -> None:
        self._enabled = False
        # A disabled account keeps no session: every token it holds stops working.
        self._sessions = {}

    @event("Enabled")
    def _enabled_again(self, *, actor: str, at: datetime) -> None:
        self._enabled = True

    @event("RoleGranted")
    def _role_granted(self, *, role: str, actor: str, at: datetime) -> None:
        self._roles = sorted({*self._roles, role})

    @event("RoleRevoked")
    def _role_revoked(self, *, role: str, actor: str, at: datetime) -> None:
        self._roles = [r for r in self._roles if r != role]

    @event("PermissionGranted")
    def _permission_granted(self, *, scope: str, actor: str, at: datetime) -> None:
        self._scopes = sorted({*self._scopes, scope})

    @event("PermissionRevoked")
    def _permission_revoked(self, *, scope: str, actor: str, at: datetime) -> None:
        self._scopes = [s for s in self._scopes if s != scope]

    @event("PasswordSet")
    def _password_set(self, *, password_hash: str, actor: str, at: datetime) -> None:
        self._password_hash = password_hash

    @event(TotpEnrolled)
    def _totp_enrolled(
        self, *, totp_secret_sealed: str, method: str, actor: str, at: datetime
    ) -> None:
        self._totp_secret_sealed = totp_secret_sealed
        # A token enrols once.
        self._enrolment = None

    @event("EnrolmentTokenIssued")
    def _enrolment_token_issued(
        self, *, token_hash: str, expires_at: datetime, actor: str, at: datetime
    ) -> None:
        self._enrolment = EnrolmentRecord(token_hashes=[token_hash], expires_at=expires_at)

    @event("TotpRecoveryRequested")
    def _totp_recovery_requested(
        self,
        *,
        reason: str,
        token_hash: str,
        signer_name: str,
        expires_at: datetime,
        actor: str,
        at: datetime,
    ) -> None:
        self._recovery = RecoveryRecord(
            requested_by=actor, token_hash=token_hash, expires_at=expires_at
        )

    @event("TotpRecoveryApproved")
    def _totp_recovery_approved(
        self,
        *,
        token_hash: str,
        token_expires_at: datetime,
        signer_name: str,
        actor: str,
        at: datetime,
    ) -> None:
        requested = self._recovery
        assert requested is not None  # approved only while requested
        # The lost authenticator stops working, and so does every session of the account.
        self._totp_secret_sealed = ""
        self._sessions = {}
        # A fresh start: the codes it got wrong were codes of the lost authenticator.
        self._totp_failures = []
        self._enrolment = EnrolmentRecord(
            token_hashes=[requested["token_hash"], token_hash], expires_at=token_expires_at
        )
        self._recovery = None

    @event("SecondFactorFailed")
    def _second_factor_failed(
        self, *, reason: str, target: str, failures: int, actor: str, at: datetime
    ) -> None:
        self._totp_failures = [t for t in self._totp_failures if t > at - FAILURE_MEMORY] + [at]

    @event("SecondFactorLockedOut")
    def _second_factor_locked_out(self, *, until: datetime, actor: str, at: datetime) -> None:
        """Nothing changes: the failures already lock; the event marks the moment."""

    @event("SecondFactorRefused")
    def _second_factor_refused(
        self, *, target: str, until: datetime, actor: str, at: datetime
    ) -> None:
        """Nothing changes: an answer given while locked is on the record, not counted."""

    @event("SecondFactorUnlocked")
    def _second_factor_unlocked(self, *, actor: str, at: datetime) -> None:
        self._totp_failures = []

    @event("TotpStepUsed")
    def _totp_step_used(self, *, step: int, actor: str, at: datetime) -> None:
        self._last_totp_step = step

    @event("AccessDenied")
    def _access_denied(
        self, *, action: str, target: str, source: str, actor: str, at: datetime
    ) -> None:
        """Nothing changes: the event is the record (IEC 62443-3-3 SR 2.8)."""

    @event("LoginSucceeded")
    def _login_succeeded(
        self,
        *,
        session_id: str,
        source: str,
        refresh_hash: str,
        expires_at: datetime,
        actor: str,
        at: datetime,
    ) -> None:
        self._failures = 0
        self._lockouts = 0
        self._locked_until = None
        # Sessions that ran out are forgotten here, so the state does not grow with logins.
        self._sessions = {
            sid: record for sid, record in self._sessions.items() if at < record["expires_at"]
        }
        self._sessions[session_id] = SessionRecord(
            source=source,
            started_at=at,
            expires_at=expires_at,
            generation=0,
            refresh_hash=refresh_hash,
            used_hashes=[],
        )

    @event("LoginFailed")
    def _login_failed(
        self, *, source: str, reason: str, failures: int, actor: str, at: datetime
    ) -> None:
        self._failures = failures

    @event("LockedOut")
    def _locked_out(self, *, until: datetime, lockouts: int, actor: str, at: datetime) -> None:
        self._lockouts = lockouts
        self._locked_until = until

    @event("Unlocked")
    def _unlocked(self, *, actor: str, at: datetime) -> None:
        self._failures = 0
        self._lockouts = 0
        self._locked_until = None

    @event("SessionRefreshed")
    def _session_refreshed(
        self,
        *,
        session_id: str,
        generation: int,
        refresh_hash: str,
        source: str,
        actor: str,
        at: datetime,
    ) -> None:
        record = self._sessions[session_id]
        record["used_hashes"] = [*record["used_hashes"], record["refresh_hash"]]
        record["refresh_hash"] = refresh_hash
        record["generation"] = generation

    @event("LoggedOut")
    def _logged_out(self, *, session_id: str, actor: str, at: datetime) -> None:
        self._sessions.pop(session_id, None)

    @event("SessionRevoked")
    def _session_revoked(self, *, session_id: str, reason: str, actor: str, at: datetime) -> None:
        self._sessions.pop(session_id, None)
