"""A graphql-transport-ws client for the tests, on a real websockets connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.typing import Subprotocol


class GraphQLSocket:
    """A graphql-transport-ws client on a websockets connection."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self._connection = connection
        self._ids = 0

    @classmethod
    async def open(cls, url: str, token: str | None) -> GraphQLSocket:
        connection = await websockets.connect(
            url, subprotocols=[Subprotocol("graphql-transport-ws")]
        )
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await connection.recv())
        assert ack["type"] == "connection_ack", ack
        return cls(connection)

    async def subscribe(self, query: str, **variables: Any) -> str:
        self._ids += 1
        operation = str(self._ids)
        message = {"query": query, "variables": variables}
        await self._connection.send(
            json.dumps({"id": operation, "type": "subscribe", "payload": message})
        )
        return operation

    async def receive(self) -> dict[str, Any]:
        """The next message: ``next`` (payload), ``error`` or ``complete``."""
        async with asyncio.timeout(10):
            while True:
                message: dict[str, Any] = json.loads(await self._connection.recv())
                if message["type"] in ("next", "error", "complete"):
                    return message

    async def receive_error(self) -> dict[str, Any]:
        """The next message carrying errors (``error``, or ``next`` with errors)."""
        while True:
            message = await self.receive()
            if message["type"] == "error" or "errors" in message.get("payload", {}):
                return message

    async def close_status(self) -> tuple[int | None, str | None]:
        """The code and reason the server closed the socket with, once it has."""
        async with asyncio.timeout(10):
            await self._connection.wait_closed()
        return self._connection.close_code, self._connection.close_reason

    async def close(self) -> None:
        await self._connection.close()
