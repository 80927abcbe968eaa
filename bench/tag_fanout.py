"""tag_fanout (P6): hundreds of HMIs on ``tagUpdates`` at once, beside a bare relay.

``subscribers`` HMIs, in ``CLIENT_PROCESSES`` processes of their own
(:mod:`bench.fanout_clients`), connect together, as they do after a restart,
each following one device; ``FOLLOWERS_PER_DEVICE`` follow the same device, as
the screens of one line do. Once all are connected (or dropped), every device
publishes one sample ``RATE_HZ`` times a second on its NATS telemetry subject,
stamped with the time it is published: each subscriber gets ``RATE_HZ``
updates a second, and the latency of each is from that stamp to its arrival
in the client's process.

- **plantcore**: the plant's API in ``workers`` processes of its own
  (:mod:`bench.fanout_server`), the subscribers spread over them as a load
  balancer would; each subscription is ``tagUpdates(device:)`` with a viewer's
  token, its snapshot read from the live state in Redis.
- **bare**: one ``websockets`` process that subscribes each socket to its
  device's subject and forwards the messages' bytes as they are.

The sides alternate (``rounds``), every round with fresh processes and
connections. Each reports the subscribers connected and dropped, the updates
delivered per second and their latency, the fewest any live subscriber
received, the subscriptions that ended early, and the servers' CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from api.credentials import TokenSettings
from bench.command_store import bench_schema
from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from bench.fanout_server import TAG, catalog
from bench.fleet_poll import process_cpu_seconds
from bench.history_query import SECRET, viewer_token
from domain.application import PlantApplication
from domain.messages import TELEMETRY_SUBJECT, Quality, Sample, TelemetryBatch
from eventstore.postgres import event_store_env
from plantcore.embedded import free_port
from projections.live_client import live_state_client
from projections.live_state import LIVE_KEY, sample_json

CLIENT_PROCESSES = 4
FOLLOWERS_PER_DEVICE = 10
RATE_HZ = 10
REDIS_URL = os.environ.get("PLANTCORE_REDIS_URL", "redis://127.0.0.1:6379/0")
# After the last publication, how long the clients may take to receive what is on its way.
DRAIN_SECONDS = 1.0
# The longest line a child prints (a client's latencies), and how long a child may take
# to end once its stdin is closed.
LINE_LIMIT = 64 * 1024 * 1024
STOP_SECONDS = 30.0


@dataclass
class Process:
    """A child process of the benchmark that prints JSON lines and stops when stdin closes."""

    child: asyncio.subprocess.Process

    @classmethod
    async def start(cls, module: str, *args: str) -> Process:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # A client's last line holds every latency it measured: 125 subscribers
            # of 150 updates each is ~200 kB, past asyncio's 64 KiB default.
            limit=LINE_LIMIT,
        )
        return cls(child)

    async def line(self) -> str:
        assert self.child.stdout is not None
        line = await self.child.stdout.readline()
        if not line:
            raise RuntimeError(f"pid {self.child.pid} ended: {await self.child.wait()}")
        return line.decode()

    async def stop(self) -> None:
        """Close its stdin and wait for it to end; kill it (by its PID) if it has not.

        A child blocked writing a line nobody reads (the run failed before reading
        it) would otherwise be waited for forever.
        """
        assert self.child.stdin is not None
        if not self.child.stdin.is_closing():
            self.child.stdin.close()
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await self.child.wait()
        except TimeoutError:
            self.child.kill()
            await self.child.wait()


@asynccontextmanager
async def processes(starts: Sequence[Awaitable[Process]]) -> AsyncIterator[list[Process]]:
    started: list[Process] = []
    try:
        for start in starts:
            started.append(await start)
        yield started
    finally:
        await asyncio.gather(*(p.stop() for p in started))


@dataclass(frozen=True)
class Plant:
    """What the plantcore side's servers share: the event store's schema and a token."""

    database_url: str
    schema: str
    token: str


@dataclass
class Side:
    """One contender: its server processes' command lines and its clients' URLs."""

    name: str
    workers: int
    servers: Callable[[int], list[str]]  # the arguments of a server on a port
    scheme: str
    token: str
    totals: dict[str, Any]


async def publish(nc: NatsClient, devices: Sequence[str], seconds: float) -> int:
    """One sample per device ``RATE_HZ`` times a second, for ``seconds``; the ticks done."""
    loop = asyncio.get_running_loop()
    start, ticks = loop.time(), round(seconds * RATE_HZ)
    for tick in range(ticks):
        await asyncio.sleep(max(0.0, start + tick / RATE_HZ - loop.time()))
        now = datetime.now(UTC)
        for device in devices:
            sample = Sample(TAG, float(tick), Quality.GOOD, "rpm", now)
            batch = TelemetryBatch(device, now, (sample,))
            await nc.publish(TELEMETRY_SUBJECT.format(device=device), batch.encode())
        await nc.flush()
    return ticks


def spread(devices: Sequence[str], subscribers: int) -> list[list[str]]:
    """Each client process's devices, one per subscriber: the followers of a device spread."""
    followed = [devices[i % len(devices)] for i in range(subscribers)]
    return [followed[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]


async def one_round(
    side: Side, nc: NatsClient, devices: Sequence[str], subscribers: int, seconds: float
) -> Run:
    ports = [free_port() for _ in range(side.workers)]
    servers = [Process.start("bench.fanout_server", *side.servers(port)) for port in ports]
    async with AsyncExitStack() as stack:
        running = await stack.enter_async_context(processes(servers))
        for server in running:
            assert (await server.line()).strip() == "ready"
        urls = ",".join(f"ws://127.0.0.1:{port}{side.scheme}" for port in ports)
        clients = [
            Process.start(
                "bench.fanout_clients",
                side.name.split("_")[0],
                "--urls",
                urls,
                "--devices",
                ",".join(part),
                "--token",
                side.token,
            )
            for part in spread(devices, subscribers)
        ]
        connecting = Laps()
        followers = await stack.enter_async_context(processes(clients))
        connected = [json.loads(await client.line()) for client in followers]
        connecting.lap()
        cpu_before = sum(process_cpu_seconds(s.child.pid) for s in running)
        publishing = Laps()
        ticks = await publish(nc, devices, seconds)
        publishing.lap()
        cpu = sum(process_cpu_seconds(s.child.pid) for s in running) - cpu_before
        await asyncio.sleep(DRAIN_SECONDS)
        for client in followers:
            assert client.child.stdin is not None
            client.child.stdin.close()
        received = [json.loads(await client.line()) for client in followers]
    totals = side.totals
    totals["connected"] += sum(c["connected"] for c in connected)
    totals["dropped"] += sum(c["dropped"] for c in connected)
    totals["errors"] += [e for c in connected for e in c["errors"]][:3]
    totals["ended_early"] += sum(r["ended_early"] for r in received)
    totals["connect_seconds"].append(round(connecting.run().seconds, 2))
    totals["fewest_received_of_expected"].append(
        round(min(r["received_min"] for r in received) / ticks, 3)
    )
    totals["server_cpu_share"].append(round(cpu / publishing.run().seconds, 3))
    latencies = [s for r in received for s in r["latencies"]]
    return Run(len(latencies), publishing.run().seconds, latencies)


def plantcore_side(config: BenchConfig, plant: Plant, devices: Sequence[str], workers: int) -> Side:
    def server(port: int) -> list[str]:
        return [
            "plantcore",
            f"--port={port}",
            f"--nats-url={config.nats_url}",
            f"--redis-url={REDIS_URL}",
            f"--database-url={plant.database_url}",
            f"--schema={plant.schema}",
            f"--devices={','.join(devices)}",
            f"--secret={SECRET}",
        ]

    return Side(f"plantcore_{workers}", workers, server, "/graphql", plant.token, new_totals())


def bare_side(config: BenchConfig) -> Side:
    def server(port: int) -> list[str]:
        return ["bare", f"--port={port}", f"--nats-url={config.nats_url}"]

    return Side("bare", 1, server, "", "", new_totals())


def new_totals() -> dict[str, Any]:
    return {
        "connected": 0,
        "dropped": 0,
        "errors": [],
        "ended_early": 0,
        "connect_seconds": [],
        "fewest_received_of_expected": [],
        "server_cpu_share": [],
    }


async def seed_live_state(devices: Sequence[str]) -> None:
    """Each device's snapshot, as the live-state projection leaves it."""
    redis = live_state_client(REDIS_URL)
    try:
        now = datetime.now(UTC)
        for device in devices:
            sample = Sample(TAG, 0.0, Quality.GOOD, "rpm", now)
            await redis.hset(LIVE_KEY.format(device=device), TAG, sample_json(sample))
    finally:
        await redis.aclose()


async def forget_live_state(devices: Sequence[str]) -> None:
    redis = live_state_client(REDIS_URL)
    try:
        await redis.delete(*(LIVE_KEY.format(device=device) for device in devices))
    finally:
        await redis.aclose()


async def run(config: BenchConfig) -> Figures:
    subscribers = config.pick(quick=200, full=500)
    seconds = config.pick(quick=5.0, full=15.0)
    rounds = config.pick(quick=1, full=2)
    workers = config.pick(quick=[1], full=[1, 2])
    devices = [unique_name("fanout") for _ in range(subscribers // FOLLOWERS_PER_DEVICE)]
    with bench_schema(config.database_url) as schema:
        env = {**event_store_env(config.database_url), "POSTGRES_SCHEMA": schema}
        app = PlantApplication(catalog(devices), env=env)
        try:
            token = viewer_token(app, TokenSettings(secret=SECRET, audience="plantcore-bench"))
        finally:
            app.close()
        plant = Plant(config.database_url, schema, token)
        sides = [plantcore_side(config, plant, devices, w) for w in workers] + [bare_side(config)]
        await seed_live_state(devices)
        nc = await nats.connect(config.nats_url)
        try:
            runs = await interleaved(
                rounds,
                {
                    side.name: (
                        lambda side=side: one_round(side, nc, devices, subscribers, seconds)  # type: ignore[misc]
                    )
                    for side in sides
                },
            )
        finally:
            await nc.close()
            await forget_live_state(devices)
    bare = runs["bare"]
    return {
        "params": {
            "subscribers": subscribers,
            "client_processes": CLIENT_PROCESSES,
            "devices": len(devices),
            "followers_per_device": FOLLOWERS_PER_DEVICE,
            "updates_per_s_per_subscriber": RATE_HZ,
            "seconds_per_round": seconds,
            "rounds": rounds,
            "load_average": os.getloadavg(),
        },
        **{
            side.name: {
                **runs[side.name].figures("updates"),
                "workers": side.workers,
                **side.totals,
                "ratio": ratio(runs[side.name], bare),
            }
            for side in sides
        },
    }
