"""Logging in and out, refreshing, and the sessions an admin can see and end.

``login`` trades a username and password for a 15-minute access token and a
refresh token. Every refusal, whether the password was wrong, the username
unknown, the account locked or disabled, gets the same answer after the same
work (an Argon2 verification, a load and a save), so the API tells an
outsider neither which usernames exist nor what state their accounts are in;
the event log records which it was, with the source address. After
``max_failures`` wrong passwords in a row the account is locked, for longer
each time; only ``operators`` shows it to an admin.

Before any of that, a login must pass two bounds that tell nothing about an
account either: its source address's sliding window (``login_rate_limited``,
:class:`~api.rate_limit.LoginThrottle`) and a place in the login lane
(``login_busy``, :class:`~api.login_lane.LoginLane`), where its Argon2 work and
store calls run apart from commands and the dispatcher.

``refreshToken`` rotates: each refresh token works once, and presenting one
that was already used ends the whole session (it was copied). ``logout`` ends
the caller's session at once, access token included.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import strawberry
from graphql import GraphQLError

from api.context import UNAUTHENTICATED, Caller, PlantContext
from api.credentials import (
    InvalidToken,
    issue_token,
    new_refresh_token,
    new_session_id,
    parse_refresh_token,
)
from api.graphql.error_codes import (
    INVALID_CREDENTIALS,
    LOGIN_BUSY,
    LOGIN_RATE_LIMITED,
    api_error,
    call,
    from_domain,
)
from api.login_lane import LoginLaneFull
from api.services import Services
from domain.errors import DomainError, LoginRefused
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
    totp_enrolment_required: bool = strawberry.field(
        description="No authenticator yet (a new or recovered account): enrollTotpWithToken."
    )


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
        totp_enrolment_required=not operator.totp_enrolled,
    )


# The one answer to a refused login: true of every reason, telling none of them.
LOGIN_REFUSED = "invalid username or password, or the account may not log in now"


async def login(
    info: strawberry.Info[PlantContext, None], username: str, password: str
) -> LoginResult:
    services = info.context.services
    source = info.context.source
    # Both bounds come before any Argon2 work, and depend on no account.
    retry_after = await services.login_throttle.admit(source, services.clock())
    if retry_after is not None:
        raise _too_many_logins(retry_after)
    try:
        with services.login_lane.admit():
            return await _log_in(services, username, password, source)
    except LoginLaneFull as exc:
        raise api_error("too many logins at once: try again in a moment", LOGIN_BUSY) from exc
    except LoginRefused as exc:
        raise api_error(LOGIN_REFUSED, INVALID_CREDENTIALS) from exc
    except DomainError as exc:
        raise from_domain(exc) from exc


async def _log_in(services: Services, username: str, password: str, source: str) -> LoginResult:
    """Check the password and record the attempt, in the login lane; raises ``LoginRefused``."""
    lane = services.login_lane
    operator = await lane.store(services.app.find_operator, username)
    # Whatever is to be refused, the password is checked: an unknown user against a dummy
    # hash, a locked or disabled account against its own, so every answer takes as long.
    matches = await lane.verify(operator.password_hash if operator else None, password)
    session_id = new_session_id()
    refresh_token, refresh_hash = new_refresh_token(username, session_id)
    logged_in = await lane.store(
        services.app.log_in,
        username=username,
        password_matches=matches,
        source=source,
        session_id=session_id,
        refresh_hash=refresh_hash,
        at=services.clock(),
    )
    return _tokens(services, logged_in, session_id, refresh_token)


def _too_many_logins(retry_after: timedelta) -> GraphQLError:
    seconds = math.ceil(retry_after.total_seconds())
    return api_error(
        f"too many logins from this address: try again in {seconds} s",
        LOGIN_RATE_LIMITED,
        retryAfter=seconds,
    )


async def refresh_token(info: strawberry.Info[PlantContext, None], token: str) -> LoginResult:
    services = info.context.services
    try:
        presented = parse_refresh_token(token)
    except InvalidToken as exc:
        raise api_error(str(exc), UNAUTHENTICATED) from exc
    info.context.check_refresh(presented.username, presented.session_id)
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
    tokens = _tokens(services, operator, presented.session_id, replacement)
    # Sent over a socket, the refresh keys the socket too: it lives on to the new expiry.
    info.context.rekey(tokens.access_token)
    return tokens


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
