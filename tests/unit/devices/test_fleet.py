"""The fleet starts a supervisor per device, restarts a crashed one, and applies a new plant."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from devices.fleet import Fleet, FleetChange
from devices.nats_bridge import WriteService
from domain.messages import ConnectionState, DeviceStatus, WriteErrorKind, WriteRequest
from plantfile.plant import DeviceConfig, PlantConfig
from tests.support import eventually, unique
from tests.unit.devices.fakes import FakeDriver, RecordingSink

DEADLINE = 10.0  # seconds before a stop that waits forever fails the test
TAGS: list[dict[str, Any]] = [{"name": "speed", "address": 0, "type": "uint16"}]


def device(device_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": device_id, "protocol": "modbus", "modbus": {"host": "plc"}, "tags": TAGS, **fields,
    }  # fmt: skip


def plant(*devices: dict[str, Any], poll_seconds: float = 1.0) -> PlantConfig:
    return PlantConfig.model_validate(
        {"plant_id": "test", "poll_seconds": poll_seconds, "devices": list(devices)}
    )


class Exposed:
    """Stands in for serve_writes: which write services are reachable right now."""

    def __init__(self) -> None:
        self.services: dict[str, WriteService] = {}

    async def __call__(self, service: WriteService) -> Exposed.Subscription:
        self.services[service.device_id] = service
        return Exposed.Subscription(self, service.device_id)

    class Subscription:
        def __init__(self, exposed: Exposed, device: str) -> None:
            self._exposed, self._device = exposed, device

        async def unsubscribe(self) -> None:
            del self._exposed.services[self._device]


class CrashOnce(RecordingSink):
    """A sink with a bug that fails the first status it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    async def publish_status(self, status: DeviceStatus) -> None:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("a bug in the sink")
        await super().publish_status(status)


class Rig:
    def __init__(self, sink: RecordingSink | None = None) -> None:
        self.sink = sink or RecordingSink()
        self.exposed = Exposed()
        self.drivers: dict[str, list[FakeDriver]] = {}

    def make_driver(self, config: DeviceConfig) -> FakeDriver:
        driver = FakeDriver({"speed": 1200})
        self.drivers.setdefault(config.id, []).append(driver)
        return driver

    def fleet(self, config: PlantConfig, restart_base: float = 0.01) -> Fleet:
        return Fleet(
            config, self.sink, self.exposed, make_driver=self.make_driver,
            restart_base=restart_base, restart_cap=restart_base * 5, rng=random.Random(7),
        )  # fmt: skip


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def all_connected(fleet: Fleet, *devices: str) -> None:
    async def probe() -> None:
        for device_id in devices:
            supervisor = fleet.supervisor(device_id)
            assert supervisor is not None
            assert supervisor.state is ConnectionState.CONNECTED

    await eventually(probe)


async def test_each_device_gets_its_supervisor_and_write_service(rig: Rig) -> None:
    a, b = unique("press"), unique("oven")
    fleet = rig.fleet(plant(device(a), device(b)))
    await fleet.start()
    try:
        await all_connected(fleet, a, b)
        assert set(rig.exposed.services) == {a, b}
        reply = await rig.exposed.services[a].submit_write(
            WriteRequest(tag="speed", command_id="c", op="read")
        )
        assert (reply.ok, reply.read_back) == (True, 1200)
    finally:
        await fleet.stop()
    assert rig.exposed.services == {}
    assert not any(driver.connected for drivers in rig.drivers.values() for driver in drivers)


class AllAtOnce(Exposed):
    """Write services whose unsubscribe returns only once every device's has been asked for."""

    def __init__(self, devices: int) -> None:
        super().__init__()
        self.devices = devices
        self.asked = 0
        self.everyone_asked = asyncio.Event()

    async def __call__(self, service: WriteService) -> Exposed.Subscription:
        await super().__call__(service)
        return AllAtOnce.Subscription(self, service.device_id)

    class Subscription(Exposed.Subscription):
        def __init__(self, exposed: AllAtOnce, device: str) -> None:
            super().__init__(exposed, device)
            self._all = exposed

        async def unsubscribe(self) -> None:
            self._all.asked += 1
            if self._all.asked == self._all.devices:
                self._all.everyone_asked.set()
            await self._all.everyone_asked.wait()
            await super().unsubscribe()


