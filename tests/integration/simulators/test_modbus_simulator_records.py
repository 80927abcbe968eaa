"""What the Modbus simulator records for fault drills: its reads counted, its writes logged.

A drill checks the plant core against the device's own record: every poll of
``read_sequence`` answers the next number, so a lost or repeated sample shows
as a gap or a repeat in the history; every write the simulator applied is a
line of its write log, the ground truth of which commands reached the PLC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from devices.device_errors import DeviceRequestError
from devices.drivers.modbus import ModbusDriver
from plantfile.protocols.modbus import ModbusDevice, ModbusTag
from simulators.modbus_server import READ_SEQUENCE, ModbusSimulator
from simulators.write_log import read_write_log
from tests.integration.devices.conftest import press_config
from tests.support import eventually, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def write_log(tmp_path: Path) -> Path:
    return tmp_path / "writes.jsonl"


@pytest.fixture
async def simulator(write_log: Path) -> AsyncIterator[ModbusSimulator]:
    async with ModbusSimulator(port=free_port(), write_log=write_log) as sim:
        yield sim


async def connected(press: ModbusDevice) -> ModbusDriver:
    driver = ModbusDriver(press)
    await driver.connect()
    return driver


def tag(press: ModbusDevice, name: str) -> ModbusTag:
    found = press.tag(name)
    assert isinstance(found, ModbusTag)
    return found


async def test_every_read_of_the_sequence_answers_the_next_number(
    simulator: ModbusSimulator,
) -> None:
    press = press_config(simulator.port, READ_SEQUENCE.tag)
    driver = await connected(press)
    try:
        # A poll reads the whole press in one request; each counts once.
        numbers = [(await driver.read(press.tags))["read_sequence"].value for _ in range(5)]
        assert numbers == [1, 2, 3, 4, 5]
        # A read that leaves the sequence out does not count.
        await driver.read([tag(press, "speed")])
        assert (await driver.read([tag(press, "read_sequence")]))["read_sequence"].value == 6
    finally:
        await driver.close()


async def test_each_applied_write_is_a_line_of_the_log_and_a_refused_one_is_not(
    simulator: ModbusSimulator, write_log: Path
) -> None:
    press = press_config(simulator.port)
    driver = await connected(press)
    try:
        await driver.write(tag(press, "speed_setpoint"), 1717)
        await driver.write(tag(press, "running"), False)
        with pytest.raises(DeviceRequestError):
            await driver.write(tag(press, "speed_setpoint"), 3001)  # above its limit
    finally:
        await driver.close()
    writes = read_write_log(write_log)
    assert [(w.tag, w.value) for w in writes] == [("speed_setpoint", 1717), ("running", False)]
    assert all(isinstance(w.time, datetime) and w.time.tzinfo for w in writes)
    assert writes[0].time <= writes[1].time
    # One JSON object a line, for any reader.
    first = json.loads(write_log.read_bytes().splitlines()[0])  # noqa: ASYNC240 - a small file
    assert first == {"time": first["time"], "tag": "speed_setpoint", "value": 1717}


async def test_a_slow_reply_comes_after_the_write_is_applied_and_logged(
    write_log: Path,
) -> None:
    async with ModbusSimulator(
        port=free_port(), write_log=write_log, write_reply_delay_seconds=30
    ) as simulator:
        press = press_config(simulator.port)
        # The driver waits longer than the test: the reply is what is held back.
        slow = press.modbus.model_copy(update={"timeout_seconds": 60})
        driver = await connected(press.model_copy(update={"modbus": slow}))
        writing = asyncio.create_task(driver.write(tag(press, "speed_setpoint"), 1234))
        try:

            async def applied() -> None:
                assert [(w.tag, w.value) for w in read_write_log(write_log)] == [
                    ("speed_setpoint", 1234)
                ]
                assert simulator.model.speed_setpoint == 1234

            await eventually(applied)
            # Applied and logged, and the device has not answered yet.
            assert not writing.done()
        finally:
            writing.cancel()
            await asyncio.wait({writing})
            await driver.close()


def test_the_log_of_a_simulator_that_never_wrote_is_empty(tmp_path: Path) -> None:
    assert read_write_log(tmp_path / "absent.jsonl") == []
