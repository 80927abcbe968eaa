"""A bare HTTP/1.1 client for the API fuzz: one keep-alive connection that posts JSON.

httpx costs the test process some 2.5 ms of CPU a request, as much as the
server's validation of a small document; the server and the test share one
process and one core, so the fuzz's ten thousand requests go through this
instead: it writes the request and reads a response whose length it declares
(uvicorn's always do), and nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A response as received: its status and its body."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class KeepAlive:
    """One connection to ``host:port``, opened again when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self._host}:{self._port}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:] if line)
        }
        assert "content-length" in fields, f"a response of unknown length: {head}"
        answer = Answer(
            int(head[0].split()[1]), await reader.readexactly(int(fields["content-length"]))
        )
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return answer

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            await writer.wait_closed()
