"""One client process of the fan-out benchmark: many HMIs, connecting together.

``python -m bench.fanout_clients plantcore|bare --count N ...`` opens ``N``
WebSockets at once, as HMIs do after a restart, each following one device:

- ``plantcore``: graphql-transport-ws, ``connection_init`` with the bearer
  token, then ``tagUpdates(device: ...)``; connected once its first message is
  the snapshot, dropped if it is an error instead;
- ``bare``: the device's NATS subject as the first message, connected once
  the relay answers.

It prints one JSON line when every socket is connected or dropped
(``{"connected": ..., "dropped": ..., "errors": [...]}``), then receives until
its standard input closes and prints a second line: each sample's latency
from the time it carries (set by the publisher as it publishes, on the same
machine's clock) to its arrival here, the samples each socket received, and
the sockets that ended early.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import websockets
from websockets.typing import Subprotocol

from domain.messages import TELEMETRY_SUBJECT

TAG_UPDATES = "subscription($d: String!) { tagUpdates(device: $d) { tag value ts snapshot } }"
# A socket that neither connects nor fails within this long counts as dropped.
CONNECT_SECONDS = 60.0
# The errors printed, of all the sockets that dropped.
ERRORS_SHOWN = 3


class Dropped(Exception):
    """The server ended the subscription, or never started it."""


@dataclass
class Follower:
    """One HMI's socket and what it received."""

    side: str
    url: str
    device: str
    token: str
    latencies: list[float] = field(default_factory=list)
    socket: websockets.ClientConnection | None = None

    async def connect(self) -> None:
        if self.side == "plantcore":
            self.socket = await websockets.connect(
                self.url, subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None
            )
            init = {"authorization": f"Bearer {self.token}"}
            await self.socket.send(json.dumps({"type": "connection_init", "payload": init}))
            ack = json.loads(await self.socket.recv())
            if ack["type"] != "connection_ack":
                raise Dropped(str(ack))
            subscribe = {"query": TAG_UPDATES, "variables": {"d": self.device}}
            await self.socket.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": subscribe})
            )
            first = json.loads(await self.socket.recv())
            if first["type"] != "next" or "errors" in first["payload"]:
                raise Dropped(str(first))
        else:
            self.socket = await websockets.connect(self.url, max_size=None)
            await self.socket.send(TELEMETRY_SUBJECT.format(device=self.device))
            await self.socket.recv()

    async def receive(self) -> None:
        """Every sample until the socket closes (or this task is cancelled)."""
        assert self.socket is not None
        async for data in self.socket:
            arrived = time.time()
            self.latencies.append(arrived - self.sample_time(json.loads(data)))

    def sample_time(self, message: dict[str, Any]) -> float:
        if self.side == "bare":
            return _seconds(message["ts"])
        if message["type"] != "next" or "errors" in message["payload"]:
            raise Dropped(str(message))
        return _seconds(message["payload"]["data"]["tagUpdates"]["ts"])


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


async def connect(follower: Follower) -> str | None:
    """``None`` once connected, else why it dropped."""
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            await follower.connect()
    except (Dropped, OSError, TimeoutError, websockets.WebSocketException) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


async def until_stdin_closes() -> None:
    await asyncio.to_thread(sys.stdin.read)


async def follow(followers: list[Follower]) -> None:
    failures = await asyncio.gather(*(connect(f) for f in followers))
    errors = [failure for failure in failures if failure is not None]
    report = {"connected": len(followers) - len(errors), "dropped": len(errors)}
    print(json.dumps({**report, "errors": errors[:ERRORS_SHOWN]}), flush=True)
    live = [f for f, failure in zip(followers, failures, strict=True) if failure is None]
    receiving = [asyncio.create_task(f.receive()) for f in live]
    await until_stdin_closes()
    ended_early = sum(1 for task in receiving if task.done())
    for task in receiving:
        task.cancel()
    await asyncio.gather(*receiving, return_exceptions=True)
    await asyncio.gather(*(f.socket.close() for f in live if f.socket is not None))
    received = [len(f.latencies) for f in live]
    print(
        json.dumps(
            {
                "latencies": [round(s, 6) for f in live for s in f.latencies],
                "received_min": min(received, default=0),
                "received": sum(received),
                "ended_early": ended_early,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_clients", description=__doc__)
    parser.add_argument("side", choices=["plantcore", "bare"])
    parser.add_argument("--urls", required=True, help="comma-separated: socket i uses the i-th")
    parser.add_argument(
        "--devices", required=True, help="comma-separated: socket i follows the i-th"
    )
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    urls, devices = args.urls.split(","), args.devices.split(",")
    followers = [
        Follower(args.side, urls[i % len(urls)], device, args.token)
        for i, device in enumerate(devices)
    ]
    asyncio.run(follow(followers))


if __name__ == "__main__":
    main()
