"""EnipDriver against the real cpppo EtherNet/IP server, one simulator per test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from pycomm3 import LogixDriver
from pycomm3.exceptions import PycommError
from pycomm3.tag import Tag

from devices.device_errors import DeviceConnectionError, DeviceRequestError
from devices.driver import BAD_READING, Reading
from devices.drivers.enip import EnipDriver, LogixClient
from domain.messages import Quality
from plantfile.protocols.enip import EnipDevice, EnipTag, check_declarations
from simulators.enip_server import PRESS_TAGS, EnipSimulator, WriteRequest
from simulators.model import PressModel
from tests.integration.devices.conftest import assert_plausible_press
from tests.support import eventually, free_port, unique

pytestmark = pytest.mark.integration

T = TypeVar("T")

STEADY_RPM = 1200  # the press runs at its setpoint, so the speed it serves is known exactly
GHOST = EnipTag(name="ghost", tag="Press.Ghost", type="int32", description="not in the controller")


@pytest.fixture
async def simulator() -> AsyncIterator[EnipSimulator]:
    press = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
    async with EnipSimulator(port=free_port(), model=press) as sim:
        yield sim


def press_config(port: int, *extra_tags: EnipTag, timeout: float = 0.5) -> EnipDevice:
    """The simulator's press as a plant file declares it, plus ``extra_tags``."""
    return EnipDevice.model_validate(
        {
            "id": unique("press"),
            "protocol": "enip",
            "enip": {"host": "127.0.0.1", "port": port, "timeout_seconds": timeout},
            "tags": [tag.model_dump() for tag in (*(p.tag for p in PRESS_TAGS), *extra_tags)],
        }
    )


@pytest.fixture
def press(simulator: EnipSimulator) -> EnipDevice:
    return press_config(simulator.port)


@pytest.fixture
async def driver(press: EnipDevice) -> AsyncIterator[EnipDriver]:
    driver = EnipDriver(press)
    await driver.connect()
    yield driver
    await driver.close()


def tag(config: EnipDevice, name: str) -> EnipTag:
    found = config.tag(name)
    assert isinstance(found, EnipTag)
    return found


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking pycomm3 call off the event loop, which serves the simulator's ticks."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, call)


