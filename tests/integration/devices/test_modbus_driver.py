"""ModbusDriver against the real pymodbus simulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes

from devices.device_errors import DeviceConnectionError, DeviceRequestError, WriteOutcomeUnknown
from devices.driver import BAD_READING, Reading
from devices.drivers.modbus import ModbusDriver
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality, WriteErrorKind, WriteRequest
from plantfile.protocols.modbus import ModbusDevice, ModbusTag
from simulators.modbus_server import PRESS_REGISTERS, ModbusSimulator
from simulators.model import PressModel
from simulators.write_log import read_write_log
from tests.integration.devices.conftest import GHOST, STEADY_RPM, press_config
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

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


async def test_a_read_failing_at_every_poll_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    without_count = tuple(r for r in PRESS_REGISTERS if r.tag.name != "produced_count")
    press = press_config(port)
    produced = tag(press, "produced_count")
    driver = ModbusDriver(press)
    caplog.set_level(logging.INFO, logger="devices.drivers.modbus")
    try:
        async with ModbusSimulator(port=port, registers=without_count):  # a PLC program lacking it
            await driver.connect()
            polls = [await driver.read([produced]) for _ in range(50)]
        assert polls == [{"produced_count": BAD_READING}] * 50
        async with ModbusSimulator(port=port):  # the program that has it, downloaded
            await driver.connect()
            assert (await driver.read([produced]))["produced_count"].quality is Quality.GOOD
    finally:
        await driver.close()

    where = f"device {press.id}: read of tags produced_count"
    started, ended = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert started == (logging.WARNING, f"{where}: read holding 5+2: exception code 2")
    assert ended[0] == logging.INFO
    assert ended[1].startswith(f"{where} is over after ")
    assert ended[1].endswith(", 50 times; last: read holding 5+2: exception code 2")


# Longer than press_config's request timeout (0.5 s): the device applies the write
# at once and answers only after the driver has stopped waiting.
LATE_REPLY_SECONDS = 1.0


async def test_a_write_answered_too_late_is_an_unknown_outcome_though_the_device_applied_it(
    tmp_path: Path,
) -> None:
    write_log = tmp_path / "writes.jsonl"
    async with ModbusSimulator(
        port=free_port(), write_log=write_log, write_reply_delay_seconds=LATE_REPLY_SECONDS
    ) as simulator:
        press = press_config(simulator.port)
        sink = RecordingSink()
        policy = SupervisionPolicy(poll_seconds=0.1)
        supervisor = DeviceSupervisor(press, ModbusDriver(press), sink, policy=policy)
        task = asyncio.create_task(supervisor.run())
        try:

            async def connected() -> None:
                assert supervisor.state is ConnectionState.CONNECTED

            await eventually(connected)
            request = WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=1717)
            reply = await supervisor.submit_write(request)

            # The device has it: "write_failed" would tell the operator nothing was written.
            assert [(w.tag, w.value) for w in read_write_log(write_log)] == [
                ("speed_setpoint", 1717)
            ]
            assert (reply.ok, reply.kind, reply.error) == (
                False,
                WriteErrorKind.OUTCOME_UNKNOWN,
                "outcome unknown: write speed_setpoint: no response",
            )

            async def polled_on_the_same_connection() -> None:
                # pymodbus drops the late answer (an old transaction id): polls read again.
                samples = {s.tag: s for s in sink.batches[-1].samples}
                assert (samples["speed_setpoint"].value, samples["speed_setpoint"].quality) == (
                    1717,
                    Quality.GOOD,
                )

            await eventually(polled_on_the_same_connection)
            assert supervisor.counters.reconnects == 0  # late is not lost
        finally:
            task.cancel()
            await asyncio.wait({task})


@pytest.mark.parametrize(
    "code",
    [
        ExcCodes.DEVICE_FAILURE,
        ExcCodes.ACKNOWLEDGE,
        ExcCodes.MEMORY_PARITY_ERROR,
        ExcCodes.GATEWAY_NO_RESPONSE,
    ],
)
async def test_an_exception_code_that_is_no_refusal_leaves_a_write_unknown(code: ExcCodes) -> None:
    model = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
    # Applied, then answered with a code that does not say so; codes 2 and 3 are refusals
    # (test_the_device_refuses_out_of_range_and_read_only_writes).
    async with ModbusSimulator(port=free_port(), model=model, write_exception=code) as simulator:
        press = press_config(simulator.port)
        driver = ModbusDriver(press)
        await driver.connect()
        try:
            with pytest.raises(WriteOutcomeUnknown, match=f"exception code {int(code)}$"):
                await driver.write(tag(press, "speed_setpoint"), 2100)
            assert driver.connected
        finally:
            await driver.close()
    assert model.speed_setpoint == 2100
