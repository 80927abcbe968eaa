"""``login``: a username and password for a 15-minute access token.

A wrong password and an unknown username give the same error, after the same
Argon2 work, so the API does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry

from api.auth import IssuedToken, issue_token, verify_password
from api.context import PlantContext
from api.graphql.errors import INVALID_CREDENTIALS, api_error

INVALID_LOGIN = "invalid username or password"


@strawberry.type
class LoginResult:
    access_token: str
    expires_at: datetime
    username: str
    role: str

    @classmethod
    def from_model(cls, issued: IssuedToken, username: str, role: str) -> LoginResult:
        return cls(
            access_token=issued.token,
            expires_at=issued.expires_at,
            username=username,
            role=role,
        )


async def login(
    info: strawberry.Info[PlantContext, None], username: str, password: str
) -> LoginResult:
    services = info.context.services
    operator = await services.store.call(services.app.find_operator, username)
    password_hash = operator.password_hash if operator is not None else None
    # Argon2 takes tens of milliseconds of CPU on purpose: not on the event loop. It runs
    # for an unknown user too (against a dummy hash), so timing does not reveal usernames.
    matches = await asyncio.to_thread(verify_password, password_hash, password)
    if operator is None or not matches:
        raise api_error(INVALID_LOGIN, INVALID_CREDENTIALS)
    issued = issue_token(
        services.tokens, username=operator.username, role=operator.role, now=services.clock()
    )
    return LoginResult.from_model(issued, operator.username, operator.role)
