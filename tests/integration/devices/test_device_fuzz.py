"""Devices that answer badly: bad quality and a log line, never a crash.

Two fuzzers, each seeded and bounded in count and time:

- a Modbus TCP server of the test's own that answers the driver's reads with
  what a faulty device or gateway sends: exception responses with any code,
  frames that are short, too long, of another function or transaction, random
  bytes, silence, a closed socket, and now and then a correct answer;
- malformed MQTT state documents published to the real Mosquitto broker: not
  JSON, not UTF-8, the wrong types, numbers no tag type holds, deep nesting,
  huge strings, and valid documents in between.

The supervisor runs over the real driver all along. It must never stop, every
sample it publishes must be ``bad`` (no value) or carry a value its tag's type
holds, and no failure may reach the log as an unexpected error: a malformed
answer is a failed request (its tags bad) or a lost connection, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import pytest

from devices.drivers.modbus import ModbusDriver
from devices.drivers.mqtt import MqttDriver
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality, TelemetryBatch
from plantfile.protocols.modbus import ModbusDevice
from plantfile.protocols.mqtt import MqttConnection, MqttDevice
from plantfile.tags import INTEGER_RANGES, TagConfig
from simulators.mqtt_sensor import press_tags
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = pytest.mark.integration

SEED = 20261207
FAST = SupervisionPolicy(
    poll_seconds=0.02, backoff_base=0.01, backoff_cap=0.05, max_consecutive_fails=1_000
)
MODBUS_ANSWERS = 400  # requests the fuzzing server answers before the test ends
MQTT_PAYLOADS = 300
BROKER_HOST, BROKER_PORT = "127.0.0.1", 1883


# -- what every published sample must be -------------------------------------------------------


def holds(tag: TagConfig, value: object) -> bool:
    """Whether ``value`` is an engineering value the tag's type can produce."""
    if tag.type == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    if tag.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[tag.type]
        raw = (value - tag.offset) / tag.scale
        return low <= raw <= high
    return True


def assert_lawful(batches: list[TelemetryBatch], tags: dict[str, TagConfig]) -> Counter[Quality]:
    qualities: Counter[Quality] = Counter()
    for batch in batches:
        for sample in batch.samples:
            qualities[sample.quality] += 1
            if sample.quality is Quality.BAD:
                # It holds the tag's last good value (none before the first) and says why.
                assert sample.reason, sample
                assert sample.value is None or holds(tags[sample.tag], sample.value), sample
            else:
                assert holds(tags[sample.tag], sample.value), sample
    return qualities


def unexpected_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("devices") and record.levelno >= logging.ERROR
    ]


@contextlib.asynccontextmanager
async def supervising(
    config: ModbusDevice | MqttDevice, driver: ModbusDriver | MqttDriver
) -> AsyncIterator[tuple[DeviceSupervisor, RecordingSink, asyncio.Task[None]]]:
    sink = RecordingSink()
    supervisor = DeviceSupervisor(config, driver, sink, policy=FAST, rng=random.Random(SEED))
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor, sink, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- Modbus TCP: a device that answers badly ---------------------------------------------------

READS = {1, 2, 3, 4}  # coils, discrete inputs, holding and input registers
EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 8, 10, 11, 0, 0x7F, 0xFF)


