"""A real Modbus simulator per test, on a free port, and the demo press configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from devices.driver import Reading
from devices.nats_bridge import NatsTelemetrySink, OutboxForwarder, forwarding
from devices.outbox import Outbox
from domain.messages import Quality
from plantfile.loader import load_plant_file
from plantfile.protocols.modbus import ModbusDevice, ModbusTag
from simulators.modbus_server import ModbusSimulator
from simulators.model import PressModel
from tests.support import free_port, unique

DEMO_PLANT = Path(__file__).parents[3] / "config" / "demo-plant.yaml"
STEADY_RPM = 1500


@pytest.fixture
async def simulator() -> AsyncIterator[ModbusSimulator]:
    # Already at its setpoint, so the speed it serves is known exactly.
    press = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
    async with ModbusSimulator(port=free_port(), model=press) as sim:
        yield sim


@pytest.fixture
async def press() -> AsyncIterator[ModbusSimulator]:
    """A running press whose motor temperature stays where the test puts it."""
    model = PressModel(
        running=True,
        speed_setpoint=STEADY_RPM,
        speed=STEADY_RPM,
        motor_temperature=40.0,
        thermal_time_constant_seconds=1e9,
    )
    async with ModbusSimulator(port=free_port(), model=model) as sim:
        yield sim


@pytest.fixture
async def nats_sink(nc: NatsClient, tmp_path: Path) -> AsyncIterator[NatsTelemetrySink]:
    """A sink into an outbox of the test's own, forwarded to the machine's NATS."""
    outbox = Outbox.open(tmp_path / "buffer", max_bytes=16 * 1024 * 1024)
    try:
        async with forwarding(OutboxForwarder(outbox, nc)) as sink:
            yield sink
    finally:
        outbox.close()


def press_config(port: int, *extra_tags: ModbusTag) -> ModbusDevice:
    """The demo plant's press under a fresh id, pointed at a test simulator."""
    press = next(d for d in load_plant_file(DEMO_PLANT).devices if isinstance(d, ModbusDevice))
    modbus = press.modbus.model_copy(update={"port": port, "timeout_seconds": 0.5})
    return ModbusDevice.model_validate(
        {
            **press.model_dump(),
            "id": unique("press"),
            "modbus": modbus.model_dump(),
            "tags": [tag.model_dump() for tag in (*press.tags, *extra_tags)],
        }
    )


GHOST = ModbusTag(name="ghost", address=100, type="uint16", description="not in the simulator")


def assert_plausible_press(
    readings: Mapping[str, Reading], model: PressModel, steady_rpm: int
) -> None:
    """Every tag of a press at ``steady_rpm`` read good, each value one the model allows."""
    assert readings["running"] == Reading(True, Quality.GOOD)
    assert readings["speed_setpoint"] == Reading(steady_rpm, Quality.GOOD)
    assert readings["speed"] == Reading(float(steady_rpm), Quality.GOOD)
    temperature = readings["motor_temperature"]
    assert temperature.quality is Quality.GOOD
    assert isinstance(temperature.value, float)
    assert 20.0 <= temperature.value <= model.motor_temperature + 1
    count = readings["produced_count"]
    assert count.quality is Quality.GOOD
    assert isinstance(count.value, int)
    assert 0 <= count.value <= model.produced_count
