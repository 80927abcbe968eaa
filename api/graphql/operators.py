"""Operators and the plant mode: what an admin manages, and what each operator does for themselves.

Admins (``operators.manage``) create operators, disable and enable them, grant
and revoke roles and scopes, reset passwords and unlock accounts and second
factors. A new account gets a one-time enrolment token, never a TOTP secret
(see :mod:`api.graphql.second_factor`). Each operator changes their own
password after giving the current one, and re-enrols their TOTP
authenticator after giving the current password and a code of the current
authenticator. Supervisors and admins
(``plant.mode``) switch the plant between normal, read-only and simulation.
Every change is an event of the operator or of the plant mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime

import strawberry

from api.context import Caller, PlantContext
from api.credentials import (
    MIN_PASSWORD_LENGTH,
    new_enrolment_token_part,
    new_totp_secret,
    provisioning_uri,
)
from api.graphql.error_codes import api_error, call
from api.graphql.second_factor import EnrolmentToken, TotpEnrolment, matched_step
from domain.application import PlantApplication
from domain.operator import Operator
from domain.permissions import Action
from domain.plant_mode import Mode, PlantMode
from domain.second_factor import SecondFactorPolicy

strawberry.enum(Mode, name="PlantModeName")


@strawberry.type
class OperatorView:
    username: str
    full_name: str
    roles: list[str]
    scopes: list[str]
    enabled: bool
    failed_logins: int
    locked_until: datetime | None
    totp_enrolled: bool = strawberry.field(
        description="False for a new or recovered account until it enrols with its token."
    )
    second_factor_locked_until: datetime | None = strawberry.field(
        description="Too many wrong TOTP codes: confirmations and approvals refused until then."
    )
    totp_recovery_requested_by: str | None = strawberry.field(
        description="The admin whose recovery of this authenticator awaits a second admin."
    )

    @classmethod
    def from_model(
        cls, operator: Operator, policy: SecondFactorPolicy, at: datetime
    ) -> OperatorView:
        return cls(
            username=operator.username,
            full_name=operator.full_name,
            roles=list(operator.roles),
            scopes=list(operator.scopes),
            enabled=operator.enabled,
            failed_logins=operator.failures,
            locked_until=operator.locked_until,
            totp_enrolled=operator.totp_enrolled,
            second_factor_locked_until=operator.second_factor_locked_until(policy, at),
            totp_recovery_requested_by=operator.totp_recovery_requested_by(at),
        )


@strawberry.type
class PlantModeView:
    mode: Mode
    reason: str
    changed_by: str | None
    changed_at: datetime | None

    @classmethod
    def from_model(cls, plant_mode: PlantMode) -> PlantModeView:
        return cls(
            mode=plant_mode.mode,
            reason=plant_mode.reason,
            changed_by=plant_mode.changed_by,
            changed_at=plant_mode.changed_at,
        )


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise api_error(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", "weak_password"
        )
    return password


async def operators(info: strawberry.Info[PlantContext, None]) -> list[OperatorView]:
    await info.context.authorize(Action.MANAGE_OPERATORS)
    services = info.context.services
    found = await services.store_executor.call(services.app.list_operators)
    return [_view(services.app, operator, services.clock()) for operator in found]


def _view(app: PlantApplication, operator: Operator, at: datetime) -> OperatorView:
    return OperatorView.from_model(operator, app.second_factor_policy, at)


async def create_operator(
    info: strawberry.Info[PlantContext, None],
    username: str,
    full_name: str,
    roles: list[str],
    password: str,
) -> EnrolmentToken:
    caller = await info.context.authorize(Action.MANAGE_OPERATORS)
    services = info.context.services
    password_hash = await services.login_lane.hash(_checked_password(password))
    # No secret: the admin never holds the new operator's authenticator, only this token.
    token, token_hash = new_enrolment_token_part()
    at = services.clock()
    await call(
        services,
        services.app.register_operator,
        username=username,
        full_name=full_name,
        roles=roles,
        password_hash=password_hash,
        enrolment_token_hash=token_hash,
        actor=caller.username,
        at=at,
    )
    created = await call(services, services.app.get_operator, username)
    expires_at = created.enrolment_token_expires_at
    assert expires_at is not None  # registered with a token
    return EnrolmentToken(username=created.username, enrolment_token=token, expires_at=expires_at)


Info = strawberry.Info[PlantContext, None]
UseCaseOf = Callable[[PlantApplication], Callable[..., object]]


async def _apply(
    info: Info, caller: Caller, username: str, change: Callable[..., object], **fields: object
) -> OperatorView:
    """Apply one admin change to ``username`` and answer with the operator as it is now."""
    services = info.context.services
    await call(
        services, change, username=username, actor=caller.username, at=services.clock(), **fields
    )
    changed = await call(services, services.app.get_operator, username)
    return _view(services.app, changed, services.clock())


def admin_change(
    name: str, use_case: UseCaseOf, **arguments: type
) -> Callable[..., Awaitable[OperatorView]]:
    """The resolver of an admin's change to one operator: ``use_case`` of the application.

    Its GraphQL arguments are ``username`` and ``arguments`` (name and type), passed
    on to the use case by name. The signature is built here, once, so that each
    change is one line of the table below rather than one more copy of the body.
    """

    async def resolve(info: Info, username: str, **fields: object) -> OperatorView:
        caller = await info.context.authorize(Action.MANAGE_OPERATORS)
        return await _apply(info, caller, username, use_case(info.context.services.app), **fields)

    keyword = inspect.Parameter.KEYWORD_ONLY
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("info", keyword, annotation=Info),
            inspect.Parameter("username", keyword, annotation=str),
            *(
                inspect.Parameter(field, keyword, annotation=kind)
                for field, kind in arguments.items()
            ),
        ],
        return_annotation=OperatorView,
    )
    resolve.__name__ = resolve.__qualname__ = name
    return resolve


disable_operator = admin_change("disable_operator", lambda app: app.disable_operator, reason=str)
enable_operator = admin_change("enable_operator", lambda app: app.enable_operator)
grant_role = admin_change("grant_role", lambda app: app.grant_role, role=str)
revoke_role = admin_change("revoke_role", lambda app: app.revoke_role, role=str)
grant_permission = admin_change("grant_permission", lambda app: app.grant_permission, scope=str)
revoke_permission = admin_change("revoke_permission", lambda app: app.revoke_permission, scope=str)
unlock_operator = admin_change("unlock_operator", lambda app: app.unlock_operator)
unlock_second_factor = admin_change("unlock_second_factor", lambda app: app.unlock_second_factor)


async def reset_password(
    info: strawberry.Info[PlantContext, None], username: str, password: str
) -> OperatorView:
    # Authorised before the Argon2 work: a refusal must cost the server nothing.
    caller = await info.context.authorize(Action.MANAGE_OPERATORS)
    password_hash = await info.context.services.login_lane.hash(_checked_password(password))
    change = info.context.services.app.set_password
    return await _apply(info, caller, username, change, password_hash=password_hash)


async def _check_own_password(info: strawberry.Info[PlantContext, None], password: str) -> str:
    """The caller's username, once ``password`` is theirs (a stolen token is not enough).

    A wrong password is recorded and counts toward the lockout, as at login.
    """
    caller = await info.context.caller()
    services = info.context.services
    operator = await call(services, services.app.get_operator, caller.username)
    matches = await services.login_lane.verify(operator.password_hash, password)
    await call(
        services,
        services.app.check_password,
        username=caller.username,
        password_matches=matches,
        source=info.context.source,
        at=services.clock(),
    )
    return caller.username


async def change_password(
    info: strawberry.Info[PlantContext, None], current_password: str, new_password: str
) -> bool:
    username = await _check_own_password(info, current_password)
    services = info.context.services
    password_hash = await services.login_lane.hash(_checked_password(new_password))
    await call(
        services,
        services.app.set_password,
        username=username,
        password_hash=password_hash,
        actor=username,
        at=services.clock(),
    )
    return True


async def enroll_totp(
    info: strawberry.Info[PlantContext, None], password: str, code: str | None = None
) -> TotpEnrolment:
    """Replace the caller's authenticator: their password and a code of the current one.

    ``code`` may be left out only to be refused on the record: the password
    alone never replaces the second factor.
    """
    username = await _check_own_password(info, password)
    services = info.context.services
    operator = await call(services, services.app.get_operator, username)
    at = services.clock()
    step = matched_step(services, operator, code or "", at)
    secret = new_totp_secret()
    await call(
        services,
        services.app.enroll_totp,
        username=username,
        totp_step=step,
        totp_secret_sealed=services.secrets.seal(secret, username=username),
        at=at,
    )
    return TotpEnrolment(username=username, provisioning_uri=provisioning_uri(username, secret))


async def plant_mode(info: strawberry.Info[PlantContext, None]) -> PlantModeView:
    await info.context.authorize(Action.VIEW)
    services = info.context.services
    found = await services.store_executor.call(services.app.find_plant_mode)
    if found is None:
        return PlantModeView(mode=Mode.NORMAL, reason="", changed_by=None, changed_at=None)
    return PlantModeView.from_model(found)


async def set_plant_mode(
    info: strawberry.Info[PlantContext, None], mode: Mode, reason: str
) -> PlantModeView:
    caller = await info.context.authorize(Action.SET_PLANT_MODE)
    services = info.context.services
    changed = await call(
        services,
        services.app.set_plant_mode,
        mode=mode,
        reason=reason,
        actor=caller.username,
        at=services.clock(),
    )
    return PlantModeView.from_model(changed)