class FaultyModbusDevice:
    """A Modbus TCP server that answers each request with one fault, drawn from a seed."""

    KINDS = (
        "exception", "correct", "short", "long", "byte_count", "other_function",
        "other_transaction", "random_pdu", "empty_pdu", "silence", "close",
    )  # fmt: skip

    def __init__(self, seed: int) -> None:
        self.port = free_port()
        self.answers: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FaultyModbusDevice:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)
                transaction, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                kind = self.rng.choice(self.KINDS)
                self.answers[kind] += 1
                if kind == "close":
                    return
                if kind == "silence":
                    continue
                if kind == "other_transaction":
                    transaction = (transaction + 1) % 65536
                answer = self._pdu(kind, pdu)
                writer.write(struct.pack(">HHHB", transaction, 0, len(answer) + 1, unit) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _pdu(self, kind: str, request: bytes) -> bytes:
        function = request[0]
        count = struct.unpack(">H", request[3:5])[0] if function in READS else 1
        if kind == "exception":
            return bytes([function | 0x80, self.rng.choice(EXCEPTION_CODES)])
        if kind == "empty_pdu":
            return b""
        if kind == "random_pdu":
            return self.rng.randbytes(self.rng.randint(1, 40))
        if kind == "other_function":
            function = self.rng.choice(sorted(READS - {function}) or [3])
        data = self._data(function, count)
        if kind == "short":
            data = data[: self.rng.randint(0, max(len(data) - 1, 0))]
        elif kind == "long":
            data += self.rng.randbytes(self.rng.randint(1, 8))
        byte_count = len(data)
        if kind == "byte_count":
            byte_count = (byte_count + self.rng.randint(1, 200)) % 256
        return bytes([function, byte_count]) + data

    def _data(self, function: int, count: int) -> bytes:
        if function in (1, 2):
            return self.rng.randbytes((count + 7) // 8)
        return self.rng.randbytes(2 * count)


def modbus_device(port: int) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {
            "id": unique("faulty"),
            "protocol": "modbus",
            "modbus": {"host": "127.0.0.1", "port": port, "timeout_seconds": 0.05},
            "tags": [
                {"name": "speed", "address": 0, "type": "uint16"},
                {"name": "torque", "address": 1, "type": "int32"},
                {"name": "temperature", "address": 10, "area": "input", "type": "float32"},
                {"name": "running", "address": 0, "area": "coil", "type": "bool"},
                {"name": "door", "address": 3, "area": "discrete", "type": "bool"},
                {"name": "scaled", "address": 20, "type": "int16", "scale": 0.1, "offset": -5},
            ],
        }
    )


async def test_a_modbus_device_that_answers_badly_never_stops_its_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with FaultyModbusDevice(SEED) as device:
        config = modbus_device(device.port)
        async with supervising(config, ModbusDriver(config)) as (supervisor, sink, task):

            async def answered_enough() -> None:
                assert task.done() is False, "the supervisor stopped"
                assert device.answers.total() >= MODBUS_ANSWERS

            await eventually(answered_enough, timeout=60.0)
            assert not task.done()

    # Every kind of fault was sent, and the faults show up as bad samples and reasons.
    assert set(device.answers) == set(FaultyModbusDevice.KINDS), device.answers
    qualities = assert_lawful(sink.batches, {t.name: t for t in config.tags})
    assert qualities[Quality.BAD] > 0
    assert qualities[Quality.GOOD] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("exception code" in line for line in warnings)
    assert supervisor.counters.reconnects > 0  # the closed sockets
    assert unexpected_errors(caplog) == []


# -- MQTT: a sensor that publishes nonsense ----------------------------------------------------


def mqtt_payloads(rng: random.Random, count: int) -> list[bytes]:
    """Malformed (and some valid) state documents for the press's tags."""
    valid: dict[str, Any] = {
        "running": True, "speed_setpoint": 1200,
        "motor": {"speed": 1199.5, "temperature": 41.0}, "produced_count": 7,
    }  # fmt: skip
    deep = ("[" * 5000 + "]" * 5000).encode()  # deeper than the parser allows
    odd_values: list[Any] = [
        None, "", "1200", "NaN", [], {}, [1, 2], {"value": 1}, 10**40, -(10**40), 2**64,
        -1, 65536, 1e308, -1e308, 1e-320, True, False, 0.5, "x" * 10_000,
    ]  # fmt: skip

    def broken_document() -> bytes:
        document = json.loads(json.dumps(valid))
        motor = document["motor"]
        for parent, key in rng.sample(
            [(document, "running"), (document, "speed_setpoint"), (document, "produced_count"),
             (motor, "speed"), (motor, "temperature"), (document, "motor")],
            rng.randint(1, 6),
        ):  # fmt: skip
            if rng.random() < 0.2:
                parent.pop(key, None)
            else:
                parent[key] = rng.choice(odd_values)
        return json.dumps(document).encode()

    makers: list[Callable[[], bytes]] = [
        broken_document,
        broken_document,
        lambda: json.dumps(valid).encode(),
        lambda: rng.randbytes(rng.randint(0, 64)),
        lambda: b"\xff\xfe" + json.dumps(valid).encode(),  # not UTF-8
        lambda: json.dumps(valid).encode()[: rng.randint(0, 40)],  # cut short
        lambda: b'{"running": NaN, "speed": Infinity, "speed_setpoint": -Infinity}',
        lambda: deep,
        lambda: json.dumps(rng.choice(odd_values)).encode(),
        lambda: b"",
        lambda: json.dumps({"running": {"nested": [valid] * 50}}).encode(),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def mqtt_device(prefix: str) -> MqttDevice:
    return MqttDevice(
        id=unique("sensor"),
        protocol="mqtt",
        mqtt=MqttConnection(host=BROKER_HOST, port=BROKER_PORT, timeout_seconds=2.0),
        tags=press_tags(prefix),
    )


async def test_an_mqtt_sensor_that_publishes_nonsense_never_stops_its_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    prefix = unique("plantcore-fuzz")
    config = mqtt_device(prefix)
    state_topic = f"{prefix}/press/state"
    tags = {t.name: t for t in config.tags}
    driver = MqttDriver(config)
    async with (
        supervising(config, driver) as (supervisor, sink, task),
        aiomqtt.Client(BROKER_HOST, BROKER_PORT) as publisher,
    ):

        async def connected() -> None:
            assert supervisor.state is ConnectionState.CONNECTED

        await eventually(connected)
        for payload in mqtt_payloads(random.Random(SEED), MQTT_PAYLOADS):
            await publisher.publish(state_topic, payload, qos=1)
        # A last good document: read back once every message before it was handled.
        marker = 2999
        await publisher.publish(
            state_topic, json.dumps({"speed_setpoint": marker, "running": True}).encode(), qos=1
        )

        async def handled_everything() -> None:
            assert not task.done(), "the supervisor stopped"
            readings = await driver.read([tags["speed_setpoint"]])
            assert readings["speed_setpoint"].value == marker

        await eventually(handled_everything, timeout=30.0)
        assert supervisor.state is ConnectionState.CONNECTED

    qualities = assert_lawful(sink.batches, tags)
    assert qualities[Quality.BAD] > 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "devices.drivers.mqtt"]
    assert any("not JSON" in line for line in warnings)
    assert unexpected_errors(caplog) == []