async def test_stop_stops_every_device_at_once(rig: Rig) -> None:
    devices = [unique("press") for _ in range(5)]
    rig.exposed = exposed = AllAtOnce(len(devices))
    fleet = rig.fleet(plant(*(device(d) for d in devices)))
    await fleet.start()
    await all_connected(fleet, *devices)
    # One device after another, the first unsubscribe would wait for the others forever.
    async with asyncio.timeout(DEADLINE):
        await fleet.stop()
    assert exposed.services == {}
    assert not any(driver.connected for drivers in rig.drivers.values() for driver in drivers)


async def test_apply_touches_only_what_changed(rig: Rig) -> None:
    kept, edited, dropped, new = (unique(name) for name in ("kept", "edited", "dropped", "new"))
    fleet = rig.fleet(plant(device(kept), device(edited), device(dropped)))
    await fleet.start()
    try:
        await all_connected(fleet, kept, edited, dropped)
        kept_supervisor = fleet.supervisor(kept)

        change = await fleet.apply(plant(device(kept), device(edited, area="packing"), device(new)))

        assert change == FleetChange(added=(new,), removed=(dropped,), changed=(edited,))
        await all_connected(fleet, kept, edited, new)
        assert fleet.supervisor(kept) is kept_supervisor
        assert fleet.supervisor(dropped) is None
        assert len(rig.drivers[edited]) == 2  # restarted with a new connection
        assert not rig.drivers[dropped][0].connected
        assert set(rig.exposed.services) == {kept, edited, new}
        assert not await fleet.apply(
            plant(device(kept), device(edited, area="packing"), device(new))
        )
    finally:
        await fleet.stop()


async def test_a_plant_setting_restarts_only_the_devices_that_inherit_it(rig: Rig) -> None:
    inherits, own = unique("inherits"), unique("own")
    fleet = rig.fleet(plant(device(inherits), device(own, poll_seconds=0.5)))
    await fleet.start()
    try:
        change = await fleet.apply(
            plant(device(inherits), device(own, poll_seconds=0.5), poll_seconds=2.0)
        )
        assert change == FleetChange(changed=(inherits,))
    finally:
        await fleet.stop()


async def test_a_crashed_supervisor_is_restarted_and_says_why() -> None:
    rig = Rig(CrashOnce())
    crashing = unique("press")
    fleet = rig.fleet(plant(device(crashing)))
    await fleet.start()
    try:
        await all_connected(fleet, crashing)
        (member,) = list(fleet)
        assert member.restarts == 1
        stopped = [s for s in rig.sink.statuses if s.state is ConnectionState.STOPPED]
        assert "supervisor crashed: RuntimeError('a bug in the sink')" in stopped[0].detail
        assert "restart 1 in" in stopped[0].detail
    finally:
        await fleet.stop()


async def test_a_write_while_the_supervisor_restarts_is_refused_as_offline() -> None:
    rig = Rig(CrashOnce())
    device_id = unique("press")
    fleet = rig.fleet(plant(device(device_id)), restart_base=60.0)  # the restart waits
    await fleet.start()
    try:
        (member,) = list(fleet)

        async def crashed() -> None:
            assert member.restarts == 1

        await eventually(crashed)
        reply = await rig.exposed.services[device_id].submit_write(
            WriteRequest(tag="speed", command_id="c", op="read")
        )
        assert reply.kind is WriteErrorKind.DEVICE_OFFLINE
        assert "restarting" in reply.error
    finally:
        await fleet.stop()
