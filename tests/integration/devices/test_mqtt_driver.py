"""MqttDriver against the machine's Mosquitto broker and the MQTT press simulator.

Every test works under its own topic prefix, so tests never see each other's
messages on the shared broker, and forgets its retained messages afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from devices.device_errors import DeviceConnectionError, DeviceRequestError
from devices.driver import BAD_READING, Reading
from devices.drivers.mqtt import MqttDriver
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality, WriteErrorKind, WriteRequest
from plantfile.protocols.mqtt import MqttConnection, MqttDevice, MqttTag
from simulators.model import PressModel
from simulators.mqtt_sensor import MqttSensorSimulator, press_tags
from tests.private_services import private_mosquitto
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = pytest.mark.integration

BROKER_HOST, BROKER_PORT = "127.0.0.1", 1883
STEADY_RPM = 1200
LOGGER = "devices.drivers.mqtt"
# A bound on a wait that must end: a guard against a hang, far above any normal wait.
HANG_GUARD_SECONDS = 30.0


@pytest.fixture
def prefix() -> str:
    return unique("plantcore-test")


@pytest.fixture
async def simulator(prefix: str) -> AsyncIterator[MqttSensorSimulator]:
    # Already at its setpoint, so the speed it publishes is known exactly.
    press = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
    sim = MqttSensorSimulator(host=BROKER_HOST, port=BROKER_PORT, prefix=prefix, model=press)
    async with sim:
        yield sim
    await forget_retained(sim.status_topic, sim.state_topic)


def press_device(prefix: str, **connection: Any) -> MqttDevice:
    """The simulator's press as a plant file would declare it, under a fresh device id."""
    settings = {
        "host": BROKER_HOST,
        "port": BROKER_PORT,
        "status_topic": f"{prefix}/press/status",
        "timeout_seconds": 2.0,
        **connection,
    }
    return MqttDevice(
        id=unique("sensor"),
        protocol="mqtt",
        mqtt=MqttConnection.model_validate(settings),
        tags=press_tags(prefix),
    )


@pytest.fixture
def press(prefix: str) -> MqttDevice:
    return press_device(prefix, staleness_seconds=5.0)


@pytest.fixture
async def driver(press: MqttDevice) -> AsyncIterator[MqttDriver]:
    driver = MqttDriver(press)
    await driver.connect()
    yield driver
    await driver.close()


def tag(config: MqttDevice, name: str) -> MqttTag:
    found = config.tag(name)
    assert isinstance(found, MqttTag)
    return found


async def forget_retained(*topics: str) -> None:
    """An empty retained payload deletes a topic's retained message on the broker."""
    async with aiomqtt.Client(BROKER_HOST, BROKER_PORT) as client:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


def all_with(
    quality: Quality, driver: MqttDriver, config: MqttDevice
) -> Callable[[], Awaitable[dict[str, Reading]]]:
    """A probe for :func:`eventually`: every tag read with ``quality``."""

    async def probe() -> dict[str, Reading]:
        readings = await driver.read(config.tags)
        assert {name: r.quality for name, r in readings.items()} == {
            t.name: quality for t in config.tags
        }
        return readings

    return probe


def warnings_about(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    lines = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]
    return [line for line in lines if all(word in line for word in words)]


async def test_reads_every_tag_good_with_the_press_values(
    driver: MqttDriver, press: MqttDevice, simulator: MqttSensorSimulator
) -> None:
    readings = await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    assert readings["running"] == Reading(True, Quality.GOOD)
    assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.GOOD)
    assert readings["speed"] == Reading(float(STEADY_RPM), Quality.GOOD)
    temperature = readings["motor_temperature"].value
    assert isinstance(temperature, float)
    assert 20.0 <= temperature <= simulator.model.motor_temperature + 1
    count = readings["produced_count"].value
    assert isinstance(count, int)
    assert 0 <= count <= simulator.model.produced_count
    assert driver.connected


async def test_a_write_reaches_the_model_and_the_read_back_shows_it(
    driver: MqttDriver, press: MqttDevice, simulator: MqttSensorSimulator
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    await driver.write(tag(press, "speed_setpoint"), 1500)
    assert simulator.model.speed_setpoint == 1500
    # No waiting here: write() returns once a state message shows the new value.
    assert await driver.read([tag(press, "speed_setpoint")]) == {
        "speed_setpoint": Reading(1500, Quality.GOOD)
    }
    await driver.write(tag(press, "running"), False)
    assert simulator.model.running is False
    assert await driver.read([tag(press, "running")]) == {"running": Reading(False, Quality.GOOD)}


async def test_the_supervisor_answers_a_write_with_the_read_back(
    prefix: str, simulator: MqttSensorSimulator
) -> None:
    config = press_device(prefix)
    sink = RecordingSink()
    policy = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)
    supervisor = DeviceSupervisor(config, MqttDriver(config), sink, policy=policy)
    task = asyncio.create_task(supervisor.run())
    try:

        async def connected() -> None:
            assert supervisor.state is ConnectionState.CONNECTED

        await eventually(connected, timeout=5)
        reply = await supervisor.submit_write(
            WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=1500)
        )
        assert (reply.ok, reply.read_back) == (True, 1500)
        assert simulator.model.speed_setpoint == 1500
    finally:
        task.cancel()
        await asyncio.wait({task})


