"""ModbusDriver against the real pymodbus simulator."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from devices.device_errors import DeviceConnectionError, DeviceRequestError
from devices.driver import BAD_READING, Reading
from devices.drivers.modbus import ModbusDriver
from domain.messages import Quality
from plantfile.protocols.modbus import ModbusDevice, ModbusTag
from simulators.modbus_server import ModbusSimulator
from tests.integration.devices.conftest import GHOST, STEADY_RPM, press_config
from tests.support import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def press(simulator: ModbusSimulator) -> ModbusDevice:
    return press_config(simulator.port, GHOST)


@pytest.fixture
async def driver(press: ModbusDevice) -> AsyncIterator[ModbusDriver]:
    driver = ModbusDriver(press)
    await driver.connect()
    yield driver
    await driver.close()


def tag(config: ModbusDevice, name: str) -> ModbusTag:
    found = config.tag(name)
    assert isinstance(found, ModbusTag)
    return found


async def test_reads_every_tag_with_one_request_per_contiguous_block(
    driver: ModbusDriver, press: ModbusDevice, simulator: ModbusSimulator
) -> None:
    readings = await driver.read([t for t in press.tags if t.name != "ghost"])
    assert readings["running"] == Reading(True, Quality.GOOD)
    assert readings["speed"] == Reading(STEADY_RPM, Quality.GOOD)
    assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.GOOD)
    temperature = readings["motor_temperature"]
    assert temperature.quality is Quality.GOOD
    assert isinstance(temperature.value, float)
    assert 20.0 <= temperature.value <= simulator.model.motor_temperature + 1
    assert readings["produced_count"].quality is Quality.GOOD


async def test_an_address_the_device_lacks_is_bad_and_the_rest_still_read(
    driver: ModbusDriver, press: ModbusDevice, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="devices.drivers.modbus"):
        readings = await driver.read(press.tags)
    assert readings["ghost"] == BAD_READING
    assert readings["speed"] == Reading(STEADY_RPM, Quality.GOOD)
    assert any(
        "ghost" in r.getMessage() and "exception code 2" in r.getMessage() for r in caplog.records
    )
    assert driver.connected


async def test_writes_change_the_model_behind_the_registers(
    driver: ModbusDriver, press: ModbusDevice, simulator: ModbusSimulator
) -> None:
    await driver.write(tag(press, "speed_setpoint"), 2200)
    await driver.write(tag(press, "running"), False)
    assert (simulator.model.speed_setpoint, simulator.model.running) == (2200, False)
    readings = await driver.read([tag(press, "speed_setpoint"), tag(press, "running")])
    assert readings == {
        "speed_setpoint": Reading(2200, Quality.GOOD),
        "running": Reading(False, Quality.GOOD),
    }


async def test_the_device_refuses_out_of_range_and_read_only_writes(
    driver: ModbusDriver, press: ModbusDevice, simulator: ModbusSimulator
) -> None:
    with pytest.raises(DeviceRequestError, match="exception code 3"):
        await driver.write(tag(press, "speed_setpoint"), 4000)
    speed = tag(press, "speed").model_copy(update={"writable": True})
    with pytest.raises(DeviceRequestError, match="exception code 2"):
        await driver.write(speed, 10)
    assert simulator.model.speed_setpoint == STEADY_RPM


async def test_an_unreachable_device_is_a_connection_error() -> None:
    press = press_config(free_port())
    with pytest.raises(DeviceConnectionError, match="cannot connect"):
        await ModbusDriver(press).connect()


async def test_a_stopped_server_is_a_connection_error(
    driver: ModbusDriver, press: ModbusDevice, simulator: ModbusSimulator
) -> None:
    await simulator.stop()
    with pytest.raises(DeviceConnectionError):
        await driver.read(press.tags)
    assert not driver.connected
