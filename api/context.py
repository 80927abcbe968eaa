"""The request context of every GraphQL operation: who is asking, and the services.

One :func:`make_context_getter` builds it for HTTP and WebSocket alike. The
caller is read lazily, when a resolver asks for it, because a WebSocket's
credentials only arrive after the context exists: graphql-transport-ws sends
them in the ``connection_init`` payload (``{"authorization": "Bearer …"}``),
which strawberry stores as ``connection_params``. HTTP requests carry the usual
``Authorization: Bearer …`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import cached_property

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from api.auth import InvalidToken, Principal, bearer_token, verify_token
from api.services import Services

UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
# Who may ask for and answer commands; viewers and auditors only read.
COMMAND_ROLES = frozenset({"admin", "supervisor", "operator", "service"})


class PlantContext(BaseContext):
    def __init__(self, services: Services, authorization: str | None) -> None:
        super().__init__()
        self.services = services
        self._header = authorization

    @cached_property
    def _authentication(self) -> Principal | InvalidToken:
        token = bearer_token(self._authorization())
        if token is None:
            return InvalidToken("missing bearer token")
        try:
            return verify_token(self.services.tokens, token)
        except InvalidToken as exc:
            return exc

    @property
    def user(self) -> Principal:
        """The authenticated caller, or a GraphQL error with ``extensions.code`` unauthenticated."""
        outcome = self._authentication
        if isinstance(outcome, InvalidToken):
            raise GraphQLError(str(outcome), extensions={"code": UNAUTHENTICATED})
        return outcome

    def user_with_role(self, roles: frozenset[str]) -> Principal:
        user = self.user
        if user.role not in roles:
            raise GraphQLError(
                f"role {user.role!r} may not do this", extensions={"code": FORBIDDEN}
            )
        return user

    def _authorization(self) -> str | None:
        params = self.connection_params
        if isinstance(params, Mapping):
            value = params.get("authorization") or params.get("Authorization")
            return value if isinstance(value, str) else None
        return self._header


def make_context_getter(services: Services) -> Callable[[HTTPConnection], Awaitable[PlantContext]]:
    # FastAPI injects the HTTPConnection: the Request of a query, the WebSocket of a subscription.
    async def context_getter(connection: HTTPConnection) -> PlantContext:
        return PlantContext(services, connection.headers.get("authorization"))

    return context_getter