async def test_a_command_the_device_ignores_reads_back_its_actual_state(
    prefix: str, simulator: MqttSensorSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = press_device(prefix, read_back_seconds=0.3)
    driver = MqttDriver(config)
    await driver.connect()
    try:
        await eventually(all_with(Quality.GOOD, driver, config), timeout=5)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            # Above the sensor's limit of 3000: it logs and keeps its setpoint.
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                await driver.write(tag(config, "speed_setpoint"), 4000)
        # The write returned only once its read-back window had passed with no state
        # showing 4000 (it says so), and what the states showed is what reads back.
        assert any(
            "no state showing speed_setpoint = 4000 within 0.3 s" in r.getMessage()
            for r in caplog.records
        )
        assert simulator.model.speed_setpoint == STEADY_RPM
        assert await driver.read([tag(config, "speed_setpoint")]) == {
            "speed_setpoint": Reading(STEADY_RPM, Quality.GOOD)
        }
    finally:
        await driver.close()


async def test_a_payload_that_is_not_json_is_bad_logged_once_and_the_next_good_one_recovers(
    driver: MqttDriver,
    press: MqttDevice,
    simulator: MqttSensorSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    simulator.pause()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await simulator.publish_raw(b"\x00garbage")
        await eventually(all_with(Quality.BAD, driver, press), timeout=5)
        await simulator.publish_raw(b"\x00garbage")
        simulator.resume()
        # The sensor's messages arrive in order: once good, the second garbage was handled.
        readings = await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    assert readings["speed"] == Reading(float(STEADY_RPM), Quality.GOOD)
    assert len(warnings_about(caplog, press.id, simulator.state_topic, "not JSON")) == 1
    assert driver.connected


async def test_a_value_of_the_wrong_type_makes_only_its_tag_bad(
    driver: MqttDriver,
    press: MqttDevice,
    simulator: MqttSensorSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    simulator.pause()
    state = simulator.state()
    state["motor"] = {"speed": "fast", "temperature": 40.5}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await simulator.publish_raw(json.dumps(state))

        async def speed_bad() -> None:
            assert (await driver.read([tag(press, "speed")]))["speed"] == BAD_READING

        await eventually(speed_bad, timeout=5)
    readings = await driver.read(press.tags)
    assert readings["motor_temperature"] == Reading(40.5, Quality.GOOD)
    assert readings["running"] == Reading(True, Quality.GOOD)
    (line,) = warnings_about(caplog, press.id, simulator.state_topic)
    assert "tag speed bad: float32 expects a number, got a string" in line


async def test_a_missing_path_makes_its_tag_bad(
    driver: MqttDriver,
    press: MqttDevice,
    simulator: MqttSensorSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    simulator.pause()
    state = simulator.state()
    state["motor"] = {"speed": 900}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await simulator.publish_raw(json.dumps(state))

        async def temperature_bad() -> None:
            readings = await driver.read([tag(press, "motor_temperature")])
            assert readings["motor_temperature"] == BAD_READING

        await eventually(temperature_bad, timeout=5)
    assert (await driver.read([tag(press, "speed")]))["speed"] == Reading(900.0, Quality.GOOD)
    (line,) = warnings_about(caplog, press.id, simulator.state_topic)
    assert "tag motor_temperature bad: no field 'motor.temperature'" in line


async def test_a_quiet_sensor_turns_uncertain_with_its_last_values(
    prefix: str, simulator: MqttSensorSimulator
) -> None:
    config = press_device(prefix, staleness_seconds=0.5)
    driver = MqttDriver(config)
    await driver.connect()
    try:
        await eventually(all_with(Quality.GOOD, driver, config), timeout=5)
        simulator.pause()
        readings = await eventually(all_with(Quality.UNCERTAIN, driver, config), timeout=5)
        last = simulator.last_state
        assert last is not None
        assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.UNCERTAIN)
        assert readings["running"] == Reading(True, Quality.UNCERTAIN)
        assert readings["produced_count"].value == last["produced_count"]
        simulator.resume()
        await eventually(all_with(Quality.GOOD, driver, config), timeout=5)
    finally:
        await driver.close()


async def test_a_sensor_that_vanishes_is_bad_through_its_last_will(
    driver: MqttDriver, press: MqttDevice, simulator: MqttSensorSimulator
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    await simulator.drop_connection()
    await eventually(all_with(Quality.BAD, driver, press), timeout=5)
    # The driver's own broker connection is fine: the device is offline, not the driver.
    assert driver.connected


async def test_a_stopped_sensor_is_bad_and_good_again_within_5_s_of_its_restart(
    driver: MqttDriver, press: MqttDevice, simulator: MqttSensorSimulator
) -> None:
    await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    await simulator.stop()  # publishes "offline"
    await eventually(all_with(Quality.BAD, driver, press), timeout=5)
    with pytest.raises(DeviceRequestError, match="reports offline"):
        await driver.write(tag(press, "speed_setpoint"), 1500)
    await simulator.start()
    readings = await eventually(all_with(Quality.GOOD, driver, press), timeout=5)
    assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.GOOD)
    assert simulator.model.speed_setpoint == STEADY_RPM


async def test_a_retained_state_is_uncertain_unless_the_status_says_online(
    prefix: str, simulator: MqttSensorSimulator
) -> None:
    simulator.pause()
    state = simulator.state()
    await simulator.publish_raw(json.dumps(state), retain=True)
    unvouched = press_device(prefix, status_topic=None)
    vouched = press_device(prefix)
    drivers = [MqttDriver(unvouched), MqttDriver(vouched)]
    try:
        for driver in drivers:
            await driver.connect()
        readings = await eventually(all_with(Quality.UNCERTAIN, drivers[0], unvouched), timeout=5)
        assert readings["speed_setpoint"] == Reading(STEADY_RPM, Quality.UNCERTAIN)
        await eventually(all_with(Quality.GOOD, drivers[1], vouched), timeout=5)
        simulator.resume()
        await eventually(all_with(Quality.GOOD, drivers[0], unvouched), timeout=5)
    finally:
        for driver in drivers:
            await driver.close()


async def test_connecting_where_no_broker_listens_is_a_connection_error(prefix: str) -> None:
    driver = MqttDriver(press_device(prefix, port=free_port()))
    with pytest.raises(DeviceConnectionError, match="cannot connect"):
        await driver.connect()
    assert not driver.connected
    with pytest.raises(DeviceConnectionError, match="not connected"):
        await driver.read([])
    await driver.close()


async def test_a_lost_broker_connection_fails_the_next_read_and_write(
    prefix: str, simulator: MqttSensorSimulator
) -> None:
    async with BrokerProxy() as proxy:
        config = press_device(prefix, port=proxy.port)
        driver = MqttDriver(config)
        await driver.connect()
        try:
            await eventually(all_with(Quality.GOOD, driver, config), timeout=5)
            proxy.cut()

            async def lost() -> None:
                assert not driver.connected

            await eventually(lost, timeout=5)
            with pytest.raises(DeviceConnectionError, match="connection to the broker lost"):
                await driver.read(config.tags)
            with pytest.raises(DeviceConnectionError):
                await driver.write(tag(config, "speed_setpoint"), 1500)
            # The supervisor's next step: connect again, through the proxy still listening.
            await driver.connect()
            await eventually(all_with(Quality.GOOD, driver, config), timeout=5)
        finally:
            await driver.close()
    await driver.close()  # closing twice is harmless


class BrokerProxy:
    """A TCP relay to the broker whose connections a test can cut, as a network failure would."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> BrokerProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()
        if self._pipes:
            await asyncio.wait(self._pipes)

    def cut(self) -> None:
        """Reset every relayed connection at once, on both sides."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        broker_reader, broker = await asyncio.open_connection(BROKER_HOST, BROKER_PORT)
        self._writers += [client, broker]
        pipes = {
            asyncio.create_task(_pipe(client_reader, broker)),
            asyncio.create_task(_pipe(broker_reader, client)),
        }
        self._pipes |= pipes
        await asyncio.wait(pipes)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_a_command_the_broker_acknowledges_too_late_is_an_unknown_outcome_though_applied(
    prefix: str, tmp_path: Path
) -> None:
    # A broker of the test's own, frozen with SIGSTOP: the shared one must keep answering.
    with private_mosquitto(tmp_path) as broker:
        press = PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)
        async with MqttSensorSimulator(
            host=BROKER_HOST, port=broker.port, prefix=prefix, model=press
        ):
            config = press_device(prefix, port=broker.port, timeout_seconds=0.5)
            policy = SupervisionPolicy(poll_seconds=0.1)
            supervisor = DeviceSupervisor(
                config, MqttDriver(config), RecordingSink(), policy=policy
            )
            task = asyncio.create_task(supervisor.run())
            try:

                async def connected() -> None:
                    assert supervisor.state is ConnectionState.CONNECTED

                await eventually(connected, timeout=5)
                broker.freeze()  # the command goes out on the open connection, no PUBACK comes
                try:
                    request = WriteRequest(
                        tag="speed_setpoint", command_id=unique("cmd"), value=1500
                    )
                    reply = await supervisor.submit_write(request)
                finally:
                    broker.thaw()

                assert (reply.ok, reply.kind) == (False, WriteErrorKind.OUTCOME_UNKNOWN), reply
                assert reply.error.startswith("outcome unknown: write speed_setpoint: no PUBACK")

                async def applied() -> None:
                    assert press.speed_setpoint == 1500

                # The broker passes the command on once it runs: "write_failed" would be false.
                await eventually(applied, timeout=5)
            finally:
                task.cancel()
                await asyncio.wait({task})
