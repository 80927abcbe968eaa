"""S7Driver against the real snap7 server of the S7 simulator."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from devices.device_errors import DeviceConnectionError, DeviceRequestError
from devices.driver import BAD_READING, Reading
from devices.drivers.s7 import S7Driver
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality, WriteReply, WriteRequest
from plantfile.protocols.s7 import S7Device, S7Tag
from simulators.model import PressModel
from simulators.s7_server import PRESS_DB, PRESS_VARIABLES, S7Simulator, serve
from tests.integration.devices.conftest import assert_plausible_press
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = pytest.mark.integration

STEADY_RPM = 1200
# Spare bits next to ``running`` (DB1.DBX0.0): memory the press's program does not use.
SPARE_LOW = S7Tag(name="spare_low", address="DB1.DBX0.1", type="bool", writable=True)
SPARE_HIGH = S7Tag(name="spare_high", address="DB1.DBX0.7", type="bool", writable=True)
GHOST = S7Tag(name="ghost", address="DB99.DBW0", type="int16", writable=True, low=0, high=1)


def press_config(port: int, *extra: S7Tag, timeout: float = 0.5) -> S7Device:
    """The simulated press's own variables as a plant file would declare them."""
    return S7Device(
        id=unique("press"),
        protocol="s7",
        s7={"host": "127.0.0.1", "port": port, "timeout_seconds": timeout},
        tags=[*(variable.tag for variable in PRESS_VARIABLES), *extra],
    )


@pytest.fixture
async def simulator() -> AsyncIterator[S7Simulator]:
    # Already at its setpoint, so the speed it serves is known exactly.
    press = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
    async with S7Simulator(port=free_port(), model=press) as sim:
        yield sim


@pytest.fixture
def press(simulator: S7Simulator) -> S7Device:
    return press_config(simulator.port, SPARE_LOW, SPARE_HIGH, GHOST)


@pytest.fixture
async def driver(press: S7Device) -> AsyncIterator[S7Driver]:
    driver = S7Driver(press)
    await driver.connect()
    yield driver
    await driver.close()


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A device that accepts TCP connections and then never answers (a hung CPU or gateway)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes handshakes; nobody ever accepts or replies
        yield listener.getsockname()[1]


def tag(config: S7Device, name: str) -> S7Tag:
    found = config.tag(name)
    assert isinstance(found, S7Tag)
    return found


def press_tags(config: S7Device) -> list[S7Tag]:
    names = {variable.tag.name for variable in PRESS_VARIABLES}
    return [t for t in config.tags if t.name in names and isinstance(t, S7Tag)]


async def test_reads_every_tag_good_and_plausible(
    driver: S7Driver, press: S7Device, simulator: S7Simulator
) -> None:
    readings = await driver.read(press_tags(press))
    assert_plausible_press(readings, simulator.model, STEADY_RPM)


async def test_a_write_reaches_the_press_and_reads_back(
    driver: S7Driver, press: S7Device, simulator: S7Simulator
) -> None:
    setpoint = tag(press, "speed_setpoint")
    await driver.write(setpoint, 1500)
    assert await driver.read([setpoint]) == {"speed_setpoint": Reading(1500, Quality.GOOD)}

    async def model_follows() -> None:
        assert simulator.model.speed_setpoint == 1500

    await eventually(model_follows, timeout=5)
    # The press then ramps to it, and the driver sees the speed rise.
    speed = tag(press, "speed")

    async def ramping() -> None:
        value = (await driver.read([speed]))["speed"].value
        assert isinstance(value, float)
        assert value > STEADY_RPM

    await eventually(ramping, timeout=5)


async def test_the_supervisor_writes_and_replies_with_the_read_back(
    press: S7Device, simulator: S7Simulator
) -> None:
    policy = SupervisionPolicy(poll_seconds=0.05, backoff_base=0.05, backoff_cap=0.2)
    supervisor = DeviceSupervisor(press, S7Driver(press), RecordingSink(), policy=policy)
    task = asyncio.create_task(supervisor.run())

    async def connected() -> None:
        assert supervisor.state is ConnectionState.CONNECTED

    async def write(name: str, value: float | bool) -> WriteReply:
        return await supervisor.submit_write(
            WriteRequest(tag=name, command_id=unique("cmd"), value=value)
        )

    try:
        await eventually(connected, timeout=5)
        assert await write("speed_setpoint", 1500) == WriteReply(
            ok=True, tag="speed_setpoint", read_back=1500
        )
        assert await write("running", False) == WriteReply(ok=True, tag="running", read_back=False)

        async def model_follows() -> None:
            assert (simulator.model.speed_setpoint, simulator.model.running) == (1500, False)

        await eventually(model_follows, timeout=5)
    finally:
        task.cancel()
        await asyncio.wait({task})


async def test_a_bit_write_leaves_the_neighbouring_bits_intact(
    driver: S7Driver, press: S7Device, simulator: S7Simulator
) -> None:
    running, low, high = tag(press, "running"), SPARE_LOW, SPARE_HIGH
    memory = simulator.memory["DB", PRESS_DB]
    await driver.write(low, True)
    await driver.write(high, True)
    assert memory[0] == 0b1000_0011
    await driver.write(running, False)
    assert memory[0] == 0b1000_0010
    await driver.write(low, False)
    assert memory[0] == 0b1000_0000
    readings = await driver.read([running, low, high])
    assert readings == {
        "running": Reading(False, Quality.GOOD),
        "spare_low": Reading(False, Quality.GOOD),
        "spare_high": Reading(True, Quality.GOOD),
    }

    async def stopped() -> None:
        assert simulator.model.running is False
        assert memory[0] == 0b1000_0000, "the press's own update keeps the spare bits"

    await eventually(stopped, timeout=5)


