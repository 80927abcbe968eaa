"""Logging in and out, refreshing, and the sessions an admin can see and end.

``login`` trades a username and password for a 15-minute access token and a
refresh token. A wrong password and an unknown username give the same error,
after the same Argon2 work, so the API does not tell which usernames exist;
after ``max_failures`` wrong passwords in a row the account is locked, for
longer each time (``account_locked``, with ``until``). Every attempt, with its
source address, is an event.

``refreshToken`` rotates: each refresh token works once, and presenting one
that was already used ends the whole session (it was copied). ``logout`` ends
the caller's session at once, access token included.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry

from api.context import UNAUTHENTICATED, Caller, PlantContext
from api.credentials import (
    InvalidToken,
    issue_token,
    new_refresh_token,
    new_session_id,
    parse_refresh_token,
    verify_password,
)
from api.graphql.error_codes import api_error, call
from api.services import Services
from domain.operator import Operator, SessionView
from domain.permissions import Action, actions_of


@strawberry.type
class LoginResult:
    access_token: str
    expires_at: datetime
    refresh_token: str = strawberry.field(
        description="Trade it once for new tokens with refreshToken before the session ends."
    )
    session_id: str
    session_expires_at: datetime
    username: str
    full_name: str
    roles: list[str]
    scopes: list[str]


@strawberry.type
class Session:
    session_id: str
    username: str
    source: str
    started_at: datetime
    expires_at: datetime
    refreshes: int

    @classmethod
    def from_model(cls, session: SessionView) -> Session:
        return cls(
            session_id=session.session_id,
            username=session.username,
            source=session.source,
            started_at=session.started_at,
            expires_at=session.expires_at,
            refreshes=session.refreshes,
        )


def _tokens(
    services: Services, operator: Operator, session_id: str, refresh_token: str
) -> LoginResult:
    issued = issue_token(
        services.tokens,
        username=operator.username,
        session_id=session_id,
        roles=operator.roles,
        now=services.clock(),
    )
    session = next(
        s for s in operator.open_sessions(services.clock()) if s.session_id == session_id
    )
    return LoginResult(
        access_token=issued.token,
        expires_at=issued.expires_at,
        refresh_token=refresh_token,
        session_id=session_id,
        session_expires_at=session.expires_at,
        username=operator.username,
        full_name=operator.full_name,
        roles=list(operator.roles),
        scopes=list(operator.scopes),
    )


async def login(
    info: strawberry.Info[PlantContext, None], username: str, password: str
) -> LoginResult:
    services = info.context.services
    operator = await services.store_executor.call(services.app.find_operator, username)
    password_hash = operator.password_hash if operator is not None else None
    # Argon2 takes tens of milliseconds of CPU on purpose: not on the event loop. It runs
    # for an unknown user too (against a dummy hash), so timing does not reveal usernames.
    matches = await asyncio.to_thread(verify_password, password_hash, password)
    session_id = new_session_id()
    refresh_token, refresh_hash = new_refresh_token(username, session_id)
    logged_in = await call(
        services,
        services.app.log_in,
        username=username,
        password_matches=matches,
        source=info.context.source,
        session_id=session_id,
        refresh_hash=refresh_hash,
        at=services.clock(),
    )
    return _tokens(services, logged_in, session_id, refresh_token)


async def refresh_token(info: strawberry.Info[PlantContext, None], token: str) -> LoginResult:
    services = info.context.services
    try:
        presented = parse_refresh_token(token)
    except InvalidToken as exc:
        raise api_error(str(exc), UNAUTHENTICATED) from exc
    replacement, new_hash = new_refresh_token(presented.username, presented.session_id)
    operator = await call(
        services,
        services.app.refresh_session,
        username=presented.username,
        session_id=presented.session_id,
        presented_hash=presented.secret_hash,
        new_hash=new_hash,
        source=info.context.source,
        at=services.clock(),
    )
    return _tokens(services, operator, presented.session_id, replacement)


async def logout(info: strawberry.Info[PlantContext, None]) -> bool:
    caller = await info.context.caller()
    services = info.context.services
    return await call(
        services,
        services.app.log_out,
        username=caller.username,
        session_id=caller.session_id,
        at=services.clock(),
    )


async def me(info: strawberry.Info[PlantContext, None]) -> Me:
    return Me.from_caller(await info.context.caller())


@strawberry.type
class Me:
    username: str
    full_name: str
    session_id: str
    roles: list[str]
    scopes: list[str]
    actions: list[str] = strawberry.field(
        description="What the roles allow; the scoped ones only inside the scopes."
    )

    @classmethod
    def from_caller(cls, caller: Caller) -> Me:
        return cls(
            username=caller.username,
            full_name=caller.full_name,
            session_id=caller.session_id,
            roles=list(caller.roles),
            scopes=list(caller.scopes),
            actions=sorted(action.value for action in actions_of(caller.roles)),
        )


async def sessions(info: strawberry.Info[PlantContext, None]) -> list[Session]:
    await info.context.authorize(Action.MANAGE_SESSIONS)
    services = info.context.services
    found = await services.store_executor.call(services.app.open_sessions, services.clock())
    return [Session.from_model(session) for session in found]


async def end_session(
    info: strawberry.Info[PlantContext, None], username: str, session_id: str
) -> bool:
    caller = await info.context.authorize(Action.MANAGE_SESSIONS)
    services = info.context.services
    return await call(
        services,
        services.app.revoke_session,
        username=username,
        session_id=session_id,
        reason=f"ended by {caller.username}",
        actor=caller.username,
        at=services.clock(),
    )
