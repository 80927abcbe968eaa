"""The use cases of the second factor: enrolling an authenticator, recovering a lost one, unlocking.

A mix-in of :class:`~domain.application.PlantApplication`, on top of
:mod:`domain.access`. The rules are in :mod:`domain.second_factor`; in short:

- an operator replaces their authenticator with a code of the current one,
  never with the password alone (:meth:`EnrolmentUseCases.enroll_totp`);
- an account without one (new, or recovered) enrols with its one-time token
  (:meth:`EnrolmentUseCases.enroll_totp_with_token`);
- a lost authenticator is recovered by two admins, each signing with their own
  code: one asks, another approves; the approval ends the account's sessions
  and its old secret, and each admin holds one part of the new token;
- wrong codes count per person, and only another admin unlocks them.

The API checks codes against the sealed secrets and passes the time step a
code matched (``None`` for a wrong one); the domain decides whether it may be
spent and counts the failures. A refusal is saved before it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.access import AccessUseCases
from domain.bounds import MAX_TEXT_LENGTH, check_length
from domain.errors import Forbidden
from domain.operator import Operator, SecondFactorRefusal
from domain.permissions import Action, actions_of
from domain.second_factor import SecondFactorPolicy, recovery_target
from domain.time import retry_on_conflict, utc


class EnrolmentUseCases(AccessUseCases):
    @property
    def second_factor_policy(self) -> SecondFactorPolicy:
        return self.login_policy.second_factor

    @retry_on_conflict
    def enroll_totp(
        self, *, username: str, totp_step: int | None, totp_secret_sealed: str, at: datetime
    ) -> None:
        """Replace the operator's secret, proven by the step a code of the current one matched."""
        at = utc(at)
        operator = self.get_operator(username)
        refusal = operator.enroll_totp(
            totp_secret_sealed, step=totp_step, policy=self.second_factor_policy, at=at
        )
        self._save_then_raise(operator, refusal)

    @retry_on_conflict
    def enroll_totp_with_token(
        self,
        *,
        username: str,
        presented_hashes: Sequence[str],
        totp_secret_sealed: str,
        at: datetime,
    ) -> None:
        """Enrol the operator's first (or recovered) secret with their one-time token."""
        at = utc(at)
        operator = self.get_operator(username)
        refusal = operator.enroll_totp_with_token(
            totp_secret_sealed,
            presented_hashes=presented_hashes,
            policy=self.second_factor_policy,
            at=at,
        )
        self._save_then_raise(operator, refusal)

    @retry_on_conflict
    def request_totp_recovery(
        self,
        *,
        username: str,
        reason: str,
        token_hash: str,
        actor: str,
        totp_step: int | None,
        at: datetime,
    ) -> Operator:
        """An admin asks, signing with their code, to replace ``username``'s lost authenticator."""
        check_length("reason", reason, MAX_TEXT_LENGTH)
        at = utc(at)
        target = self.get_operator(username)
        target.check_totp_recovery_requestable(actor, at)
        requester = self._signing_admin(actor, totp_step, username, at)
        target.request_totp_recovery(
            reason=reason,
            token_hash=token_hash,
            signer_name=requester.full_name,
            expires_at=at + self.second_factor_policy.recovery_request_lifetime,
            actor=actor,
            at=at,
        )
        # One atomic save: the signer's step is spent if and only if the request is recorded.
        self.save(target, requester)
        return target

    @retry_on_conflict
    def approve_totp_recovery(
        self,
        *,
        username: str,
        token_hash: str,
        actor: str,
        totp_step: int | None,
        at: datetime,
    ) -> Operator:
        """A second admin approves, signing with their code: the old secret and sessions end."""
        at = utc(at)
        target = self.get_operator(username)
        target.check_totp_recovery_approvable(actor, at)
        approver = self._signing_admin(actor, totp_step, username, at)
        target.approve_totp_recovery(
            token_hash=token_hash,
            token_expires_at=at + self.second_factor_policy.enrolment_token_lifetime,
            signer_name=approver.full_name,
            actor=actor,
            at=at,
        )
        self.save(target, approver)
        return target

    @retry_on_conflict
    def unlock_second_factor(self, *, username: str, actor: str, at: datetime) -> bool:
        return self._change(
            self.get_operator(username),
            lambda op: op.unlock_second_factor(actor=actor, at=utc(at)),
        )

    def _signing_admin(
        self, actor: str, totp_step: int | None, username: str, at: datetime
    ) -> Operator:
        """The admin signing a recovery, their code's step spent (not yet saved).

        A wrong code is recorded on them and raised; the recovery is not.
        """
        signer = self.get_operator(actor)
        if not (signer.enabled and Action.MANAGE_OPERATORS in actions_of(signer.roles)):
            raise Forbidden(actor, Action.MANAGE_OPERATORS.value, username)
        refusal = signer.answer_second_factor(
            totp_step, target=recovery_target(username), policy=self.second_factor_policy, at=at
        )
        if refusal is not None:
            self._save_then_raise(signer, refusal)
        return signer

    def _save_then_raise(self, operator: Operator, refusal: SecondFactorRefusal | None) -> None:
        self.save(operator)
        if refusal is not None:
            raise refusal
