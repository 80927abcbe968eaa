"""Bounds on the size of what a client sends, enforced before the API reads it.

:class:`SizeLimits` is an ASGI middleware around the whole application
(:func:`api.app.create_app`):

- an HTTP request whose body is over ``max_body_bytes`` is answered ``413``
  with a GraphQL-shaped error (code ``request_too_large``): at once when its
  ``Content-Length`` says so, else as soon as the bytes received pass the
  limit. Nothing behind the middleware runs.
- a WebSocket message (a graphql-transport-ws ``subscribe``, say) over
  ``max_message_bytes`` closes the connection with 1009, "message too big"
  (RFC 6455 §7.4.1); the application sees its client leave.

uvicorn has no body limit, and its WebSocket limit (``ws_max_size``, 16 MiB by
default) belongs to the server: the runtime passes the same limit to uvicorn
too, so that it never buffers more, but these limits hold whichever server
runs the application.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""An HMI's requests take a few kilobytes: ample, and still small enough to read at once."""
DEFAULT_MAX_WS_MESSAGE_BYTES = 64 * 1024
"""A ``subscribe`` message holds a document and its variables, as a request body does."""
REQUEST_TOO_LARGE = "request_too_large"
MESSAGE_TOO_BIG = 1009
"""The WebSocket close code for a message too big to process (RFC 6455 §7.4.1)."""


class SizeLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_message_bytes: int = DEFAULT_MAX_WS_MESSAGE_BYTES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_message_bytes = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body, within the limit, then hand the request on with it."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending all of it: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replaying(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = {
            "message": f"the request body is over {self.max_body_bytes} bytes",
            "extensions": {"code": REQUEST_TOO_LARGE, "maxBytes": self.max_body_bytes},
        }
        # The rest of the body is never read: the connection cannot serve another request.
        response = JSONResponse(
            {"errors": [error]}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def bounded_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and _size(message) > self.max_message_bytes:
                closed = True
                await send(
                    {
                        "type": "websocket.close",
                        "code": MESSAGE_TOO_BIG,
                        "reason": "message too big",
                    }
                )
                return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
            return message

        async def open_send(message: Message) -> None:
            # What the application still sends (its own close, a subscription's
            # next result) after this closed the socket goes nowhere.
            if not closed:
                await send(message)

        await self.app(scope, bounded_receive, open_send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one itself
    return None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then what the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _size(message: Message) -> int:
    """The size of a WebSocket message in bytes, text counted in UTF-8."""
    text: str | None = message.get("text")
    data: bytes | None = message.get("bytes")
    return len(text.encode()) if text is not None else len(data or b"")
