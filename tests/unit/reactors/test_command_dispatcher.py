"""Which events release a command to the dispatcher: a confirmation, or a critical write's approval.

The dispatcher is fed real notifications of the in-memory event store; its
NATS client is a stand-in that answers like a device supervisor. The write
over a real NATS server, its timeouts and its read-backs are in
``tests/integration/api/test_commands.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import cast
from uuid import UUID

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from domain.command import CommandStatus
from domain.messages import WriteReply, WriteRequest
from domain.plant_mode import Mode
from reactors.command_dispatcher import CommandDispatcher
from tests.unit.reactors.command_plant import (
    REQUESTER,
    CommandPlant,
    InlineStore,
    MemoryPosition,
    at,
)

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
    def __init__(self, clock: Callable[[], datetime] = lambda: at(10)) -> None:
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
            clock=clock,
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


async def test_a_write_carries_the_deadline_from_which_a_supervisor_refuses_it(rig: Rig) -> None:
    released(rig)
    await rig.deliver()
    await rig.settled()

    [write] = rig.supervisor.requests
    # The dispatcher's clock reads at(10); it waits 5 s and allows 1 s of clock skew.
    assert write.deadline == at(10 + 5 - 1)
    assert write.past_deadline(at(13.999)) is False
    assert write.past_deadline(at(14)) is True


def test_a_wait_no_longer_than_the_clock_skew_is_refused() -> None:
    plant = CommandPlant()
    with pytest.raises(ValueError, match="must exceed the allowed clock skew"):
        CommandDispatcher(
            plant.app,
            InlineStore(),
            cast(NatsClient, Supervisor()),
            MemoryPosition(),
            write_timeout=1.0,
            clock_skew=timedelta(seconds=1),
        )


# -- what happens between loading a released command and recording its dispatch ----------------


def released(rig: Rig) -> UUID:
    """A command for ``speed`` confirmed at 1 s, whose write the device will take."""
    rig.supervisor.opened.set()
    command_id = rig.plant.request("speed", 1200)
    rig.plant.confirm(command_id, 1)
    return command_id


def between_load_and_dispatch(rig: Rig, change: Callable[[], object]) -> None:
    """Make ``change`` happen after the dispatcher loaded the command, before it records."""

    async def before(fn: Callable[..., object]) -> None:
        if fn == rig.plant.app.record_dispatch:
            rig.store_executor.before = None
            change()

    rig.store_executor.before = before


async def test_a_command_cancelled_after_it_was_loaded_is_never_written(rig: Rig) -> None:
    command_id = released(rig)
    between_load_and_dispatch(
        rig, lambda: rig.plant.app.cancel_command(actor=REQUESTER, command_id=command_id, at=at(2))
    )

    await rig.deliver()
    await rig.settled()

    assert rig.ops() == []
    assert rig.status(command_id) is CommandStatus.CANCELLED


async def test_a_command_the_read_only_plant_refuses_after_it_was_loaded_is_never_written(
    rig: Rig,
) -> None:
    command_id = released(rig)
    between_load_and_dispatch(
        rig,
        lambda: rig.plant.app.set_plant_mode(
            mode=Mode.READ_ONLY, reason="maintenance", actor="admin", at=at(2)
        ),
    )

    await rig.deliver()
    await rig.settled()

    assert rig.ops() == []
    command = rig.plant.app.get_command(command_id)
    assert (command.status, command.reason) == (CommandStatus.REJECTED, "read_only")


async def test_a_command_another_dispatcher_dispatched_after_it_was_loaded_is_written_once(
    rig: Rig,
) -> None:
    command_id = released(rig)
    between_load_and_dispatch(
        rig, lambda: rig.plant.app.record_dispatch(command_id, at(2), actor="dispatcher-2")
    )

    await rig.deliver()
    await rig.settled()

    # The other dispatcher sends its write; this one sends none of its own.
    assert rig.ops() == []
    events = rig.plant.app.command_events(command_id)
    assert [e.actor for e in events if type(e).__name__ == "WriteDispatched"] == ["dispatcher-2"]


async def test_a_permission_revoked_before_dispatch_stops_the_write(rig: Rig) -> None:
    command_id = released(rig)
    rig.plant.app.revoke_permission(username=REQUESTER, scope="plant", actor="admin", at=at(2))

    await rig.deliver()
    await rig.settled()

    assert rig.ops() == []
    command = rig.plant.app.get_command(command_id)
    assert (command.status, command.reason) == (CommandStatus.REJECTED, "forbidden")


async def test_a_release_older_than_the_dispatch_window_expires_unwritten() -> None:
    # The dispatcher comes back (a crash, a database outage) 11 s after the confirmation.
    rig = Rig(clock=lambda: at(1 + 11))
    await rig.dispatcher.load_position()
    task = asyncio.create_task(rig.dispatcher.run())
    try:
        rig.supervisor.opened.set()
        command_id = rig.plant.request("speed", 1200)
        rig.plant.confirm(command_id, 1)
        await rig.deliver()
        await rig.settled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rig.store_executor.shutdown()

    assert rig.ops() == []
    command = rig.plant.app.get_command(command_id)
    assert (command.status, command.reason) == (CommandStatus.EXPIRED, "not_dispatched")
