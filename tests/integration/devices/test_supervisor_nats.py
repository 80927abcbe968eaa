"""A supervisor on the real simulator, publishing through real NATS JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from devices.drivers.modbus import ModbusDriver
from devices.nats_bridge import NatsTelemetrySink, serve_writes
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import (
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    WRITE_SUBJECT,
    ConnectionState,
    DeviceStatus,
    Quality,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)
from plantfile.protocols.modbus import ModbusDevice
from simulators.modbus_server import ModbusSimulator
from tests.integration.devices.conftest import GHOST, STEADY_RPM, press_config
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

T = TypeVar("T")
FAST = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)


@asynccontextmanager
async def collect(
    js: JetStreamContext, subject: str, decode: Callable[[bytes], T]
) -> AsyncIterator[list[T]]:
    """Everything the TELEMETRY stream delivers on ``subject``, decoded, in order."""
    received: list[T] = []

    async def on_message(msg: Msg) -> None:
        received.append(decode(msg.data))

    subscription = await js.subscribe(subject, cb=on_message)
    try:
        yield received
    finally:
        info = await subscription.consumer_info()
        await subscription.unsubscribe()
        await js.delete_consumer(info.stream_name, info.name)


@asynccontextmanager
async def supervised(
    nc: NatsClient, sink: NatsTelemetrySink, config: ModbusDevice
) -> AsyncIterator[DeviceSupervisor]:
    driver = ModbusDriver(config)
    supervisor = DeviceSupervisor(config, driver, sink, policy=FAST)
    task = asyncio.create_task(supervisor.run())
    subscription = await serve_writes(nc, supervisor)
    try:
        yield supervisor
    finally:
        await subscription.unsubscribe()
        task.cancel()
        await asyncio.wait({task})


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> None:
        assert condition()

    await eventually(probe)


def value(batch: TelemetryBatch, tag: str) -> tuple[object, Quality]:
    (sample,) = [s for s in batch.samples if s.tag == tag]
    return sample.value, sample.quality


def all_bad(batch: TelemetryBatch) -> bool:
    return all(s.quality is Quality.BAD and s.reason == "comm_loss" for s in batch.samples)


async def test_batches_with_the_simulator_speed_reach_the_stream(
    nc: NatsClient, js: JetStreamContext, nats_sink: NatsTelemetrySink, simulator: ModbusSimulator
) -> None:
    config = press_config(simulator.port)
    telemetry = TELEMETRY_SUBJECT.format(device=config.id)
    status = STATUS_SUBJECT.format(device=config.id)
    async with (
        collect(js, telemetry, TelemetryBatch.decode) as batches,
        collect(js, status, DeviceStatus.decode) as statuses,
        supervised(nc, nats_sink, config) as supervisor,
    ):
        await until(lambda: len(batches) >= 2)
        assert value(batches[0], "speed") == (STEADY_RPM, Quality.GOOD)
        assert value(batches[0], "running") == (True, Quality.GOOD)
        assert {s.tag for s in batches[0].samples} == {t.name for t in config.tags}
        assert batches[0].device == config.id
        await until(lambda: len(statuses) >= 2)
        assert [s.state for s in statuses[:2]] == [
            ConnectionState.CONNECTING,
            ConnectionState.CONNECTED,
        ]
        assert supervisor.counters.cycles >= 2


async def test_an_address_the_device_lacks_gives_a_bad_sample_and_nothing_else(
    nc: NatsClient, js: JetStreamContext, nats_sink: NatsTelemetrySink, simulator: ModbusSimulator
) -> None:
    config = press_config(simulator.port, GHOST)
    subject = TELEMETRY_SUBJECT.format(device=config.id)
    async with (
        collect(js, subject, TelemetryBatch.decode) as batches,
        supervised(nc, nats_sink, config) as supervisor,
    ):
        await until(lambda: len(batches) >= 3)
        assert value(batches[-1], "ghost") == (None, Quality.BAD)
        assert value(batches[-1], "speed") == (STEADY_RPM, Quality.GOOD)
        assert supervisor.state is ConnectionState.CONNECTED
        assert supervisor.counters.reconnects == 0


async def test_a_write_over_nats_changes_the_register_and_replies_with_the_read_back(
    nc: NatsClient, nats_sink: NatsTelemetrySink, simulator: ModbusSimulator
) -> None:
    config = press_config(simulator.port)
    subject = WRITE_SUBJECT.format(device=config.id)
    async with supervised(nc, nats_sink, config) as supervisor:
        await until(lambda: supervisor.state is ConnectionState.CONNECTED)
        request = WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=2200)
        reply = WriteReply.decode((await nc.request(subject, request.encode(), timeout=5)).data)
        assert (reply.ok, reply.tag, reply.read_back) == (True, "speed_setpoint", 2200)
        assert simulator.model.speed_setpoint == 2200

        read = WriteRequest(tag="running", command_id=unique("cmd"), op="read")
        reply = WriteReply.decode((await nc.request(subject, read.encode(), timeout=5)).data)
        assert (reply.ok, reply.read_back) == (True, True)

        too_fast = WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=3001)
        reply = WriteReply.decode((await nc.request(subject, too_fast.encode(), timeout=5)).data)
        assert reply.kind is WriteErrorKind.OUT_OF_LIMITS
        assert simulator.model.speed_setpoint == 2200

        reply = WriteReply.decode((await nc.request(subject, b"{not json", timeout=5)).data)
        assert reply.kind is WriteErrorKind.BAD_REQUEST


async def test_losing_the_device_reports_bad_quality_and_it_recovers_when_it_returns(
    nc: NatsClient, js: JetStreamContext, nats_sink: NatsTelemetrySink, simulator: ModbusSimulator
) -> None:
    config = press_config(simulator.port)
    telemetry = TELEMETRY_SUBJECT.format(device=config.id)
    status = STATUS_SUBJECT.format(device=config.id)
    async with (
        collect(js, telemetry, TelemetryBatch.decode) as batches,
        collect(js, status, DeviceStatus.decode) as statuses,
        supervised(nc, nats_sink, config) as supervisor,
    ):
        await until(lambda: any(value(b, "speed")[1] is Quality.GOOD for b in batches))

        await simulator.stop()
        await until(lambda: any(all_bad(b) for b in batches))
        await until(lambda: statuses[-1].state is ConnectionState.DISCONNECTED)
        (lost,) = [b for b in batches if all_bad(b)]
        # The last values are held, with the time they were read.
        last_good = batches[batches.index(lost) - 1]
        assert value(lost, "speed") == (STEADY_RPM, Quality.BAD)
        assert {s.value_ts for s in lost.samples} == {last_good.ts}
        assert len([s for s in statuses if s.state is ConnectionState.DISCONNECTED]) == 1

        write = WriteRequest(tag="running", command_id=unique("cmd"), value=False)
        reply = WriteReply.decode(
            (
                await nc.request(WRITE_SUBJECT.format(device=config.id), write.encode(), timeout=5)
            ).data
        )
        assert reply.kind is WriteErrorKind.DEVICE_OFFLINE

        await simulator.start()
        await until(lambda: statuses[-1].state is ConnectionState.CONNECTED)
        await until(lambda: value(batches[-1], "speed") == (STEADY_RPM, Quality.GOOD))
        # One bad batch for the outage, not one per failed reconnect attempt.
        assert sum(all_bad(b) for b in batches) == 1
        assert statuses[-1].reconnects == supervisor.counters.reconnects == 1
