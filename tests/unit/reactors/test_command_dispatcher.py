"""Which events release a command to the dispatcher: a confirmation, or a critical write's approval.

The dispatcher is fed real notifications of the in-memory event store; its
NATS client is a stand-in that answers like a device supervisor. The write
over a real NATS server, its timeouts and its read-backs are in
``tests/integration/api/test_commands.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast
from uuid import UUID

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from domain.command import CommandStatus
from domain.messages import WriteReply, WriteRequest
from reactors.command_dispatcher import CommandDispatcher
from tests.unit.reactors.command_plant import CommandPlant, InlineStore, MemoryPosition, at

# No test should come near it: a bound on a wait, not a pause.
SETTLED_WITHIN = 5.0


class Supervisor:
    """Answers write requests like a device supervisor; writes wait for ``opened``."""

    def __init__(self) -> None:
        self.requests: list[WriteRequest] = []
        self.value: float | int | bool | None = None
        self.opened = asyncio.Event()
        self.write_arrived = asyncio.Event()

    async def request(
        self, subject: str, payload: bytes = b"", timeout: float = 0.5, **_: object
    ) -> Msg:
        request = WriteRequest.decode(payload)
        self.requests.append(request)
        if request.op == "write":
            self.write_arrived.set()
            await self.opened.wait()
            self.value = request.value
        reply = WriteReply(ok=True, tag=request.tag, read_back=self.value)
        return Msg(cast(NatsClient, self), subject=subject, data=reply.encode())


class Rig:
    def __init__(self) -> None:
        self.plant = CommandPlant()
        self.store_executor = InlineStore()
        self.position = MemoryPosition(initial=self.plant.last_id())
        self.supervisor = Supervisor()
        # The dispatcher only calls ``request``: a stand-in, not a connection.
        self.dispatcher = CommandDispatcher(
            self.plant.app,
            self.store_executor,
            cast(NatsClient, self.supervisor),
            self.position,
            clock=lambda: at(10),
        )

    async def deliver(self) -> None:
        await self.dispatcher.on_notifications(self.plant.new_notifications())

    async def settled(self) -> None:
        """Wait until the position passes every notification delivered: all handled."""
        async with asyncio.timeout(SETTLED_WITHIN):
            await self.position.reached(self.plant.delivered)

    def status(self, command_id: UUID) -> CommandStatus:
        return self.plant.app.get_command(command_id).status

    def ops(self) -> list[str]:
        return [request.op for request in self.supervisor.requests]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.dispatcher.load_position()
    task = asyncio.create_task(rig.dispatcher.run())
    yield rig
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    rig.store_executor.shutdown()


async def test_a_critical_write_waits_for_its_approval_and_is_written_once(rig: Rig) -> None:
    rig.supervisor.opened.set()
    command_id = rig.plant.request("pressure", 150)
    rig.plant.confirm(command_id, 1)
    await rig.deliver()
    await rig.settled()
    # The requester's signature is a request: nothing leaves for the device.
    assert rig.ops() == []
    assert rig.status(command_id) is CommandStatus.AWAITING_APPROVAL

    rig.plant.approve(command_id, 2)
    await rig.deliver()
    await rig.settled()
    assert rig.ops() == ["write"]
    assert rig.status(command_id) is CommandStatus.SUCCEEDED
    assert rig.supervisor.value == 150


async def test_a_confirmation_and_an_approval_read_together_release_one_write(rig: Rig) -> None:
    # A dispatcher behind the log reads both; handled twice, the second handling would
    # find the first's write in flight ("dispatched") and read back before it lands.
    command_id = rig.plant.request("pressure", 150)
    rig.plant.confirm(command_id, 1)
    rig.plant.approve(command_id, 2)
    await rig.deliver()
    async with asyncio.timeout(SETTLED_WITHIN):
        await rig.supervisor.write_arrived.wait()
    rig.supervisor.opened.set()
    await rig.settled()
    assert rig.ops() == ["write"]
    assert rig.status(command_id) is CommandStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("tag", "value"),
    [("speed", 1200), ("running", False)],
    ids=["confirmed", "emergency"],
)
async def test_a_confirmation_that_releases_the_write_is_dispatched(
    rig: Rig, tag: str, value: float | bool
) -> None:
    rig.supervisor.opened.set()
    command_id = rig.plant.request(tag, value)
    if tag == "speed":
        rig.plant.confirm(command_id, 1)
    await rig.deliver()
    await rig.settled()
    assert rig.ops() == ["write"]
    assert rig.status(command_id) is CommandStatus.SUCCEEDED
    assert rig.supervisor.value == value
