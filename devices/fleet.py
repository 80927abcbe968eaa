"""The fleet: the root supervisor of every device in the plant file.

It starts one :class:`~devices.supervisor.DeviceSupervisor` per device, each
with its write service, and keeps them running one-for-one: a supervisor that
crashes (a bug: it survives every device failure by design) is logged, its
device is published as ``stopped`` with the reason, and it is made again after
an exponential backoff, while every other device goes on untouched.

:meth:`Fleet.apply` moves the running fleet to a new plant file: devices that
were added start, removed ones stop, changed ones (their block, or the plant
settings they inherit) restart, and the others are not touched at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from devices.backoff import Backoff
from devices.driver import Driver
from devices.drivers import driver_for
from devices.nats_bridge import WriteService
from devices.supervisor import DeviceSupervisor, SupervisionPolicy, TelemetrySink
from domain.messages import ConnectionState, DeviceStatus, WriteErrorKind, WriteReply, WriteRequest
from plantfile.plant import DeviceConfig, PlantConfig

log = logging.getLogger(__name__)

# A supervisor that ran this long before crashing starts again from the shortest delay.
STABLE_SECONDS = 60.0


class WriteSubscription(Protocol):
    async def unsubscribe(self) -> None: ...


# Makes ``plant.write.<device>`` reach a write service (serve_writes on NATS).
ExposeWrites = Callable[[WriteService], Awaitable[WriteSubscription]]


@dataclass(frozen=True, slots=True)
class FleetChange:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one device runs with: its block and the supervision it inherits."""

    device: DeviceConfig
    policy: SupervisionPolicy


class _Member:
    """One device under the fleet: its write service and a supervisor, re-made after a crash."""

    def __init__(
        self,
        plan: _Plan,
        make_driver: Callable[[DeviceConfig], Driver],
        sink: TelemetrySink,
        backoff: Backoff,
        clock: Callable[[], float],
    ) -> None:
        self.plan = plan
        self.supervisor: DeviceSupervisor | None = None
        self.restarts = 0
        self._make_driver = make_driver
        self._sink = sink
        self._backoff = backoff
        self._clock = clock

    @property
    def device_id(self) -> str:
        return self.plan.device.id

    async def submit_write(self, request: WriteRequest) -> WriteReply:
        supervisor = self.supervisor
        if supervisor is None:
            return WriteReply.failure(
                request.tag, WriteErrorKind.DEVICE_OFFLINE, "the device's supervisor is restarting"
            )
        return await supervisor.submit_write(request)

    async def run(self) -> None:
        """Supervise the device until cancelled, remaking the supervisor after each crash."""
        while True:
            device = self.plan.device
            self.supervisor = DeviceSupervisor(
                device, self._make_driver(device), self._sink, policy=self.plan.policy
            )
            started = self._clock()
            try:
                await self.supervisor.run()
                reason = "supervisor returned"  # run() only ends by cancellation or a crash
            except Exception as exc:
                reason = f"supervisor crashed: {exc!r}"
                log.exception("device %s: supervisor crashed", device.id)
            self.supervisor = None
            self.restarts += 1
            if self._clock() - started >= STABLE_SECONDS:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            await self._sink.publish_status(
                DeviceStatus(
                    device.id,
                    ConnectionState.STOPPED,
                    datetime.now(UTC),
                    detail=f"{reason}; restart {self.restarts} in {delay:.1f} s",
                )
            )
            await asyncio.sleep(delay)


class Fleet:
    def __init__(
        self,
        plant: PlantConfig,
        sink: TelemetrySink,
        expose_writes: ExposeWrites,
        *,
        make_driver: Callable[[DeviceConfig], Driver] = driver_for,
        restart_base: float = 1.0,
        restart_cap: float = 60.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plant = plant
        self._sink = sink
        self._expose_writes = expose_writes
        self._make_driver = make_driver
        self._restart_base = restart_base
        self._restart_cap = restart_cap
        self._rng = rng or random.Random()
        self._clock = clock
        self._members: dict[str, tuple[_Member, WriteSubscription, asyncio.Task[None]]] = {}

    def __iter__(self) -> Iterator[_Member]:
        return (member for member, _, _ in self._members.values())

    def supervisor(self, device: str) -> DeviceSupervisor | None:
        """The device's running supervisor; None while it restarts or when not in the fleet."""
        entry = self._members.get(device)
        return entry[0].supervisor if entry else None

    async def start(self) -> None:
        for device in self.plant.devices:
            await self._start(self._plan(self.plant, device))

    async def apply(self, plant: PlantConfig) -> FleetChange:
        """Run ``plant`` from now on, touching only the devices whose plan changed."""
        plans = {device.id: self._plan(plant, device) for device in plant.devices}
        removed = tuple(device for device in self._members if device not in plans)
        added = tuple(device for device in plans if device not in self._members)
        changed = tuple(
            device
            for device, plan in plans.items()
            if device in self._members and self._members[device][0].plan != plan
        )
        for device in (*removed, *changed):
            await self._stop(device)
        for device in (*changed, *added):
            await self._start(plans[device])
        self.plant = plant
        change = FleetChange(added, removed, changed)
        if change:
            log.info("fleet: added %s, removed %s, changed %s", added, removed, changed)
        return change

    async def stop(self) -> None:
        """Stop every device at once.

        Not one after another: each stop waits on the event loop that the devices
        still running keep busy, and a fleet of 1,000 took two minutes to stop so
        (ADR 0046).
        """
        await asyncio.gather(*(self._stop(device) for device in list(self._members)))

    def _plan(self, plant: PlantConfig, device: DeviceConfig) -> _Plan:
        return _Plan(device, SupervisionPolicy.for_device(plant, device))

    async def _start(self, plan: _Plan) -> None:
        backoff = Backoff(self._restart_base, self._restart_cap, self._rng)
        member = _Member(plan, self._make_driver, self._sink, backoff, self._clock)
        writes = await self._expose_writes(member)
        task = asyncio.create_task(member.run(), name=f"device {plan.device.id}")
        self._members[plan.device.id] = (member, writes, task)

    async def _stop(self, device: str) -> None:
        _, writes, task = self._members.pop(device)
        await writes.unsubscribe()  # no new writes; queued ones are answered by the supervisor
        task.cancel()
        await asyncio.wait({task})
