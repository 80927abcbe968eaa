"""modbus_poll: poll cycles per second of a ``DeviceSupervisor`` with a ``ModbusDriver``.

The device is the press simulator (five tags in holding registers 0 to 6, so one
read of seven registers per cycle), run in a process of its own as a PLC
would be on its own hardware. The supervisor polls with a period so short
(``poll_seconds`` of a microsecond) that it never waits: each cycle starts as
soon as the last one has published, so the figure is its ceiling, not the
period. Its sink only counts and times the batches.

The raw side is a bare pymodbus ``AsyncModbusTcpClient`` reading the same
registers in a loop (``read_holding_registers(0, count=7, device_id=1)``), from
the same process, against the same simulator. A third contender is the same
supervisor publishing through the real ``NatsTelemetrySink``: each batch
appended to the buffer on disk, from which the forwarder, in the same process,
publishes it into the TELEMETRY stream, to show what publishing costs. After
each such round the bench notes what the forwarder had not sent yet (the
backlog) and waits, untimed, until it has; the messages are purged from the
stream at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from pymodbus.client import AsyncModbusTcpClient

from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from devices.drivers.modbus import ModbusDriver
from devices.nats_bridge import NatsTelemetrySink, OutboxForwarder, forwarding
from devices.outbox import Outbox
from devices.supervisor import DeviceSupervisor, SupervisionPolicy, TelemetrySink
from domain.messages import (
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    AlarmTransition,
    DeviceStatus,
    TelemetryBatch,
)
from plantcore.embedded import free_port
from plantcore.streams import ensure_telemetry_stream
from plantfile.protocols.modbus import ModbusConnection, ModbusDevice
from simulators.modbus_server import PRESS_REGISTERS

POLL_SECONDS = 1e-6
WARM_UP_CYCLES = 50
FIRST_REGISTER, REGISTERS, UNIT = 0, 7, 1
STREAM = "TELEMETRY"
REPO = Path(__file__).parents[1]


class MeteredSink:
    """Hands each batch on to ``inner`` (if any) and times it, after a warm-up.

    ``measuring`` is set when the warm-up's batches are through; ``laps`` times
    every batch from then on.
    """

    def __init__(self, inner: TelemetrySink | None = None) -> None:
        self._inner = inner
        self._warm_up_left = WARM_UP_CYCLES
        self.measuring = asyncio.Event()
        self.laps = Laps()

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        if self._inner is not None:
            await self._inner.publish_batch(batch)
        if self.measuring.is_set():
            self.laps.lap()
            return
        self._warm_up_left -= 1
        if self._warm_up_left <= 0:
            self.laps = Laps()
            self.measuring.set()

    async def publish_status(self, status: DeviceStatus) -> None:
        if self._inner is not None:
            await self._inner.publish_status(status)

    async def publish_alarm(self, transition: AlarmTransition) -> None:
        if self._inner is not None:
            await self._inner.publish_alarm(transition)


class BufferedNats:
    """The sink ``plantcore run`` gives its supervisors: the buffer and its forwarder."""

    def __init__(self, sink: NatsTelemetrySink, outbox: Outbox, forwarder: OutboxForwarder) -> None:
        self.sink = sink
        self._outbox = outbox
        self._forwarder = forwarder
        self._backlogs: list[int] = []

    @property
    def forwarded(self) -> int:
        return self._outbox.figures().forwarded

    @property
    def backlog(self) -> int:
        """Entries the forwarder has not sent yet."""
        return len(self._outbox)

    async def settle(self) -> None:
        """Note what waits to be sent, then wait (untimed, up to a minute) until it has gone."""
        self._backlogs.append(self.backlog)
        async with asyncio.timeout(60):
            await self._forwarder.drained()

    def figures(self) -> Figures:
        figures = self._outbox.figures()
        return {
            "forwarded": self.forwarded,
            "backlog_at_round_end_max": max(self._backlogs, default=0),
            "dropped": sum(figures.dropped.values()),
            "forward_retries": self._forwarder.retries,
        }


@asynccontextmanager
async def buffered_nats(nc: NatsClient) -> AsyncIterator[BufferedNats]:
    """A buffer in a temporary directory, its forwarder running into ``nc``'s JetStream."""
    with tempfile.TemporaryDirectory(prefix="bench-buffer-") as directory:
        outbox = Outbox.open(Path(directory), max_bytes=1024 * 1024 * 1024)
        try:
            forwarder = OutboxForwarder(outbox, nc)
            async with forwarding(forwarder) as sink:
                yield BufferedNats(sink, outbox, forwarder)
        finally:
            outbox.close()


