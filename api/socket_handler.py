"""graphql-transport-ws whose connections authorise like HTTP and end with their token.

strawberry's handler of the protocol, with five additions:

- Every message is held to the protocol's shape first
  (:mod:`api.socket_messages`): one with a field of the wrong kind closes the
  socket with 4400 and the reason.
- ``connection_init`` keys the socket (:class:`~api.socket_key.SocketKey`)
  with the token of its payload; a token the API refuses (expired, forged, of
  another audience) closes the socket with 4401 and the reason, unacknowledged.
  A payload without a token is acknowledged: such a socket may log in or
  refresh, nothing else.
- Every ``subscribe`` message starts its operation in a scope of its own
  (:func:`~api.context.operation_scope`), so that each query, mutation and
  subscription checks the token's expiry and the session, as an HTTP request
  does.
- A result that finds its socket closed (the client left, or the socket was
  closed for a bad message while the operation was answering) is dropped: it
  has nobody to go to, and is no fault of the server's.
- When the token the socket is keyed with expires (a ``refreshToken`` over
  the socket re-keys it), the socket is closed with 4401 ``access token
  expired``. Its subscriptions end at that same expiry with an
  ``unauthenticated`` message: the close waits for those to be sent.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from api.context import PlantContext, operation_scope
from api.credentials import InvalidToken
from api.socket_key import SocketKey, presented_token
from api.socket_messages import shape_problem

# The protocol's "Unauthorized": the client must authenticate anew (refresh, then reconnect).
UNAUTHORIZED = 4401
EXPIRED_REASON = "access token expired"


class KeyedSocketHandler(BaseGraphQLTransportWSHandler[PlantContext, None]):
    _expiry: asyncio.Task[None] | None = None

    async def handle_message(self, message: Message) -> None:
        problem = shape_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_init_received:  # strawberry closes the socket (4429)
            await super().handle_connection_init(message)
            return
        key = SocketKey(self.context.services.tokens)
        token = presented_token(message.get("payload"))
        if token is not None:
            try:
                key.key(token)
            except InvalidToken as refused:
                await self.websocket.close(code=UNAUTHORIZED, reason=str(refused))
                return
        self.context.socket = key
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._expiry = asyncio.create_task(self._close_at_expiry(key))
            self._expiry.add_done_callback(self._task_done)

    async def send_message(self, message: Message) -> None:
        with contextlib.suppress(WebSocketDisconnected):
            await super().send_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # strawberry creates the operation's task in here: the task takes the scope along.
        with operation_scope():
            await super().handle_subscribe(message)

    async def _close_at_expiry(self, key: SocketKey) -> None:
        await key.expired()
        running = {operation.task for operation in self.operations.values() if operation.task}
        if running:
            # Subscriptions end at this same expiry (their last rechecks fall due now), and a
            # query under way is answered: bounded, so that none keeps the socket open.
            await asyncio.wait(running, timeout=self.context.services.session_recheck_seconds)
        try:
            await self.websocket.close(code=UNAUTHORIZED, reason=EXPIRED_REASON)
        except Exception as error:  # the client left at this moment: logged as strawberry's own
            await self.handle_task_exception(error)

    async def shutdown(self) -> None:
        if self._expiry is not None and not self._expiry.done():
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        await super().shutdown()
