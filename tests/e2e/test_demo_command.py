"""``plantcore demo``, the quick start's first command, run as an operator would run it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from devices.plant_file import load_plant_file
from tests.support import eventually, free_port, unique

pytestmark = pytest.mark.e2e

BANNER_FIELDS = ("GraphQL", "operator", "password", "TOTP secret")


DEMO_PRESSES = sorted(device.id for device in load_plant_file("config/demo-plant.yaml").devices)


class Demo:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []

    async def banner(self) -> dict[str, str]:
        """Read the output until the banner has printed every field it promises."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(60):
            while not all(name in fields for name in BANNER_FIELDS):
                assert self.process.stdout is not None
                line = (await self.process.stdout.readline()).decode()
                assert line, f"the demo exited early:\n{''.join(self.output)}"
                self.output.append(line)
                match = re.match(r"\s+([A-Za-z ]+):\s+(\S+)\s*$", line)
                if match:
                    fields[match.group(1).strip()] = match.group(2)
        return fields

    async def rest_of_output(self) -> str:
        assert self.process.stdout is not None
        self.output.append((await self.process.stdout.read()).decode())
        return "".join(self.output)


@pytest.fixture
async def demo(
    own_database: str, nats_url: str, redis_url: str, tmp_path: Path, js: JetStreamContext
) -> AsyncIterator[Demo]:
    prefix = unique("demo") + "-"
    env = {
        **os.environ,
        "PLANTCORE_DATABASE_URL": own_database,
        "PLANTCORE_NATS_URL": nats_url,
        "PLANTCORE_REDIS_URL": redis_url,
        "PLANTCORE_HTTP_PORT": str(free_port()),
        "PLANTCORE_STATE_DIR": str(tmp_path),
        "PLANTCORE_CONSUMER_PREFIX": prefix,
        # The shared stream holds other tests' and earlier demos' telemetry.
        "PLANTCORE_PROJECTIONS_START": "new",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plantcore",
        "demo",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Demo(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for durable in ("live-state", "history"):
            await js.delete_consumer("TELEMETRY", prefix + durable)


async def test_demo_serves_the_simulators_live_speed_and_stops_on_ctrl_c(demo: Demo) -> None:
    banner = await demo.banner()
    graphql_url = banner["GraphQL"]

    async with httpx.AsyncClient() as http:

        async def post(query: str, token: str | None = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await http.post(graphql_url, json={"query": query}, headers=headers)
            body = response.json()
            assert "errors" not in body, body
            return body

        login = await post(
            f'mutation {{ login(username: "{banner["operator"]}",'
            f' password: "{banner["password"]}") {{ accessToken }} }}'
        )
        token = login["data"]["login"]["accessToken"]

        async def live_speed() -> None:
            body = await post("{ devices { id tags { name value quality } } }", token)
            speeds = {
                device["id"]: {tag["name"]: tag for tag in device["tags"]}["speed"]
                for device in body["data"]["devices"]
            }
            assert sorted(speeds) == DEMO_PRESSES
            for speed in speeds.values():
                assert speed["quality"] == "GOOD"
                assert speed["value"] > 0

        # Every press, one per protocol, starts at rest and ramps up to its setpoint.
        await eventually(live_speed, timeout=30)

    demo.process.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        output = await demo.rest_of_output()
        assert await demo.process.wait() == 0, output
    assert "plantcore stopped" in output
