"""The expiry sweeper's deadlines: a confirmation's, then a critical write's approval's.

The sweeper is fed real notifications of the in-memory event store, in log
order, as the log tail would; the clock is fixed, so nothing here waits for
time to pass. The end-to-end expiry of an unanswered command (API, tail,
PostgreSQL) is in ``tests/integration/api/test_commands.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from domain.application import DEFAULT_APPROVAL_WINDOW, DEFAULT_CONFIRM_WINDOW
from domain.command import CommandStatus
from domain.errors import CommandRefused, ConfirmationRefused, SecondPersonRequired
from domain.plant_mode import Mode
from reactors.command_expiry import ExpirySweeper
from tests.unit.reactors.command_plant import (
    APPROVER,
    REQUESTER,
    T0,
    CommandPlant,
    InlineStore,
    MemoryPosition,
    at,
)

CONFIRMED_AT = 1.0
APPROVAL_DEADLINE = at(CONFIRMED_AT) + DEFAULT_APPROVAL_WINDOW


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Rig:
    def __init__(self) -> None:
        self.plant = CommandPlant()
        self.store_executor = InlineStore()
        self.position = MemoryPosition(initial=self.plant.last_id())
        self.clock = Clock(T0)
        # max_sleep 0: a sweep right away, never a wait on the wall clock.
        self.sweeper = ExpirySweeper(
            self.plant.app, self.store_executor, self.position, clock=self.clock, max_sleep=0.0
        )

    async def deliver(self) -> None:
        await self.sweeper.on_notifications(self.plant.new_notifications())

    def awaiting_approval(self) -> UUID:
        command_id = self.plant.request("pressure", 150)
        self.plant.confirm(command_id, CONFIRMED_AT)
        return command_id

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The sweeper's own loop, for as long as the block runs."""
        task = asyncio.create_task(self.sweeper.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.sweeper.load_position()
    yield rig
    rig.store_executor.shutdown()


async def test_a_challenge_opens_a_window_until_its_deadline(rig: Rig) -> None:
    command_id = rig.plant.request("speed", 1200)
    await rig.deliver()
    assert rig.sweeper.pending == {command_id}
    assert rig.sweeper.deadline(command_id) == T0 + DEFAULT_CONFIRM_WINDOW


async def test_the_confirmation_of_a_critical_write_hands_over_to_its_approval_window(
    rig: Rig,
) -> None:
    command_id = rig.plant.request("pressure", 150)
    await rig.deliver()
    rig.plant.confirm(command_id, CONFIRMED_AT)
    # Confirmed, then ApprovalRequested, in one batch as the tail reads them.
    await rig.deliver()
    assert rig.sweeper.deadline(command_id) == APPROVAL_DEADLINE

    rig.plant.approve(command_id, 2)
    await rig.deliver()
    assert rig.sweeper.pending == frozenset()


async def test_the_approval_window_survives_a_batch_boundary_after_the_confirmation(
    rig: Rig,
) -> None:
    command_id = rig.awaiting_approval()
    *first, approval_requested = [
        n for n in rig.plant.new_notifications() if not n.topic.startswith("domain.operator")
    ]
    await rig.sweeper.on_notifications(first)
    assert rig.sweeper.pending == frozenset()  # the challenge's window is closed...
    await rig.sweeper.on_notifications([approval_requested])
    assert rig.sweeper.deadline(command_id) == APPROVAL_DEADLINE  # ...the approval's open


async def test_a_confirmation_that_releases_the_write_ends_the_wait(rig: Rig) -> None:
    command_id = rig.plant.request("speed", 1200)
    rig.plant.confirm(command_id, CONFIRMED_AT)
    await rig.deliver()
    assert rig.sweeper.pending == frozenset()


def _decline(plant: CommandPlant, command_id: UUID) -> None:
    plant.app.decline_command(actor=APPROVER, command_id=command_id, reason="no", at=at(2))


def _cancel(plant: CommandPlant, command_id: UUID) -> None:
    plant.app.cancel_command(actor=REQUESTER, command_id=command_id, at=at(2))


def _expire(plant: CommandPlant, command_id: UUID) -> None:
    assert plant.app.expire_command(command_id, APPROVAL_DEADLINE + timedelta(seconds=1))


def _reject(plant: CommandPlant, command_id: UUID) -> None:
    # The plant went read-only while the command waited: the approval rejects it.
    plant.app.set_plant_mode(mode=Mode.READ_ONLY, reason="maintenance", actor="admin", at=at(2))
    with pytest.raises(CommandRefused):
        plant.approve(command_id, 3)


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (_decline, CommandStatus.DECLINED),
        (_cancel, CommandStatus.CANCELLED),
        (_expire, CommandStatus.EXPIRED),
        (_reject, CommandStatus.REJECTED),
    ],
)
async def test_every_end_of_an_awaited_approval_ends_the_wait(
    rig: Rig, end: Callable[[CommandPlant, UUID], None], status: CommandStatus
) -> None:
    command_id = rig.awaiting_approval()
    await rig.deliver()
    end(rig.plant, command_id)
    await rig.deliver()
    assert rig.plant.app.get_command(command_id).status is status
    assert rig.sweeper.pending == frozenset()


