"""A plant core's buffer across runs: what one run left the next forwards, and a stop flushes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from devices.nats_bridge import NatsTelemetrySink
from devices.outbox import Outbox
from domain.messages import STATUS_SUBJECT, ConnectionState, DeviceStatus
from plantcore.db_init import InitialisedDatabase
from plantcore.runtime import PlantRuntime
from plantfile.plant import PlantConfig
from plantfile.protocols.modbus import ModbusConnection, ModbusDevice, ModbusTag
from simulators.modbus_server import ModbusSimulator
from tests.support import (
    delete_runtime_consumers,
    eventually,
    free_port,
    runtime_config,
    unique,
)

pytestmark = pytest.mark.integration

BUFFER_BYTES = 1024 * 1024


def plant_of(device: str, port: int) -> PlantConfig:
    press = ModbusDevice(
        id=device,
        protocol="modbus",
        modbus=ModbusConnection(host="127.0.0.1", port=port, device_id=1),
        tags=[ModbusTag(name="speed", address=2, type="uint16")],
    )
    return PlantConfig(plant_id=unique("buffer"), poll_seconds=0.2, devices=[press])


async def last_status(js: JetStreamContext, device: str) -> DeviceStatus:
    try:
        message = await js.get_last_msg("TELEMETRY", STATUS_SUBJECT.format(device=device))
    except NotFoundError:
        raise AssertionError(f"no status of {device} in the stream yet") from None
    assert message.data is not None
    return DeviceStatus.decode(message.data)


async def test_the_next_run_forwards_what_the_last_left_and_a_stop_sends_its_last_statuses(
    tmp_path: Path,
    plant_roles: InitialisedDatabase,
    nats_url: str,
    redis_url: str,
    js: JetStreamContext,
) -> None:
    buffer_dir = tmp_path / "buffer"
    earlier = unique("press")  # a device of the previous run, its status never sent
    left = DeviceStatus(earlier, ConnectionState.CONNECTED, datetime(2026, 11, 23, tzinfo=UTC))
    outbox = Outbox.open(buffer_dir, max_bytes=BUFFER_BYTES)
    await NatsTelemetrySink(outbox).publish_status(left)
    outbox.close()
    device, prefix = unique("press"), unique("plant") + "-"
    try:
        async with ModbusSimulator(port=free_port(), tick_seconds=0.05) as simulator:
            runtime = PlantRuntime(
                runtime_config(
                    plant_roles.runtime_url,
                    nats_url,
                    redis_url,
                    plant_of(device, simulator.port),
                    prefix,
                    buffer_dir=buffer_dir,
                    buffer_max_bytes=BUFFER_BYTES,
                )
            )
            running = asyncio.create_task(runtime.run())
            try:

                async def forwarded_and_connected() -> None:
                    assert await last_status(js, earlier) == left
                    assert (await last_status(js, device)).state is ConnectionState.CONNECTED

                await eventually(forwarded_and_connected)

                async def on_metrics() -> None:
                    assert runtime.server is not None
                    assert runtime.server.started
                    async with httpx.AsyncClient(base_url=runtime.api_url) as http:
                        text = (await http.get("/metrics")).text
                    samples = {
                        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                        for family in text_string_to_metric_families(text)
                        for sample in family.samples
                    }
                    assert samples[("plantcore_buffer_forwarded_total", ())] >= 2
                    assert samples[("plantcore_buffer_max_bytes", ())] == BUFFER_BYTES
                    assert ("plantcore_buffer_entries", (("kind", "alarm"),)) in samples
                    assert ("plantcore_buffer_oldest_age_seconds", ()) in samples

                await eventually(on_metrics)
            finally:
                running.cancel()
                await asyncio.wait({running})

        # Stopping, the device said so, and that went out before NATS was closed.
        assert (await last_status(js, device)).state is ConnectionState.STOPPED
        reopened = Outbox.open(buffer_dir, max_bytes=BUFFER_BYTES)
        assert len(reopened) == 0
        reopened.close()
    finally:
        for each in (earlier, device):
            await js.purge_stream("TELEMETRY", subject=STATUS_SUBJECT.format(device=each))
            await js.purge_stream("TELEMETRY", subject=f"plant.telemetry.{each}")
        await delete_runtime_consumers(js, prefix)
