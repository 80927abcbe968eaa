"""The request context of every GraphQL operation: who is asking, what they may do, the services.

One :func:`make_context_getter` builds it for HTTP and WebSocket alike. HTTP
requests carry the usual ``Authorization: Bearer …`` header and get a context
each. A WebSocket's context serves the whole connection: its credentials
arrive after the context exists, in the ``connection_init`` payload
(``{"authorization": "Bearer …"}``), and may change when the client refreshes
over the socket; they are held by its :class:`~api.socket_key.SocketKey`
(``socket``, set by :mod:`api.socket_handler`).

The caller is checked once per operation, token expiry included: per HTTP
request, and per operation sent over a socket (:func:`operation_scope`), never
reused from one operation to the next.

A valid token is not enough to be a caller: its session must still be open
(not logged out, revoked, or ended by a reused refresh token) and its operator
enabled. Roles and scopes are the operator's *current* ones, read from the
event store on each check, so a revocation takes effect on the next request.
Every resolver asks :meth:`PlantContext.authorize` for the action it performs
(:mod:`domain.permissions`), the device too when the action is scoped; a
refusal is recorded as the operator's ``AccessDenied`` before it is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLError
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from api.credentials import InvalidToken, bearer_token, verify_token
from api.services import Services
from api.socket_key import SocketKey
from domain.errors import SessionInvalid
from domain.permissions import Action, actions_of, is_allowed

UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"


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


@dataclass
class _Checked:
    """The caller one operation was checked as, once it was."""

    caller: Caller | None = None


# An operation over a socket runs in a task of its own (and the tasks it starts); its check
# travels with it here, because the context it shares with the other operations cannot hold it.
_operation_check: ContextVar[_Checked | None] = ContextVar("operation_check", default=None)


@contextmanager
def operation_scope() -> Iterator[None]:
    """Start an operation's task inside: the task gets a caller check of its own."""
    reset = _operation_check.set(_Checked())
    try:
        yield
    finally:
        _operation_check.reset(reset)


class PlantContext(BaseContext):
    def __init__(self, services: Services, authorization: str | None, source: str) -> None:
        super().__init__()
        self.services = services
        self.source = source
        self.socket: SocketKey | None = None
        self._header = authorization
        self._request_check = _Checked()

    async def caller(self, *, fresh: bool = False) -> Caller:
        """The authenticated caller, or a GraphQL error with ``extensions.code`` unauthenticated.

        The token and the session are checked when an operation first asks, and
        that check is kept for the rest of the operation; a subscription's
        recheck asks for a ``fresh`` one.
        """
        checked = self._check()
        if checked.caller is None or fresh:
            checked.caller = await self._load_caller()
        return checked.caller

    def _check(self) -> _Checked:
        if self.socket is None:
            return self._request_check
        # Outside an operation scope nothing is kept: every call checks anew.
        return _operation_check.get() or _Checked()

    async def _load_caller(self) -> Caller:
        bearer = self.socket.token if self.socket is not None else bearer_token(self._header)
        if bearer is None:
            raise GraphQLError("missing bearer token", extensions={"code": UNAUTHENTICATED})
        try:
            token = verify_token(self.services.tokens, bearer)
        except InvalidToken as exc:
            raise GraphQLError(str(exc), extensions={"code": UNAUTHENTICATED}) from exc
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

    def check_refresh(self, username: str, session_id: str) -> None:
        """Refuse, before it is used, a refresh token of a session the socket may not take."""
        if self.socket is not None and not self.socket.takes(username, session_id):
            raise GraphQLError(
                "refresh token of another session than this socket's: refresh it over HTTP",
                extensions={"code": UNAUTHENTICATED, "reason": "other_session"},
            )

    def rekey(self, access_token: str) -> None:
        """Key the socket with an access token refreshed over it (HTTP: nothing to key)."""
        if self.socket is not None:
            self.socket.key(access_token)


def make_context_getter(services: Services) -> Callable[[HTTPConnection], Awaitable[PlantContext]]:
    # FastAPI injects the HTTPConnection: the Request of a query, the WebSocket of a subscription.
    async def context_getter(connection: HTTPConnection) -> PlantContext:
        client = connection.client
        source = client.host if client is not None else "unknown"
        return PlantContext(services, connection.headers.get("authorization"), source)

    return context_getter
