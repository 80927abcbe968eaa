"""``plantcore demo``, the quick start's first command, run as an operator would run it."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from eventstore.roles import PlantRoles
from plantfile.loader import load_plant_file
from tests.support import (
    delete_runtime_consumers,
    drop_roles,
    eventually,
    free_port,
    runtime_event_stream,
    unique,
)

pytestmark = pytest.mark.e2e

BANNER_FIELDS = ("HMI", "GraphQL", "operator", "password", "TOTP secret", "audit")


# The plantcore command of the interpreter running the tests (the README's venv in CI).
VENV_PLANTCORE = f"{sys.executable} -m plantcore"

DEMO_PRESSES = sorted(device.id for device in load_plant_file("config/demo-plant.yaml").devices)


class Demo:
    """The running demo; its output is read all along, so a full pipe never blocks it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []
        self._fields: dict[str, str] = {}
        self._banner = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            self.output.append(line)
            match = re.match(r"\s+([A-Za-z ]+):\s+(\S.*?)\s*$", line)
            if match:
                self._fields[match.group(1).strip()] = match.group(2)
            if all(name in self._fields for name in BANNER_FIELDS):
                self._banner.set()

    async def banner(self) -> dict[str, str]:
        """The banner's fields, once it has printed every one it promises."""
        banner = asyncio.ensure_future(self._banner.wait())
        await asyncio.wait({banner, self._reader}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        banner.cancel()
        assert self._banner.is_set(), f"no banner; the demo printed:\n{''.join(self.output)}"
        return dict(self._fields)

    async def exit_code(self, timeout: float) -> int | None:
        """The exit code, or None if it has not exited within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.process.wait()
        except TimeoutError:
            return None

    async def all_output(self) -> str:
        await self._reader
        return "".join(self.output)


@pytest.fixture
async def demo(
    own_database: str, nats_url: str, redis_url: str, tmp_path: Path, js: JetStreamContext
) -> AsyncIterator[Demo]:
    prefix = unique("demo") + "-"
    # The demo runs `plantcore db init`: with roles of this test's own, dropped after it.
    role_prefix = unique("demo").replace("-", "_")
    roles = PlantRoles.named(role_prefix)
    env = {
        **os.environ,
        "PLANTCORE_DATABASE_URL": own_database,
        "PLANTCORE_DB_ROLE_PREFIX": role_prefix,
        "PLANTCORE_NATS_URL": nats_url,
        "PLANTCORE_REDIS_URL": redis_url,
        "PLANTCORE_HTTP_PORT": str(free_port()),
        "PLANTCORE_STATE_DIR": str(tmp_path),
        "PLANTCORE_CONSUMER_PREFIX": prefix,
        "PLANTCORE_EVENTS_STREAM": runtime_event_stream(prefix)[0],
        "PLANTCORE_EVENTS_SUBJECT_PREFIX": runtime_event_stream(prefix)[1],
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
        await delete_runtime_consumers(js, prefix)
        drop_roles(own_database, roles)


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

        # The HMI at the printed URL, and the explorer (served by the demo) from its own files.
        hmi = await http.get(banner["HMI"])
        assert hmi.status_code == 200
        assert '<script type="module" src="/js/main.js">' in hmi.text
        assert "script-src 'self'" in hmi.headers["content-security-policy"]
        assert hmi.headers["cache-control"] == "no-cache"
        explorer = await http.get(graphql_url, headers={"Accept": "text/html"})
        assert explorer.status_code == 200
        assert "/vendor/graphiql/graphiql.min.js" in explorer.text

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

        async def speed_trend() -> None:
            # An HMI's trend: press-1's speed over the last hour, minute by minute.
            now = datetime.now(UTC)
            body = await post(
                f'{{ history(device: "press-1", tags: ["speed"], bucket: 60, first: 61,'
                f' from: "{(now - timedelta(hours=1)).isoformat()}", to: "{now.isoformat()}",'
                ' aggregates: ["avg"]) { source buckets { time avg quality } } }',
                token,
            )
            history = body["data"]["history"]
            assert history["source"] == "samples_1m"
            starts = [datetime.fromisoformat(bucket["time"]) for bucket in history["buckets"]]
            assert starts[0] <= now - timedelta(hours=1) < starts[0] + timedelta(minutes=1)
            assert starts[-1] <= now < starts[-1] + timedelta(minutes=1)
            assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(starts))
            # The demo has run for a minute or two: its last minutes hold the ramp-up.
            speeds = [bucket for bucket in history["buckets"] if bucket["avg"] is not None]
            assert speeds, history
            assert speeds[-1]["quality"] == "GOOD", speeds
            assert speeds[-1]["avg"] > 0, speeds

        await eventually(speed_trend, timeout=30)

    # The command the banner prints checks the log against the demo's signed checkpoints.
    async def audited() -> None:
        verify = await asyncio.to_thread(
            subprocess.run,
            ["sh", "-c", banner["audit"].replace(".venv/bin/plantcore", VENV_PLANTCORE)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "checkpoint" in verify.stdout + verify.stderr

    await eventually(audited, timeout=90, interval=1.0)

    demo.process.send_signal(signal.SIGINT)
    code = await demo.exit_code(timeout=30)
    if code is None:
        demo.process.kill()
    output = await demo.all_output()
    assert code == 0, f"exit code {code} after Ctrl-C:\n{output[-4000:]}"
    assert "plantcore stopped" in output
