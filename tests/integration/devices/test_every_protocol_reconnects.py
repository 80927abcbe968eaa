"""Each protocol's driver under a real supervisor: a server that goes away and comes back.

The press of each protocol comes from the demo plant, served by the simulator
simulation mode starts for it. While the server is gone every tag is published
``bad``; once it is back, the supervisor is polling good values again within
5 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devices.drivers import driver_for
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import ConnectionState, Quality
from plantcore.simulation import Simulations
from plantfile.plant import PlantConfig
from simulators.mqtt_sensor import press_tags
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = pytest.mark.integration

DEMO = yaml.safe_load(Path("config/demo-plant.yaml").read_text(encoding="utf-8"))
PROTOCOLS = sorted(device["protocol"] for device in DEMO["devices"])
# Seconds from the server's return to good values again. The plant's backoff
# grows to 60 s over a long outage; this outage is short, and the cap below
# keeps a few failed attempts during a slow server start from pushing past it.
BACK_WITHIN = 5.0
POLICY = SupervisionPolicy(poll_seconds=0.2, max_consecutive_fails=3, backoff_cap=2.0)


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


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_bad_while_the_server_is_gone_and_good_again_within_5_s_of_its_return(
    protocol: str, tmp_path: Path
) -> None:
    configured = plant(isolated_block(protocol, tmp_path))
    simulations = Simulations(tmp_path)
    sink = RecordingSink()
    try:
        (device,) = (await simulations.apply(configured)).devices
        supervisor = DeviceSupervisor(device, driver_for(device), sink, policy=POLICY)
        running = asyncio.create_task(supervisor.run())

        def good_since(count: int) -> bool:
            return any(
                {s.tag: s.quality for s in batch.samples}["speed"] is Quality.GOOD
                for batch in sink.batches[count:]
            )

        async def polling_good(since: int = 0) -> None:
            assert good_since(since)

        await eventually(polling_good, timeout=15)

        await simulations.apply(plant())  # the server goes away
        gone_at = len(sink.batches)

        async def all_bad() -> None:
            assert supervisor.state is ConnectionState.DISCONNECTED
            assert sink.all_bad()[-1] in sink.batches[gone_at:]

        await eventually(all_bad, timeout=15)

        await simulations.apply(configured)  # and comes back
        back, returned = len(sink.batches), time.monotonic()
        await eventually(lambda: polling_good(back), timeout=BACK_WITHIN + 5)
        assert time.monotonic() - returned < BACK_WITHIN
        assert supervisor.state is ConnectionState.CONNECTED
        running.cancel()
        await asyncio.wait({running})
    finally:
        await simulations.close()
