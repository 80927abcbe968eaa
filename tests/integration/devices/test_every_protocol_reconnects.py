"""Each protocol's driver under a real supervisor: a server that goes away and comes back.

The press of each protocol comes from the demo plant, served by the simulator
simulation mode starts for it. While the server is gone every tag is published
``bad``, holding its last value; once it is back, the first connection the
supervisor makes after the return polls good values again. That is the
condition "connected again within one delay" stands for: the retries are
``reconnect_delay_seconds`` apart (the sequence itself is unit-tested on a
fake clock in ``tests/unit/devices/test_supervisor.py``), so a device found at
the first attempt after its return is back within one delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from devices.driver import Driver, Reading
from devices.drivers import driver_for
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality, TelemetryBatch
from plantcore.simulation import Simulations
from plantfile.plant import PlantConfig
from plantfile.tags import RawValue, TagConfig
from simulators.mqtt_sensor import press_tags
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = pytest.mark.integration

DEMO = yaml.safe_load(Path("config/demo-plant.yaml").read_text(encoding="utf-8"))
PROTOCOLS = sorted(device["protocol"] for device in DEMO["devices"])
# A short delay keeps the test short; how long a reconnection takes is no condition of it.
POLICY = SupervisionPolicy(
    poll_seconds=0.2, max_consecutive_fails=5, backoff_base=0.5, backoff_cap=0.5
)
# Generous bounds on each wait: a guard against a hang, not a measurement.
GUARD_SECONDS = 30.0


class CountingDriver:
    """The protocol's driver, counting the supervisor's connection attempts."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self.attempts = 0

    @property
    def connected(self) -> bool:
        return self._driver.connected

    async def connect(self) -> None:
        self.attempts += 1
        await self._driver.connect()

    async def close(self) -> None:
        await self._driver.close()

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        return await self._driver.read(tags)

    async def write(self, tag: TagConfig, value: RawValue) -> None:
        await self._driver.write(tag, value)


class AttemptSink(RecordingSink):
    """Records, with each batch, the connection attempt it was polled in."""

    def __init__(self, driver: CountingDriver) -> None:
        super().__init__()
        self._driver = driver
        self.attempt_of: list[int] = []

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        await super().publish_batch(batch)
        self.attempt_of.append(self._driver.attempts)


def isolated_block(protocol: str, tmp_path: Path) -> dict[str, Any]:
    """The demo's press of ``protocol`` on a port (or topics) of this test's own."""
    block = next(d for d in DEMO["devices"] if d["protocol"] == protocol)
    block = {**block, "id": unique("press"), "simulate": True}
    port = free_port()
    if protocol in ("modbus", "s7", "enip"):
        block[protocol] = {**block[protocol], "port": port}
    elif protocol == "opcua":
        certs = tmp_path / "opcua"
        block["opcua"] = {
            **block["opcua"],
            "endpoint": f"opc.tcp://127.0.0.1:{port}/plantcore/press",
            "certificate": str(certs / "plantcore-client.der"),
            "private_key": str(certs / "plantcore-client.key.pem"),
            "trusted_server_certificates": [str(certs / "press-simulator.der")],
        }
    else:
        prefix = unique("plantcore-test")
        block["mqtt"] = {**block["mqtt"], "status_topic": f"{prefix}/press/status"}
        block["tags"] = [
            tag.model_dump(mode="json", exclude_defaults=True) for tag in press_tags(prefix)
        ]
    return block


def plant(*blocks: dict[str, Any]) -> PlantConfig:
    return PlantConfig.model_validate({"plant_id": "reconnect", "devices": list(blocks)})


def speed_good(batch: TelemetryBatch) -> bool:
    return {s.tag: s.quality for s in batch.samples}["speed"] is Quality.GOOD


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_bad_while_the_server_is_gone_and_good_at_the_first_attempt_after_its_return(
    protocol: str, tmp_path: Path
) -> None:
    configured = plant(isolated_block(protocol, tmp_path))
    simulations = Simulations(tmp_path)
    try:
        (device,) = (await simulations.apply(configured)).devices
        driver = CountingDriver(driver_for(device))
        sink = AttemptSink(driver)
        supervisor = DeviceSupervisor(device, driver, sink, policy=POLICY)
        running = asyncio.create_task(supervisor.run())

        def first_good_since(count: int) -> int | None:
            """The index of the first batch from ``count`` on with a good speed."""
            return next(
                (i for i in range(count, len(sink.batches)) if speed_good(sink.batches[i])), None
            )

        async def polling_good(since: int = 0) -> None:
            assert first_good_since(since) is not None

        await eventually(polling_good, timeout=GUARD_SECONDS)

        await simulations.apply(plant())  # the server goes away
        gone_at = len(sink.batches)

        async def all_bad() -> None:
            assert supervisor.state is ConnectionState.DISCONNECTED
            assert sink.all_bad()[-1] in sink.batches[gone_at:]

        await eventually(all_bad, timeout=GUARD_SECONDS)
        held = sink.all_bad()[-1]
        assert {s.reason for s in held.samples} <= {"comm_loss", "read_failed"}
        assert any(s.value is not None for s in held.samples)  # the last values, held

        await simulations.apply(configured)  # and comes back
        back, attempts_at_return = len(sink.batches), driver.attempts
        await eventually(lambda: polling_good(back), timeout=GUARD_SECONDS)
        good = first_good_since(back)
        assert good is not None
        # An attempt under way at the return counts as before it; the next one is after it.
        assert sink.attempt_of[good] <= attempts_at_return + 1
        assert supervisor.state is ConnectionState.CONNECTED
        running.cancel()
        await asyncio.wait({running})
    finally:
        await simulations.close()