async def test_reads_every_tag_good_and_plausible(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    readings = await driver.read(press.tags)
    assert_plausible_press(readings, simulator.model, STEADY_RPM)
    assert simulator.write_requests == ()


async def test_a_write_reaches_the_model_and_reads_back(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    await driver.write(tag(press, "speed_setpoint"), 1500)
    await driver.write(tag(press, "running"), False)
    readings = await driver.read([tag(press, "speed_setpoint"), tag(press, "running")])
    assert readings == {
        "speed_setpoint": Reading(1500, Quality.GOOD),
        "running": Reading(False, Quality.GOOD),
    }

    async def applied() -> None:
        assert (simulator.model.speed_setpoint, simulator.model.running) == (1500, False)

    await eventually(applied, timeout=5)


async def test_a_single_write_is_sent_once(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    await driver.write(tag(press, "speed_setpoint"), 1500)
    assert simulator.write_requests == (WriteRequest("Press.SpeedSetpoint", 1, (1500,)),)


async def test_pycomm3_alone_appends_a_second_copy_to_a_single_write(
    press: EnipDevice, simulator: EnipSimulator
) -> None:
    """Why LogixClient corrects pycomm3's single writes: without it the request's data
    holds the value, then the same Write Tag request again, and the write is refused."""

    class Uncorrected(LogixClient):
        _write_build_single_request = LogixDriver._write_build_single_request

    def write_once() -> Tag:
        client = Uncorrected(press.enip, check_declarations(press.tags))
        client.open()  # type: ignore[no-untyped-call]  # unannotated in pycomm3
        try:
            result = client.write("Press.SpeedSetpoint", 1500)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        assert isinstance(result, Tag)
        return result

    result = await in_thread(write_once)

    assert result.error is not None
    (request,) = simulator.write_requests
    assert (request.tag, request.elements) == ("Press.SpeedSetpoint", 1)
    assert request.values[0] == 1500
    trailing = struct.pack(f"<{len(request.values) - 1}i", *request.values[1:])
    assert trailing[2] == 0x4D  # after a sequence number, the Write Tag service again...
    assert b"SpeedSetpoint" in trailing  # ...to the same tag
    assert simulator.model.speed_setpoint == STEADY_RPM


async def test_the_controller_offers_no_tag_upload_so_tags_are_declared(
    simulator: EnipSimulator,
) -> None:
    """Why LogixClient opens with ``init_tags=False``: pycomm3's default connect uploads
    the tag list (Get Instance Attribute List), which the simulated controller lacks."""

    def open_with_upload() -> None:
        client = LogixDriver(f"127.0.0.1:{simulator.port}/0")
        try:
            client.open()  # type: ignore[no-untyped-call]  # unannotated in pycomm3
        finally:
            with contextlib.suppress(PycommError):  # the controller has dropped the session
                client.close()  # type: ignore[no-untyped-call]

    with pytest.raises(PycommError, match="attribute list"):
        await in_thread(open_with_upload)


async def test_a_tag_the_controller_lacks_is_bad_and_the_rest_still_read(
    simulator: EnipSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    press = press_config(simulator.port, GHOST)
    driver = EnipDriver(press)
    await driver.connect()
    try:
        with caplog.at_level(logging.WARNING, logger="devices.drivers.enip"):
            readings = await driver.read(press.tags)
        assert driver.connected
    finally:
        await driver.close()
    assert readings["ghost"] == BAD_READING
    assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.GOOD)
    assert all(readings[t.name].quality is Quality.GOOD for t in press.tags if t.name != "ghost")
    assert any(
        "ghost" in r.getMessage() and "Press.Ghost" in r.getMessage() and "(05" in r.getMessage()
        for r in caplog.records
    )


async def test_a_tag_read_as_another_type_than_declared_is_bad(
    simulator: EnipSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    as_integer = EnipTag(name="speed_as_dint", tag="Press.Speed", type="int32")
    press = press_config(simulator.port).model_copy(update={"tags": [as_integer]})
    driver = EnipDriver(press)
    await driver.connect()
    try:
        with caplog.at_level(logging.WARNING, logger="devices.drivers.enip"):
            readings = await driver.read([as_integer])
    finally:
        await driver.close()
    assert readings == {"speed_as_dint": BAD_READING}
    assert any("holds REAL" in r.getMessage() for r in caplog.records)


async def test_a_write_of_the_wrong_type_is_refused(
    simulator: EnipSimulator, press: EnipDevice
) -> None:
    as_real = tag(press, "speed_setpoint").model_copy(update={"type": "float32"})
    driver = EnipDriver(press.model_copy(update={"tags": [as_real]}))
    await driver.connect()
    try:
        with pytest.raises(DeviceRequestError, match="2107"):
            await driver.write(as_real, 1500.0)
        assert driver.connected
    finally:
        await driver.close()
    assert simulator.model.speed_setpoint == STEADY_RPM


async def test_the_controller_refuses_out_of_range_and_read_only_writes(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    with pytest.raises(DeviceRequestError, match="invalid attribute value"):
        await driver.write(tag(press, "speed_setpoint"), 4000)
    speed = tag(press, "speed").model_copy(update={"writable": True})
    with pytest.raises(DeviceRequestError, match="not settable"):
        await driver.write(speed, 10.0)
    assert driver.connected
    readings = await driver.read([tag(press, "speed_setpoint")])
    assert readings == {"speed_setpoint": Reading(STEADY_RPM, Quality.GOOD)}
    assert simulator.model.speed_setpoint == STEADY_RPM


async def test_an_unreachable_device_is_a_connection_error() -> None:
    driver = EnipDriver(press_config(free_port()))
    with pytest.raises(DeviceConnectionError, match="cannot connect"):
        await driver.connect()
    assert not driver.connected


async def test_a_stopped_server_is_a_connection_error(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    await simulator.stop()
    with pytest.raises(DeviceConnectionError, match="connection lost"):
        await driver.read(press.tags)
    assert not driver.connected
    with pytest.raises(DeviceConnectionError, match="not connected"):
        await driver.read(press.tags)


async def test_a_restarted_server_takes_a_new_connection_within_5_s(
    driver: EnipDriver, press: EnipDevice, simulator: EnipSimulator
) -> None:
    await driver.write(tag(press, "speed_setpoint"), 1500)
    await simulator.stop()
    with pytest.raises(DeviceConnectionError):
        await driver.read(press.tags)
    await simulator.start()
    await asyncio.wait_for(driver.connect(), timeout=5)
    assert driver.connected
    readings = await driver.read([tag(press, "speed_setpoint")])
    assert readings == {"speed_setpoint": Reading(1500, Quality.GOOD)}  # the model kept its state


async def test_a_stalled_device_holds_only_its_own_thread(
    driver: EnipDriver, press: EnipDevice
) -> None:
    # A listener that never accepts: the connection opens, no reply ever comes.
    with socket.create_server(("127.0.0.1", 0)) as stalled_listener:
        stalled = EnipDriver(press_config(stalled_listener.getsockname()[1], timeout=1.0))
        connecting = asyncio.create_task(stalled.connect())
        try:
            # The loop keeps turning: the healthy device is read while the other stalls.
            readings = await driver.read(press.tags)
            assert not connecting.done()  # the healthy device answered while the other stalled
            assert all(r.quality is Quality.GOOD for r in readings.values())
            workers = [t.name for t in threading.enumerate() if t.name.startswith("enip-press-")]
            assert len(workers) == 2  # one worker thread per driver
            with pytest.raises(DeviceConnectionError, match="cannot connect"):
                await connecting
        finally:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)


async def test_one_simulated_controller_per_process(simulator: EnipSimulator) -> None:
    with pytest.raises(RuntimeError, match="one controller per process"):
        await EnipSimulator(port=free_port()).start()
    assert simulator.write_requests == ()
