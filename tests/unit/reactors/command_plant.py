"""A press with a plain, a critical and an emergency tag, for the followers of the command log.

The dispatcher, the expiry sweeper and the command metrics react to the
events of :class:`~domain.command.ControlCommand`: these stand-ins let their
unit tests write real commands on the in-memory event store and hand them
the notifications, without a database, a NATS server or a clock that runs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from eventstore.executor import StoreExecutor

P = ParamSpec("P")
R = TypeVar("R")

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
DEVICE = "press"
REQUESTER = "ana"
APPROVER = "bob"

TAGS = (
    TagLimits(DEVICE, "speed", "rpm", writable=True, kind=ValueKind.INTEGER, low=0, high=3000),
    TagLimits(DEVICE, "pressure", "bar", True, ValueKind.NUMBER, low=0, high=200, critical=True),
    TagLimits(DEVICE, "running", "", True, ValueKind.BOOL, None, None, emergency_values=(False,)),
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class CommandPlant:
    """The application with two operators allowed on the whole plant, and its log."""

    def __init__(self) -> None:
        catalog = TagCatalog(TAGS, {DEVICE: DeviceInfo(area="line", simulated=True)})
        self.app = PlantApplication(catalog)
        for username in (REQUESTER, APPROVER):
            self.app.register_operator(
                username=username,
                full_name=username.title(),
                roles=["operator"],
                password_hash="argon2-hash",
                totp_secret_sealed="sealed",
                actor="admin",
                at=T0,
            )
            self.app.grant_permission(username=username, scope="plant", actor="admin", at=T0)
        # The API verifies the codes; the domain only refuses a time step used twice.
        self._steps = itertools.count(1)
        # The last notification handed over; what a follower then records waits for the next.
        self.delivered = self.last_id()

    def last_id(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def new_notifications(self) -> list[Notification]:
        """What the log tail would deliver now: everything since the last call."""
        notifications = list(
            self.app.recorder.select_notifications(self.delivered, 1000, inclusive_of_start=False)
        )
        if notifications:
            self.delivered = notifications[-1].id
        return notifications

    def request(self, tag: str, value: object, seconds: float = 0) -> UUID:
        ticket = self.app.request_command(
            actor=REQUESTER, device=DEVICE, tag=tag, value=value, at=at(seconds)
        )
        return ticket.command_id

    def confirm(self, command_id: UUID, seconds: float) -> None:
        self.app.confirm_command(
            actor=REQUESTER, command_id=command_id, totp_step=next(self._steps), at=at(seconds)
        )

    def approve(self, command_id: UUID, seconds: float) -> None:
        self.app.approve_command(
            actor=APPROVER, command_id=command_id, totp_step=next(self._steps), at=at(seconds)
        )


class MemoryPosition:
    """A follower's position store that remembers every save and lets a test await one."""

    def __init__(self, initial: int = 0) -> None:
        self.saved: list[int] = []
        self._initial = initial
        self._saves = asyncio.Condition()

    async def load(self) -> int:
        return self.saved[-1] if self.saved else self._initial

    async def save(self, position: int) -> None:
        async with self._saves:
            self.saved.append(position)
            self._saves.notify_all()

    async def next_save(self) -> int:
        """The position of the next save from now on."""
        async with self._saves:
            count = len(self.saved)
            await self._saves.wait_for(lambda: len(self.saved) > count)
            return self.saved[count]

    async def reached(self, position: int) -> None:
        """Return once a save has reached ``position``: everything up to it is handled."""
        async with self._saves:
            await self._saves.wait_for(lambda: bool(self.saved) and self.saved[-1] >= position)


class InlineStore(StoreExecutor):
    """Calls the application in the event loop's thread, in order, after an optional hook.

    The hook runs while the caller awaits the store, where in production other
    tasks (the log tail delivering new events) can run.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.before: Callable[[Callable[..., object]], Awaitable[None]] | None = None

    async def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.before is not None:
            await self.before(fn)
        return fn(*args, **kwargs)