class SupervisedDevice:
    """Rounds of a supervisor on the device, each with a fresh sink, connection and task."""

    def __init__(self, device: ModbusDevice, sink: TelemetrySink | None = None) -> None:
        self._device = device
        self._sink = sink
        self.lost_cancellations = 0

    async def round(self, seconds: float) -> Run:
        """The supervisor's cycles in a window of ``seconds`` after a warm-up."""
        sink = MeteredSink(self._sink)
        supervisor = DeviceSupervisor(
            self._device,
            ModbusDriver(self._device),
            sink,
            policy=SupervisionPolicy(poll_seconds=POLL_SECONDS),
        )
        task = asyncio.create_task(supervisor.run(), name=f"bench-{self._device.id}")
        try:
            async with asyncio.timeout(10):
                await sink.measuring.wait()
            await asyncio.sleep(seconds)
            measured = sink.laps.run()
        finally:
            await self._stop(task)
        if supervisor.counters.failed_cycles:
            raise RuntimeError(f"{supervisor.counters.failed_cycles} cycles read no good value")
        return measured

    async def _stop(self, task: asyncio.Task[None]) -> None:
        """Cancel until the task ends, counting the cancellations it swallowed.

        On Python 3.11, ``asyncio.wait_for`` (which pymodbus awaits every response
        with) drops a cancellation that arrives as the response does, and the
        supervisor polls on; see docs/performance.md.
        """
        while True:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return
            self.lost_cancellations += 1


async def bare_client(device: ModbusDevice, seconds: float) -> Run:
    """A bare pymodbus loop over the same registers, for the same window."""
    conn = device.modbus
    client = AsyncModbusTcpClient(
        conn.host, port=conn.port, timeout=conn.timeout_seconds, retries=0, reconnect_delay=0
    )
    if not await client.connect():
        raise ConnectionError(f"no Modbus server at {conn.host}:{conn.port}")
    try:
        for _ in range(WARM_UP_CYCLES):
            await client.read_holding_registers(FIRST_REGISTER, count=REGISTERS, device_id=UNIT)
        laps = Laps()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            response = await client.read_holding_registers(
                FIRST_REGISTER, count=REGISTERS, device_id=UNIT
            )
            if response.isError():
                raise RuntimeError(f"the simulator refused the read: {response}")
            laps.lap()
        return laps.run()
    finally:
        client.close()


@asynccontextmanager
async def simulator_process(port: int, *options: str) -> AsyncIterator[None]:
    """``python -m simulators modbus --port <port> <options>`` until it listens; then stopped."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "simulators", "modbus", "--port", str(port), *options),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def telemetry_stream(nats_url: str, device: str) -> AsyncIterator[NatsClient]:
    """A client of NATS and the TELEMETRY stream, purged of ``device``'s messages at the end."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_telemetry_stream(js, STREAM)
        try:
            yield nc
        finally:
            for subject in (TELEMETRY_SUBJECT, STATUS_SUBJECT):
                await js.purge_stream(STREAM, subject=subject.format(device=device))
    finally:
        await nc.close()


async def run(config: BenchConfig) -> Figures:
    seconds = config.pick(quick=1.0, full=5.0)
    rounds = config.pick(quick=1, full=3)
    port = free_port()
    device = ModbusDevice(
        id=unique_name("bench-press"),
        protocol="modbus",
        modbus=ModbusConnection(host="127.0.0.1", port=port, device_id=UNIT, timeout_seconds=2.0),
        tags=[register.tag for register in PRESS_REGISTERS],
    )
    async with (
        simulator_process(port),
        telemetry_stream(config.nats_url, device.id) as nc,
        buffered_nats(nc) as buffered,
    ):
        counting, publishing = SupervisedDevice(device), SupervisedDevice(device, buffered.sink)

        async def bare() -> Run:
            return await bare_client(device, seconds)

        async def counting_round() -> Run:
            return await counting.round(seconds)

        async def publishing_round() -> Run:
            run = await publishing.round(seconds)
            await buffered.settle()
            return run

        runs = await interleaved(
            rounds, {"raw": bare, "plantcore": counting_round, "plantcore_nats": publishing_round}
        )
    return {
        "params": {
            "seconds_per_round": seconds,
            "rounds": rounds,
            "tags": len(device.tags),
            "registers_per_read": REGISTERS,
            "poll_seconds": POLL_SECONDS,
        },
        **{name: each.figures("cycles") for name, each in runs.items()},
        "ratio": ratio(runs["plantcore"], runs["raw"]),
        "ratio_nats": ratio(runs["plantcore_nats"], runs["raw"]),
        "nats_buffer": buffered.figures(),
        # Cancellations of a supervisor that pymodbus's wait_for swallowed (Python 3.11).
        "lost_cancellations": counting.lost_cancellations + publishing.lost_cancellations,
    }
