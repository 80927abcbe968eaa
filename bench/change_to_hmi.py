"""change_to_hmi (P2): a value changed in a PLC, seen by an HMI, with the plant busy behind it.

**plantcore**: a whole plant core (:mod:`bench.plant_stack`) runs in this
process for a probe press (the demo plant's Modbus press, polled every
``PROBE_POLL_SECONDS``, served by ``python -m simulators modbus``) and a
background fleet of Modbus devices of 20 tags each at 1 Hz (served by
:mod:`bench.fleet_simulator`; 480 in the full run, 9,600 samples/s, about half
of what telemetry_e2e pushes through the same path at most): their telemetry
goes through the supervisors, the buffer, JetStream, the live state and the
history while the probe is measured. An HMI in another process
(:mod:`bench.hmi_client`) holds a ``tagUpdates`` subscription of the probe
press over graphql-transport-ws. The benchmark writes a new ``speed_setpoint``
into the simulator with pymodbus and times the write → the HMI holding the new
value, one change at a time, at random moments between polls.

Each change's time splits at the sample's ``ts`` (when the supervisor read
it): ``poll_wait``, the change waiting for the next poll (uniform over the
poll period, the same on both sides), and ``after_the_read``, the read's way
through plantcore to the HMI.

**raw**: the same change, read by a bare pymodbus loop polling the same
register at the same period, published on core NATS, received by a bare NATS
subscriber in another process; the same background fleet runs meanwhile. The
ratio is of the mean latencies (changes per second of latency); the target is
p99 < 100 ms for plantcore.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from pymodbus.client import AsyncModbusTcpClient

from bench.common import BenchConfig, Figures, Run, interleaved, latency_ms, ratio, unique_name
from bench.fleet_poll import fleet_devices, fleet_simulator
from bench.modbus_poll import REPO, simulator_process
from bench.plant_stack import PlantStack, modbus_press, plant_stack
from plantcore.embedded import free_port

TAG, REGISTER, UNIT = "speed_setpoint", 1, 1
PROBE_POLL_SECONDS = 0.05
BACKGROUND_POLL_SECONDS = 1.0
TAGS_PER_DEVICE = 20
UNITS_PER_SERVER = 20
BACKGROUND_DEVICES = 480  # 9,600 samples/s
# Between two changes: long enough for the last to arrive, random against the poll.
GAP_SECONDS = (0.1, 0.3)
ARRIVAL_TIMEOUT = 10.0
TARGET_P99_MS = 100


class Watcher:
    """A ``bench.hmi_client`` streaming what it sees: the first arrival of each value."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._arrivals: dict[int, tuple[float, float]] = {}
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            seen = json.loads(line)
            if "value" not in seen:
                continue
            value, ts = int(seen["value"]), seen["ts"]
            if isinstance(ts, str):
                ts = datetime.fromisoformat(ts).timestamp()
            async with self._arrived:
                self._arrivals.setdefault(value, (seen["received"], ts))
                self._arrived.notify_all()

    def forget(self, value: int) -> None:
        """Drop an earlier arrival of ``value`` (the simulator's first setpoint is one of them)."""
        self._arrivals.pop(value, None)

    async def arrival(self, value: int) -> tuple[float, float]:
        """When the HMI got ``value`` and the ``ts`` it came with."""
        async with asyncio.timeout(ARRIVAL_TIMEOUT), self._arrived:
            await self._arrived.wait_for(lambda: value in self._arrivals or self._reader.done())
        if value not in self._arrivals:
            raise RuntimeError(f"the HMI client stopped before {value} arrived")
        return self._arrivals[value]


@contextlib.asynccontextmanager
async def watching(task: dict[str, Any]) -> AsyncIterator[Watcher]:
    """``bench.hmi_client`` doing ``task``, once it says it is ready; terminated at the end."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.hmi_client"),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(json.dumps(task).encode() + b"\n")
        await process.stdin.drain()
        async with asyncio.timeout(30):
            ready = json.loads(await process.stdout.readline() or b"{}")
        if not ready.get("ready"):
            raise RuntimeError(f"the HMI client did not start: {ready}")
        yield Watcher(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


class Changes:
    """New setpoints written into the probe's simulator, each timed to its arrival."""

    def __init__(self, modbus: AsyncModbusTcpClient) -> None:
        self._modbus = modbus
        self._next = 0
        self.poll_wait: dict[str, list[float]] = {"plantcore": [], "raw": []}

    async def measure(self, side: str, watcher: Watcher, count: int) -> Run:
        durations = []
        for _ in range(count):
            await asyncio.sleep(random.uniform(*GAP_SECONDS))
            value = 1000 + self._next % 2000
            self._next += 1
            # The register holds the previous value, never this one: the write changes it, and
            # only an arrival after it counts (a full run comes round to the initial 1200).
            watcher.forget(value)
            changed = time.time()
            response = await self._modbus.write_register(REGISTER, value, device_id=UNIT)
            if response.isError():
                raise RuntimeError(f"the simulator refused the write: {response}")
            received, ts = await watcher.arrival(value)
            durations.append(received - changed)
            self.poll_wait[side].append(max(0.0, ts - changed))
        return Run(len(durations), sum(durations), durations)


