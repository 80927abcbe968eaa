"""An HMI in a process of its own, for the end-to-end benchmarks: ``python -m bench.hmi_client``.

It reads what to do as one JSON object on stdin and writes one JSON object a
line on stdout, each stamped with ``time.time()`` where it saw something (the
benchmark's process shares the machine's clock):

- ``commands``: ``count`` setpoint commands, one after another. Each is
  requested over HTTP, its ``commandStatus`` subscribed (and live: its first
  step seen), then confirmed with a TOTP code over HTTP. A line per command:
  when the confirmation was sent and answered, and when each step arrived.
  Codes come from the operators' secrets: each operator signs with a step
  above its last one (the domain refuses a step used already; ``last_step``
  says which it used before, and the last line which it used last) and
  within one of the current one (as the API accepts), so ``hmis`` operators
  give about two confirmations each per 30 s step, and the client waits for
  the next step when none has a code left.
- ``tag_updates``: subscribes ``tagUpdates`` of one device and writes a line
  per update of one tag (its value, ``ts`` and when it arrived), after a line
  ``{"ready": true}`` once the subscription delivered its first update.
- ``nats``: the bare side of ``tag_updates``: a core NATS subscription to a
  subject carrying ``{"value", "ts"}``, a line per message the same way.

Ended by closing its stdin or by SIGTERM (the streaming modes), or when done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import pyotp

from tests.graphql_client import GraphQLSocket

REQUEST = (
    "mutation($d: String!, $t: String!, $v: JSON) {"
    " requestCommand(device: $d, tag: $t, value: $v) { commandId } }"
)
CONFIRM = (
    "mutation($id: ID!, $code: String!) { confirmCommand(commandId: $id, code: $code) { status } }"
)
COMMAND_STATUS = "subscription($id: ID!) { commandStatus(commandId: $id) { step status } }"
TAG_UPDATES = "subscription($d: String!) { tagUpdates(device: $d) { tag value ts } }"
SETTLED = {"SUCCEEDED", "WRITE_FAILED", "REJECTED", "EXPIRED", "CANCELLED"}


def say(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


class Signer:
    """Picks an operator and a TOTP step for each confirmation (see the module's docstring)."""

    def __init__(self, hmis: list[dict[str, str]]) -> None:
        self._hmis = hmis
        self._totps = [pyotp.TOTP(hmi["totp_secret"]) for hmi in hmis]
        self._last = [hmi.get("last_step", 0) for hmi in hmis]
        self._next = 0

    async def sign(self) -> tuple[dict[str, str], str]:
        while True:
            for _ in self._hmis:
                index = self._next
                self._next = (self._next + 1) % len(self._hmis)
                current = int(self._totps[index].timecode(datetime.now(UTC)))
                step = max(self._last[index] + 1, current)
                if step <= current + 1:
                    self._last[index] = step
                    return self._hmis[index], self._totps[index].generate_otp(step)
            await asyncio.sleep(self._totps[0].interval - time.time() % self._totps[0].interval)

    def last_steps(self) -> dict[str, int]:
        return {hmi["username"]: step for hmi, step in zip(self._hmis, self._last, strict=True)}


async def post(http: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    if "data" not in body or "errors" in body:
        raise RuntimeError(f"{query.split('(', maxsplit=1)[0]}: {body['errors']}")
    return body["data"]


async def next_of(socket: GraphQLSocket, operation: str) -> dict[str, Any]:
    """The next ``next`` message of ``operation`` (others' ``complete`` are skipped)."""
    while True:
        message = await socket.receive()
        if message.get("id") != operation:
            continue
        if message["type"] != "next" or "errors" in message["payload"]:
            raise RuntimeError(f"subscription ended: {message}")
        return message["payload"]["data"]  # type: ignore[no-any-return]


async def commands(task: dict[str, Any]) -> None:
    signer = Signer(task["hmis"])
    async with httpx.AsyncClient(base_url=task["http_url"], timeout=30) as http:
        sockets = {
            hmi["username"]: await GraphQLSocket.open(task["ws_url"], hmi["token"])
            for hmi in task["hmis"]
        }
        for value in task["values"]:
            hmi, code = await signer.sign()
            token, socket = hmi["token"], sockets[hmi["username"]]
            ticket = await post(http, token, REQUEST, d=task["device"], t=task["tag"], v=value)
            command_id = ticket["requestCommand"]["commandId"]
            operation = await socket.subscribe(COMMAND_STATUS, id=command_id)
            await next_of(socket, operation)  # the subscription is live
            sent = time.time()
            await post(http, token, CONFIRM, id=command_id, code=code)
            answered = time.time()
            seen: dict[str, float] = {}
            status = ""
            while status not in SETTLED:
                step = (await next_of(socket, operation))["commandStatus"]
                seen.setdefault(step["step"], time.time())
                status = step["status"]
            say({"command_id": command_id, "status": status, "sent": sent, "answered": answered,
                 "seen": seen})  # fmt: skip
        for socket in sockets.values():
            await socket.close()
    say({"last_steps": signer.last_steps()})


async def tag_updates(task: dict[str, Any]) -> None:
    socket = await GraphQLSocket.open(task["ws_url"], task["token"])
    operation = await socket.subscribe(TAG_UPDATES, d=task["device"])
    await next_of(socket, operation)
    say({"ready": True})
    while True:
        update = (await next_of(socket, operation))["tagUpdates"]
        if update["tag"] == task["tag"]:
            say({"value": update["value"], "ts": update["ts"], "received": time.time()})


async def nats_subject(task: dict[str, Any]) -> None:
    nc = await nats.connect(task["nats_url"])
    subscription = await nc.subscribe(task["subject"])
    await nc.flush()
    say({"ready": True})
    async for message in subscription.messages:
        received = time.time()
        say({**json.loads(message.data), "received": received})


MODES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "commands": commands,
    "tag_updates": tag_updates,
    "nats": nats_subject,
}


async def main() -> None:
    task = json.loads(sys.stdin.readline())
    await MODES[task["mode"]](task)


if __name__ == "__main__":
    asyncio.run(main())