async def test_a_tag_in_a_missing_data_block_is_bad_and_the_rest_still_read(
    driver: S7Driver, press: S7Device, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="devices.drivers.s7"):
        readings = await driver.read(press.tags)
    assert readings["ghost"] == BAD_READING
    assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.GOOD)
    assert all(readings[t.name].quality is Quality.GOOD for t in press_tags(press))
    assert any(
        "ghost" in r.getMessage()
        and "DB99" in r.getMessage()
        and "does not exist" in r.getMessage()
        for r in caplog.records
    )
    assert driver.connected


async def test_the_cpu_refuses_a_write_to_a_missing_data_block(
    driver: S7Driver, press: S7Device
) -> None:
    with pytest.raises(DeviceRequestError, match=r"write ghost at DB99\.DBW0"):
        await driver.write(GHOST, 1)
    assert driver.connected
    assert (await driver.read([tag(press, "running")]))["running"].quality is Quality.GOOD


async def test_a_write_past_the_end_of_a_block_is_refused_and_changes_nothing() -> None:
    overhang = S7Tag(
        name="overhang", address="DB1.DBD14", type="int32", writable=True, low=0, high=1
    )
    # At rest, so nothing but the write could change the block's last bytes.
    at_rest = PressModel(running=False, produced_count=0x1234_5678)
    async with S7Simulator(port=free_port(), model=at_rest) as simulator:
        config = press_config(simulator.port, overhang)
        driver = S7Driver(config)
        await driver.connect()
        try:
            with pytest.raises(DeviceRequestError, match=r"write overhang at DB1\.DBD14"):
                await driver.write(overhang, -1)
            assert simulator.memory["DB", PRESS_DB][12:] == bytes.fromhex("12345678")
            count = await driver.read([tag(config, "produced_count")])
            assert count == {"produced_count": Reading(0x1234_5678, Quality.GOOD)}
        finally:
            await driver.close()


async def test_a_stopped_cpu_is_a_connection_error_and_a_restarted_one_reconnects(
    driver: S7Driver, press: S7Device, simulator: S7Simulator
) -> None:
    await simulator.stop()
    with pytest.raises(DeviceConnectionError):
        await driver.read(press_tags(press))
    assert not driver.connected
    with pytest.raises(DeviceConnectionError, match="not connected"):
        await driver.read(press_tags(press))
    with pytest.raises(DeviceConnectionError):
        await driver.connect()

    await simulator.start()

    async def reconnects() -> None:
        try:
            await driver.connect()
        except DeviceConnectionError as exc:
            raise AssertionError(exc.reason) from exc

    await eventually(reconnects, timeout=5)
    readings = await driver.read([tag(press, "speed_setpoint")])
    assert readings == {"speed_setpoint": Reading(STEADY_RPM, Quality.GOOD)}


async def test_an_unreachable_cpu_is_a_connection_error() -> None:
    driver = S7Driver(press_config(free_port()))
    with pytest.raises(DeviceConnectionError, match=r"connect to 127\.0\.0\.1"):
        await driver.connect()
    assert not driver.connected
    await driver.close()


async def test_a_stalled_cpu_blocks_neither_the_loop_nor_another_device(
    stalled_port: int, driver: S7Driver, press: S7Device
) -> None:
    stalled = S7Driver(press_config(stalled_port, timeout=2.0))
    connecting = asyncio.create_task(stalled.connect())
    try:
        # While the stalled device's thread is stuck in its connect, the loop keeps
        # turning and the other device is read, good, again and again.
        for _ in range(5):
            readings = await driver.read(press_tags(press))
            assert all(reading.quality is Quality.GOOD for reading in readings.values())
        assert not connecting.done(), "the stalled connect is still waiting for its answer"
        with pytest.raises(DeviceConnectionError, match="no answer in 2 s"):
            await connecting
    finally:
        await stalled.close()


async def test_close_frees_a_thread_stuck_on_a_stalled_cpu(stalled_port: int) -> None:
    config = press_config(stalled_port, timeout=30.0)
    stalled = S7Driver(config)
    connecting = asyncio.create_task(stalled.connect())

    async def stuck() -> None:
        assert any(t.name.startswith(f"s7-{config.id}") for t in threading.enumerate())

    await eventually(stuck, timeout=2)
    # The supervisor is cancelled mid-connect, then closes its driver.
    connecting.cancel()
    await asyncio.wait({connecting})
    await stalled.close()

    async def thread_gone() -> None:
        assert not any(t.name.startswith(f"s7-{config.id}") for t in threading.enumerate())

    await eventually(thread_gone, timeout=2)


async def test_serve_runs_the_demo_press_until_cancelled() -> None:
    port = free_port()
    serving = asyncio.create_task(serve(port=port))
    config = press_config(port)
    driver = S7Driver(config)

    async def answers() -> None:
        try:
            await driver.connect()
        except DeviceConnectionError as exc:
            raise AssertionError(exc.reason) from exc

    try:
        await eventually(answers, timeout=5)
        readings = await driver.read(config.tags)
        assert readings["running"] == Reading(True, Quality.GOOD)
        assert readings["speed_setpoint"] == Reading(1200, Quality.GOOD)
    finally:
        await driver.close()
        serving.cancel()
        await asyncio.wait({serving})
    with pytest.raises(DeviceConnectionError):
        await driver.connect()
