"""The second factor: checking a code, enrolling an authenticator, recovering a lost one.

Whoever knows an operator's password (an admin who reset it, say) must not
be able to become them at the console. So:

- ``enrollTotp`` replaces an authenticator only with a code of the current one,
  besides the password;
- an account without one (a new account, or a recovered one) enrols with
  ``enrollTotpWithToken`` and its one-time enrolment token: ``createOperator``
  answers with that token, never with a secret;
- a lost authenticator is recovered by two admins, each signing with their own
  code: ``requestTotpRecovery`` and ``approveTotpRecovery``. Each is shown one
  part of the new enrolment token, which works only whole, so no admin alone
  holds a usable second factor of someone else. The approval ends the
  account's sessions and its old secret.

Every code is checked here against the caller's sealed secret; the domain is
given the time step it matched (``None`` for a wrong one) and counts wrong
codes per person (:mod:`domain.second_factor`).
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.context import PlantContext
from api.credentials import (
    enrolment_token_hashes,
    new_enrolment_token_part,
    new_totp_secret,
    provisioning_uri,
    totp_step,
)
from api.graphql.error_codes import api_error, call
from api.secrets import UnsealError
from api.services import Services
from domain.operator import Operator
from domain.permissions import Action

TOTP_UNAVAILABLE = "totp_unavailable"
TOTP_NOT_ENROLLED = "totp_not_enrolled"

Info = strawberry.Info[PlantContext, None]


@strawberry.type
class TotpEnrolment:
    username: str
    provisioning_uri: str = strawberry.field(
        description="otpauth:// URI for an authenticator app; shown once, never stored in clear."
    )


@strawberry.type
class EnrolmentToken:
    """A new account's one-time enrolment token, for its owner to enrol with."""

    username: str
    enrolment_token: str = strawberry.field(
        description="Shown once; give it to the operator, who enrols with enrollTotpWithToken."
    )
    expires_at: datetime


@strawberry.type
class TotpRecovery:
    """A recovery of a lost authenticator, as the admin who just signed it sees it."""

    username: str
    requested_by: str
    approved_by: str | None
    token_part: str = strawberry.field(
        description="This admin's part of the enrolment token, shown once. The operator enrols"
        " with the requester's part, a dash, and the approver's part."
    )
    expires_at: datetime = strawberry.field(
        description="Requested: when the request lapses unapproved. Approved: when the token does."
    )


def matched_step(services: Services, operator: Operator, code: str, at: datetime) -> int | None:
    """The time step ``code`` matches for ``operator``'s secret; ``None`` if it is wrong."""
    if not operator.totp_enrolled:
        raise api_error(
            "you have no authenticator enrolled: enrol with your enrolment token first",
            TOTP_NOT_ENROLLED,
        )
    try:
        secret = services.secrets.open(operator.totp_secret_sealed, username=operator.username)
    except UnsealError as exc:
        # Sealed under another key: nobody can check this operator's codes until recovered.
        raise api_error(
            "your TOTP secret cannot be read with this plant's secrets key:"
            " two admins must recover your second factor",
            TOTP_UNAVAILABLE,
        ) from exc
    return totp_step(secret, code, at)


async def enroll_totp_with_token(info: Info, enrolment_token: str) -> TotpEnrolment:
    caller = await info.context.caller()
    services = info.context.services
    secret = new_totp_secret()
    await call(
        services,
        services.app.enroll_totp_with_token,
        username=caller.username,
        presented_hashes=enrolment_token_hashes(enrolment_token),
        totp_secret_sealed=services.secrets.seal(secret, username=caller.username),
        at=services.clock(),
    )
    return TotpEnrolment(
        username=caller.username, provisioning_uri=provisioning_uri(caller.username, secret)
    )


async def request_totp_recovery(info: Info, username: str, reason: str, code: str) -> TotpRecovery:
    caller = await info.context.authorize(Action.MANAGE_OPERATORS)
    services = info.context.services
    step = await _own_step(services, caller.username, code)
    part, part_hash = new_enrolment_token_part()
    at = services.clock()
    target = await call(
        services,
        services.app.request_totp_recovery,
        username=username,
        reason=reason,
        token_hash=part_hash,
        actor=caller.username,
        totp_step=step,
        at=at,
    )
    return TotpRecovery(
        username=target.username,
        requested_by=caller.username,
        approved_by=None,
        token_part=part,
        expires_at=at + services.app.second_factor_policy.recovery_request_lifetime,
    )


async def approve_totp_recovery(info: Info, username: str, code: str) -> TotpRecovery:
    caller = await info.context.authorize(Action.MANAGE_OPERATORS)
    services = info.context.services
    # Who asked, read before the approval clears it.
    target = await call(services, services.app.get_operator, username)
    requested_by = target.totp_recovery_requested_by(services.clock()) or ""
    step = await _own_step(services, caller.username, code)
    part, part_hash = new_enrolment_token_part()
    approved = await call(
        services,
        services.app.approve_totp_recovery,
        username=username,
        token_hash=part_hash,
        actor=caller.username,
        totp_step=step,
        at=services.clock(),
    )
    expires_at = approved.enrolment_token_expires_at
    assert expires_at is not None  # an approval issues the token
    return TotpRecovery(
        username=approved.username,
        requested_by=requested_by,
        approved_by=caller.username,
        token_part=part,
        expires_at=expires_at,
    )


async def _own_step(services: Services, username: str, code: str) -> int | None:
    """The step the caller's own ``code`` matches: they sign with their authenticator."""
    signer = await call(services, services.app.get_operator, username)
    return matched_step(services, signer, code, services.clock())
