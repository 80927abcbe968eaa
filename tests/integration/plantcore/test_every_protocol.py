"""A fleet of all five protocols in one plant core, each press simulated, edited while it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.aio.client import Client as NatsClient

from domain.messages import (
    WRITE_SUBJECT,
    ConnectionState,
    WriteReply,
    WriteRequest,
)
from tests.integration.plantcore.conftest import RunPlant, StatusWatch
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

DEMO = yaml.safe_load(Path("config/demo-plant.yaml").read_text(encoding="utf-8"))


def plant_text(devices: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({**DEMO, "poll_seconds": 0.2, "devices": devices}, sort_keys=False)


async def test_five_protocols_run_write_and_follow_the_file(
    tmp_path: Path, nc: NatsClient, run_plant: RunPlant, statuses: StatusWatch
) -> None:
    suffix = unique("")
    devices = [{**device, "id": device["id"] + suffix} for device in DEMO["devices"]]
    by_protocol = {device["protocol"]: device["id"] for device in devices}
    plant_file = tmp_path / "plant.yaml"
    plant_file.write_text(plant_text(devices), encoding="utf-8")
    runtime = await run_plant(plant_file, state_dir=tmp_path / "state")

    async def connected(*device_ids: str) -> None:
        for device_id in device_ids:
            assert statuses.state(device_id) is ConnectionState.CONNECTED, device_id

    await eventually(lambda: connected(*by_protocol.values()), timeout=30)

    # A setpoint written through each protocol's driver, and read back from its PLC.
    for protocol, device_id in sorted(by_protocol.items()):
        request = WriteRequest(
            tag="speed_setpoint", command_id=unique("cmd"), op="write", value=1500
        )
        message = await nc.request(
            WRITE_SUBJECT.format(device=device_id), request.encode(), timeout=10
        )
        reply = WriteReply.decode(message.data)
        assert (reply.ok, reply.read_back) == (True, 1500), (protocol, reply)

    assert runtime.fleet is not None
    untouched = {
        protocol: runtime.fleet.supervisor(device_id)
        for protocol, device_id in by_protocol.items()
        if protocol not in ("enip", "s7")
    }
    # Edited while running: the EtherNet/IP press removed, the S7 one polled slower.
    edited = [
        {**device, "poll_seconds": 0.5} if device["protocol"] == "s7" else device
        for device in devices
        if device["protocol"] != "enip"
    ]
    s7_before = runtime.fleet.supervisor(by_protocol["s7"])
    plant_file.write_text(plant_text(edited), encoding="utf-8")

    async def applied() -> None:
        assert statuses.state(by_protocol["enip"]) is ConnectionState.STOPPED
        assert runtime.fleet is not None
        s7_now = runtime.fleet.supervisor(by_protocol["s7"])
        assert s7_now is not None
        assert s7_now is not s7_before
        assert s7_now.state is ConnectionState.CONNECTED

    await eventually(applied, timeout=20)
    for protocol, supervisor in untouched.items():
        assert runtime.fleet.supervisor(by_protocol[protocol]) is supervisor, protocol
    assert sorted(runtime.simulations.lines) == sorted(
        device_id for protocol, device_id in by_protocol.items() if protocol != "enip"
    )