async def test_a_wrong_code_or_a_refused_approver_leaves_the_approval_window_open(
    rig: Rig,
) -> None:
    command_id = rig.awaiting_approval()
    with pytest.raises(ConfirmationRefused):
        rig.plant.app.approve_command(
            actor=APPROVER, command_id=command_id, totp_step=None, at=at(2)
        )
    with pytest.raises(SecondPersonRequired):
        rig.plant.app.approve_command(
            actor=REQUESTER, command_id=command_id, totp_step=99, at=at(3)
        )
    await rig.deliver()
    assert rig.sweeper.deadline(command_id) == APPROVAL_DEADLINE


# -- the sweeper's loop ----------------------------------------------------------------------


async def test_an_approval_nobody_gives_in_time_is_expired(rig: Rig) -> None:
    command_id = rig.awaiting_approval()
    await rig.deliver()
    rig.clock.now = APPROVAL_DEADLINE + timedelta(seconds=1)
    async with rig.running():
        await rig.position.next_save()  # saved after the sweep
    assert rig.plant.app.get_command(command_id).status is CommandStatus.EXPIRED
    assert rig.sweeper.pending == frozenset()


async def test_the_position_stays_before_an_open_approval_window(rig: Rig) -> None:
    rig.clock.now = at(2)
    command_id = rig.awaiting_approval()
    notifications = rig.plant.new_notifications()
    await rig.sweeper.on_notifications(notifications)
    (approval_requested,) = (n for n in notifications if n.topic.endswith(".ApprovalRequested"))
    async with rig.running():
        saved = await rig.position.next_save()
    # After a restart the tail replays the ApprovalRequested, and the window with it.
    assert saved == approval_requested.id - 1
    assert rig.sweeper.deadline(command_id) == APPROVAL_DEADLINE


async def test_a_confirmation_in_time_read_during_the_sweep_keeps_its_approval_window(
    rig: Rig,
) -> None:
    # Confirmed just before the challenge's deadline, but the tail is behind: the sweep
    # finds the challenge overdue and, while it asks the store, the tail delivers the
    # confirmation and the approval's window it opens.
    command_id = rig.plant.request("pressure", 150)
    await rig.deliver()
    confirmed_at = DEFAULT_CONFIRM_WINDOW.total_seconds() - 1
    rig.plant.confirm(command_id, confirmed_at)
    rig.clock.now = T0 + DEFAULT_CONFIRM_WINDOW + timedelta(seconds=1)

    async def tail_delivers(fn: Callable[..., object]) -> None:
        rig.store_executor.before = None
        await rig.deliver()

    rig.store_executor.before = tail_delivers
    async with rig.running():
        await rig.position.next_save()
    assert rig.plant.app.get_command(command_id).status is CommandStatus.AWAITING_APPROVAL
    assert rig.sweeper.deadline(command_id) == at(confirmed_at) + DEFAULT_APPROVAL_WINDOW
