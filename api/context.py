"""The request context of every GraphQL operation: who is asking, what they may do, the services.

One :func:`make_context_getter` builds it for HTTP and WebSocket alike. The
caller is read lazily, when a resolver asks for it, because a WebSocket's
credentials only arrive after the context exists: graphql-transport-ws sends
them in the ``connection_init`` payload (``{"authorization": "Bearer …"}``),
which strawberry stores as ``connection_params``. HTTP requests carry the usual
``Authorization: Bearer …`` header.

A valid token is not enough to be a caller: its session must still be open
(not logged out, revoked, or ended by a reused refresh token) and its operator
enabled. Roles and scopes are the operator's *current* ones, read from the
event store on each check, so a revocation takes effect on the next request.
Every resolver asks :meth:`PlantContext.authorize` for the action it performs
(:mod:`domain.permissions`), the device too when the action is scoped; a
refusal is recorded as the operator's ``AccessDenied`` before it is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from time import monotonic

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from api.credentials import InvalidToken, Principal, bearer_token, verify_token
from api.services import Services
from domain.errors import SessionInvalid
from domain.permissions import Action, actions_of, is_allowed

UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
# How long a checked caller is trusted without asking the event store again.
CALLER_REUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated operator with an open session, as the event store knows them now."""

    username: str
    full_name: str
    session_id: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    expires_at: datetime

    def may(self, action: Action, *, device: str | None = None, area: str = "") -> bool:
        return is_allowed(self.roles, self.scopes, action, device=device, area=area)


class PlantContext(BaseContext):
    def __init__(self, services: Services, authorization: str | None, source: str) -> None:
        super().__init__()
        self.services = services
        self.source = source
        self._header = authorization
        self._known: tuple[float, Caller] | None = None

    @cached_property
    def _token(self) -> Principal | InvalidToken:
        token = bearer_token(self._authorization())
        if token is None:
            return InvalidToken("missing bearer token")
        try:
            return verify_token(self.services.tokens, token)
        except InvalidToken as exc:
            return exc

    async def caller(self, *, fresh: bool = False) -> Caller:
        """The authenticated caller, or a GraphQL error with ``extensions.code`` unauthenticated.

        Loaded once per request (a query with several root fields checks the
        session once); a WebSocket's context lives as long as its connection, so
        the answer is reused for at most :data:`CALLER_REUSE_SECONDS`, and a
        subscription's recheck asks for a ``fresh`` one.
        """
        known = self._known
        if known is not None and not fresh and monotonic() - known[0] < CALLER_REUSE_SECONDS:
            return known[1]
        caller = await self._load_caller()
        self._known = (monotonic(), caller)
        return caller

    async def _load_caller(self) -> Caller:
        token = self._token
        if isinstance(token, InvalidToken):
            raise GraphQLError(str(token), extensions={"code": UNAUTHENTICATED})
        services = self.services
        try:
            operator = await services.store_executor.call(
                services.app.authenticate,
                username=token.username,
                session_id=token.session_id,
                at=services.clock(),
            )
        except SessionInvalid as exc:
            raise GraphQLError(
                f"session {exc.reason}: log in again", extensions={"code": UNAUTHENTICATED}
            ) from exc
        return Caller(
            username=operator.username,
            full_name=operator.full_name,
            session_id=token.session_id,
            roles=operator.roles,
            scopes=operator.scopes,
            expires_at=token.expires_at,
        )

    async def require_role(self, action: Action) -> Caller:
        """The caller, if one of their roles allows ``action`` somewhere (scope checked later)."""
        caller = await self.caller()
        if action not in actions_of(caller.roles):
            raise await self._denied(caller, action, None)
        return caller

    async def authorize(self, action: Action, *, device: str | None = None) -> Caller:
        """The caller, if the permission matrix allows them ``action`` (on ``device``)."""
        caller = await self.caller()
        area = self.services.catalog.area_of(device) if device is not None else ""
        if not caller.may(action, device=device, area=area):
            raise await self._denied(caller, action, device)
        return caller

    async def _denied(self, caller: Caller, action: Action, device: str | None) -> GraphQLError:
        """Record the refusal on the caller's operator (``AccessDenied``), then the error."""
        services = self.services
        await services.store_executor.call(
            services.app.record_access_denied,
            username=caller.username,
            action=action,
            target=device or "",
            source=self.source,
            at=services.clock(),
        )
        where = f" on {device}" if device is not None else ""
        return GraphQLError(
            f"{caller.username!r} may not {action}{where}", extensions={"code": FORBIDDEN}
        )

    def _authorization(self) -> str | None:
        params = self.connection_params
        if isinstance(params, Mapping):
            value = params.get("authorization") or params.get("Authorization")
            return value if isinstance(value, str) else None
        return self._header


def make_context_getter(services: Services) -> Callable[[HTTPConnection], Awaitable[PlantContext]]:
    # FastAPI injects the HTTPConnection: the Request of a query, the WebSocket of a subscription.
    async def context_getter(connection: HTTPConnection) -> PlantContext:
        client = connection.client
        source = client.host if client is not None else "unknown"
        return PlantContext(services, connection.headers.get("authorization"), source)

    return context_getter