async def bare_poller(nc: NatsClient, port: int, subject: str) -> None:
    """The raw side's reader: pymodbus polls the register, each value goes out on NATS."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0)
    if not await client.connect():
        raise ConnectionError(f"no Modbus server on port {port}")
    try:
        while True:
            started = time.monotonic()
            response = await client.read_holding_registers(REGISTER, count=1, device_id=UNIT)
            payload = {"value": response.registers[0], "ts": time.time()}
            await nc.publish(subject, json.dumps(payload).encode())
            await asyncio.sleep(max(0.0, PROBE_POLL_SECONDS - (time.monotonic() - started)))
    finally:
        client.close()


@contextlib.asynccontextmanager
async def raw_side(config: BenchConfig, port: int) -> AsyncIterator[Watcher]:
    subject = f"bench.changes.{unique_name('press')}"
    nc = await nats.connect(config.nats_url)
    poller = asyncio.create_task(bare_poller(nc, port, subject))
    try:
        task = {"mode": "nats", "nats_url": config.nats_url, "subject": subject}
        async with watching(task) as watcher:
            yield watcher
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await nc.close()


@contextlib.asynccontextmanager
async def plantcore_side(stack: PlantStack, device: str) -> AsyncIterator[Watcher]:
    hmi = await stack.hmi()
    task = {
        "mode": "tag_updates",
        "ws_url": stack.ws_url,
        "token": hmi.token,
        "device": device,
        "tag": TAG,
    }
    async with watching(task) as watcher:
        yield watcher


async def run(config: BenchConfig) -> Figures:
    per_round = config.pick(quick=25, full=100)
    rounds = config.pick(quick=2, full=3)
    # Devices of 20 tags at 1 Hz behind the probe: in the full run about half of what
    # telemetry_e2e (P1) pushes through the same path at most (19,200 samples/s).
    background = config.pick(quick=40, full=BACKGROUND_DEVICES)
    servers = -(-background // UNITS_PER_SERVER)
    port = free_port()
    probe = unique_name("bench-probe").replace("_", "-")
    fleet_prefix = unique_name("bench-bg").replace("_", "-")
    async with (
        simulator_process(port),
        fleet_simulator(servers, UNITS_PER_SERVER) as fleet,
    ):
        devices = [
            modbus_press(probe, port).model_copy(update={"poll_seconds": PROBE_POLL_SECONDS}),
            *fleet_devices(fleet_prefix, fleet.ports, UNITS_PER_SERVER, background),
        ]
        async with plant_stack(config, devices, poll_seconds=BACKGROUND_POLL_SECONDS) as stack:
            modbus = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0)
            if not await modbus.connect():
                raise ConnectionError(f"no Modbus server on port {port}")
            changes = Changes(modbus)
            try:
                async with (
                    plantcore_side(stack, probe) as ours,
                    raw_side(config, port) as raw,
                ):
                    # Untimed: the first changes warm every connection and statement.
                    await changes.measure("plantcore", ours, 3)
                    await changes.measure("raw", raw, 3)
                    changes.poll_wait = {"plantcore": [], "raw": []}
                    runs = await interleaved(
                        rounds,
                        {
                            "plantcore": lambda: changes.measure("plantcore", ours, per_round),
                            "raw": lambda: changes.measure("raw", raw, per_round),
                        },
                    )
            finally:
                modbus.close()
    figures: Figures = {
        "params": {
            "changes_per_round": per_round,
            "rounds": rounds,
            "probe_poll_seconds": PROBE_POLL_SECONDS,
            "background_devices": background,
            "background_samples_per_s": background * TAGS_PER_DEVICE / BACKGROUND_POLL_SECONDS,
            "target_p99_ms": TARGET_P99_MS,
        },
    }
    for side, each in runs.items():
        after_the_read = [
            total - wait
            for total, wait in zip(each.durations, changes.poll_wait[side], strict=True)
        ]
        figures[side] = {
            **each.figures("changes"),
            "poll_wait_ms": latency_ms(changes.poll_wait[side]),
            "after_the_read_ms": latency_ms(after_the_read),
        }
    figures["ratio"] = ratio(runs["plantcore"], runs["raw"])
    figures["target_met"] = latency_ms(runs["plantcore"].durations)["p99"] < TARGET_P99_MS
    return figures
