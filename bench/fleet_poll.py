"""fleet_poll: 200 Modbus devices of 20 tags polled at 1 Hz by one plantcore process.

The devices are served by :mod:`bench.fleet_simulator` in a process of its own
(ten Modbus TCP servers of 20 unit ids each, every unit a device of 20 tags in
30 holding registers), so that only plantcore's work is counted here. This
process runs what ``plantcore run`` runs for them: a :class:`~devices.fleet.Fleet`
of 200 supervisors with ``poll_seconds: 1.0``, one TCP connection each,
publishing every batch through the real ``NatsTelemetrySink`` (the buffer on disk,
and its forwarder into the TELEMETRY stream) and serving ``plant.write.<device>``
with ``serve_writes``.

After a warm-up, a fixed window measures the process's CPU time over wall time
(its share of one core), its resident memory, the polls and samples per second
the fleet achieved against the ideal 200 polls/s, and the poll cycle times. A
probe task samples each supervisor's ``last_cycle_seconds`` and the event loop's
lag every 0.1 s, which costs well under 0.1% of a core.

Then, with the fleet stopped and in the same run, modbus_poll's comparison on
one of these devices: a supervisor polling as fast as it can against a bare
pymodbus loop sending the same read requests to the same simulator.

Every device's messages are purged from the TELEMETRY stream at the end
(fleet_1000 runs on a NATS server of its own instead, :func:`nats_of_its_own`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import PubAck
from nats.js.client import JetStreamContext
from pymodbus.client import AsyncModbusTcpClient

from bench.common import (
    BenchConfig,
    Figures,
    Laps,
    Run,
    interleaved,
    latency_ms,
    ratio,
    unique_name,
)
from bench.fleet_simulator import FLEET_TAGS, REGISTERS, initial_raw
from bench.modbus_poll import (
    POLL_SECONDS,
    REPO,
    STREAM,
    WARM_UP_CYCLES,
    BufferedNats,
    SupervisedDevice,
    buffered_nats,
)
from devices.drivers.modbus import ReadBlock, plan_reads
from devices.fleet import Fleet
from devices.nats_bridge import serve_writes
from domain.messages import (
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    WRITE_SUBJECT,
    ConnectionState,
    Quality,
    Sample,
    TelemetryBatch,
    WriteReply,
    WriteRequest,
)
from plantcore.streams import ensure_telemetry_stream
from plantfile.plant import PlantConfig
from plantfile.protocols.modbus import ModbusConnection, ModbusDevice
from support.clock import utc_now
from tests.private_services import private_nats

DEVICES = 200
UNITS_PER_SERVER = 20
FLEET_POLL_SECONDS = 1.0
PROBE_SECONDS = 0.1
CONNECT_TIMEOUT = 30.0
PURGES_IN_FLIGHT = 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the simulator process -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatorProcess:
    pid: int
    ports: tuple[int, ...]


@asynccontextmanager
async def fleet_simulator(servers: int, units: int) -> AsyncIterator[SimulatorProcess]:
    """``python -m bench.fleet_simulator`` until it says ``ready`` and where; SIGTERM at the end."""
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.fleet_simulator"),
            *("--servers", str(servers), "--units", str(units)),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(30):
                line = await process.stdout.readline()
            ready, _, ports = line.decode().partition(" ")
            if ready != "ready":
                await process.wait()
                errors.seek(0)
                detail = errors.read().decode(errors="replace")
                raise RuntimeError(f"the fleet simulator did not start:\n{detail}")
            yield SimulatorProcess(process.pid, tuple(int(port) for port in ports.split(",")))
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(10):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


def fleet_devices(
    prefix: str, ports: Sequence[int], units: int, count: int = DEVICES
) -> list[ModbusDevice]:
    """``count`` devices, ``units`` per simulator port, each with its own connection."""
    return [
        ModbusDevice(
            id=f"{prefix}-{index:03d}",
            protocol="modbus",
            modbus=ModbusConnection(
                host="127.0.0.1",
                port=ports[index // units],
                device_id=1 + index % units,
                timeout_seconds=2.0,
            ),
            tags=FLEET_TAGS,
        )
        for index in range(count)
    ]


# -- what the machine and the processes did ------------------------------------------------


def memory_kb() -> dict[str, int]:
    """This process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), in kB."""
    fields: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def reset_peak_memory() -> bool:
    """Restart ``VmHWM`` from the current RSS (``clear_refs`` 5): the peak is then the fleet's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of another process, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine, all cores, from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values)  # user nice system idle iowait irq softirq steal; guest is in user
    return total - idle, total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The fleet's counters and the CPU clocks at one instant."""

    wall: float
    user: float
    system: float
    simulator_cpu: float
    machine_busy: int
    machine_total: int
    cycles: int
    failed_cycles: int
    cycle_seconds: float
    samples: int
    reconnects: int
    restarts: int
    forwarded: int
    backlog: int

    @staticmethod
    def take(fleet: Fleet, buffered: BufferedNats, simulator_pid: int) -> Snapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = machine_ticks()
        counters = [m.supervisor.counters for m in fleet if m.supervisor is not None]
        return Snapshot(
            wall=time.perf_counter(),
            user=usage.ru_utime,
            system=usage.ru_stime,
            simulator_cpu=process_cpu_seconds(simulator_pid),
            machine_busy=busy,
            machine_total=total,
            cycles=sum(c.cycles for c in counters),
            failed_cycles=sum(c.failed_cycles for c in counters),
            cycle_seconds=sum(c.cycle_seconds_total for c in counters),
            samples=sum(c.samples_published for c in counters),
            reconnects=sum(c.reconnects for c in counters),
            restarts=sum(member.restarts for member in fleet),
            forwarded=buffered.forwarded,
            backlog=buffered.backlog,
        )


class Probe:
    """Every ``PROBE_SECONDS``: each new cycle's ``last_cycle_seconds``, and the loop's lag.

    The lag is how late the probe's own sleep ends: the time a poll due now
    waits for the event loop.
    """

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._seen: dict[str, int] = {}
        self.cycle_seconds: list[float] = []
        self.lag_seconds: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._sample()  # the cycles so far are not the window's
        self.cycle_seconds.clear()
        while True:
            due = loop.time() + PROBE_SECONDS
            await asyncio.sleep(PROBE_SECONDS)
            self.lag_seconds.append(loop.time() - due)
            self._sample()

    def _sample(self) -> None:
        for member in self._fleet:
            supervisor = member.supervisor
            if supervisor is None:
                continue
            counters = supervisor.counters
            if counters.cycles != self._seen.get(member.device_id):
                self._seen[member.device_id] = counters.cycles
                self.cycle_seconds.append(counters.last_cycle_seconds)


# -- the fleet at 1 Hz ---------------------------------------------------------------------


async def wait_connected(fleet: Fleet) -> None:
    """Until every supervisor is connected (the supervisors publish their state, not signal it)."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        while True:
            if all(
                member.supervisor is not None
                and member.supervisor.state is ConnectionState.CONNECTED
                for member in fleet
            ):
                return
            await asyncio.sleep(0.05)


async def between_polls(fleet: Fleet) -> None:
    """Return in a lull of the fleet's polls, if there is one within two periods.

    The supervisors connect together, so their grids share a phase and the
    fleet polls in one burst a period. A window that starts and ends in the
    lull between bursts, a whole number of periods long, counts each device's
    cycles exactly: ``cycles_expected - cycles`` is then the missed ticks.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 2 * FLEET_POLL_SECONDS
    lull = FLEET_POLL_SECONDS / 4
    last, since = -1, loop.time()
    while (now := loop.time()) < give_up:
        cycles = sum(m.supervisor.counters.cycles for m in fleet if m.supervisor is not None)
        if cycles != last:
            last, since = cycles, now
        elif now - since >= lull:
            return
        await asyncio.sleep(0.01)


async def check_write(nc: NatsClient, device: str) -> Figures:
    """One write through ``plant.write.<device>`` after the window: the write services answer."""
    request = WriteRequest(tag="speed_setpoint", command_id=unique_name("bench"), value=1500)
    started = time.perf_counter()
    msg = await nc.request(WRITE_SUBJECT.format(device=device), request.encode(), timeout=5)
    reply = WriteReply.decode(msg.data)
    if not reply.ok or reply.read_back != request.value:
        raise RuntimeError(f"the write to {device} failed: {reply}")
    return {"ok": reply.ok, "round_trip_ms": round((time.perf_counter() - started) * 1000, 3)}


@dataclass(frozen=True, slots=True)
class Sizes:
    warm_up_seconds: float
    window_seconds: float
    seconds_per_round: float
    rounds: int

    @staticmethod
    def of(config: BenchConfig) -> Sizes:
        return Sizes(
            warm_up_seconds=config.pick(quick=2.0, full=5.0),
            window_seconds=config.pick(quick=5.0, full=30.0),
            seconds_per_round=config.pick(quick=1.0, full=4.0),
            rounds=config.pick(quick=1, full=3),
        )


async def measure_fleet(
    sizes: Sizes,
    devices: list[ModbusDevice],
    simulator: SimulatorProcess,
    nc: NatsClient,
    buffered: BufferedNats,
) -> Figures:
    plant = PlantConfig(plant_id=devices[0].id, poll_seconds=FLEET_POLL_SECONDS, devices=devices)
    rss_before = memory_kb()["VmRSS"]
    peak_reset = reset_peak_memory()
    fleet = Fleet(plant, buffered.sink, partial(serve_writes, nc))
    started = time.perf_counter()
    try:
        await fleet.start()
        await wait_connected(fleet)
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(sizes.warm_up_seconds)
        await between_polls(fleet)
        probe = Probe(fleet)
        probe_task = asyncio.create_task(probe.run(), name="fleet-probe")
        try:
            before = Snapshot.take(fleet, buffered, simulator.pid)
            await asyncio.sleep(sizes.window_seconds)
            after = Snapshot.take(fleet, buffered, simulator.pid)
        finally:
            probe_task.cancel()
            await asyncio.wait({probe_task})
        memory = memory_kb()
        write = await check_write(nc, devices[0].id)
    finally:
        await fleet.stop()

    seconds = after.wall - before.wall
    cycles = after.cycles - before.cycles
    expected = len(devices) * round(seconds / FLEET_POLL_SECONDS)
    cpu_user, cpu_system = after.user - before.user, after.system - before.system
    mean_cycle = (after.cycle_seconds - before.cycle_seconds) / cycles if cycles else 0.0
    busy = after.machine_busy - before.machine_busy
    total = after.machine_total - before.machine_total
    busy_cores = busy / total * (os.cpu_count() or 1) if total else 0.0
    simulator_cpu = after.simulator_cpu - before.simulator_cpu

    def share(cpu_seconds: float) -> float:
        return round(cpu_seconds / seconds, 4)

    return {
        "seconds": round(seconds, 3),
        "connect_seconds": round(connect_seconds, 3),
        "cpu": {
            "share_of_one_core": share(cpu_user + cpu_system),
            "user": share(cpu_user),
            "system": share(cpu_system),
            "cpu_ms_per_poll": round((cpu_user + cpu_system) / cycles * 1000, 3) if cycles else 0,
        },
        "memory_mb": {
            "rss_before_fleet": round(rss_before / 1024, 1),
            "rss_end": round(memory["VmRSS"] / 1024, 1),
            # Since the fleet started if the kernel let the peak be reset, else since process start.
            "peak": round(memory["VmHWM"] / 1024, 1),
            "peak_is_the_fleets": peak_reset,
            "per_device_kb": round((memory["VmRSS"] - rss_before) / len(devices), 1),
        },
        "polls_per_s": round(cycles / seconds, 2),
        "ideal_polls_per_s": round(len(devices) / FLEET_POLL_SECONDS, 2),
        "cycles": cycles,
        "cycles_expected": expected,
        "missed_ticks": max(0, expected - cycles),
        "failed_cycles": after.failed_cycles - before.failed_cycles,
        "samples_per_s": round((after.samples - before.samples) / seconds, 1),
        "cycle_ms": {
            "mean": round(mean_cycle * 1000, 3),
            "sampled": len(probe.cycle_seconds),
            **latency_ms(probe.cycle_seconds),
        },
        "event_loop_lag_ms": latency_ms(probe.lag_seconds),
        "nats": {
            "publishes_per_s": round((after.forwarded - before.forwarded) / seconds, 1),
            # What waited in the buffer for the forwarder at the window's end.
            "backlog_end": after.backlog,
            **buffered.figures(),
        },
        "reconnects": after.reconnects - before.reconnects,
        "restarts": after.restarts - before.restarts,
        "simulator_cpu_share": share(simulator_cpu),
        # The whole machine, in cores busy, and what of it was neither this process nor
        # the simulator: NATS, and whatever else ran on the machine at the time.
        "machine_busy_cores": round(busy_cores, 3),
        "other_processes_cores": round(
            busy_cores - (cpu_user + cpu_system + simulator_cpu) / seconds, 3
        ),
        "write_check": write,
    }


# -- one device as fast as it goes, against bare pymodbus ----------------------------------


# After each cycle's reads, what the bare loop does with them (nothing, or publish a batch).
AfterCycle = Callable[[], Awaitable[object]]


async def nothing() -> None:
    return None


async def bare_reads(device: ModbusDevice, seconds: float, after: AfterCycle = nothing) -> Run:
    """modbus_poll's raw loop, sending the requests the driver plans for ``device``'s tags."""
    conn = device.modbus
    blocks = plan_reads(device.tags)
    client = AsyncModbusTcpClient(
        conn.host, port=conn.port, timeout=conn.timeout_seconds, retries=0, reconnect_delay=0
    )
    if not await client.connect():
        raise ConnectionError(f"no Modbus server at {conn.host}:{conn.port}")

    async def read(block: ReadBlock) -> None:
        response = await client.read_holding_registers(
            block.start, count=block.count, device_id=conn.device_id
        )
        if response.isError():
            raise RuntimeError(f"the simulator refused the read: {response}")

    try:
        for _ in range(WARM_UP_CYCLES):
            for block in blocks:
                await read(block)
            await after()
        laps = Laps()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for block in blocks:
                await read(block)
            await after()
            laps.lap()
        return laps.run()
    finally:
        client.close()


def typical_batch(device: ModbusDevice) -> bytes:
    """A batch of ``device`` as its supervisor encodes one: what the bare loop publishes."""
    ts = utc_now()
    samples = tuple(
        Sample(tag.name, initial_raw(tag, 1), Quality.GOOD, tag.unit, ts) for tag in FLEET_TAGS
    )
    return TelemetryBatch(device.id, ts, samples).encode()


def jetstream_publisher(nc: NatsClient, device: ModbusDevice) -> AfterCycle:
    """Publish ``device``'s typical batch to JetStream and wait for the ack, as a bare client does.

    With a ``Nats-Msg-Id`` of its own each time, as plantcore's forwarder sends,
    so that JetStream does the same work (its duplicate window) for both.
    """
    js = nc.jetstream()
    subject = TELEMETRY_SUBJECT.format(device=device.id)
    payload = typical_batch(device)

    async def publish() -> PubAck:
        return await js.publish(subject, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})

    return publish


async def measure_one_device(
    sizes: Sizes, device: ModbusDevice, nc: NatsClient, buffered: BufferedNats
) -> Figures:
    seconds = sizes.seconds_per_round
    counting, publishing = SupervisedDevice(device), SupervisedDevice(device, buffered.sink)
    publish = jetstream_publisher(nc, device)

    async def bare() -> Run:
        return await bare_reads(device, seconds)

    async def bare_nats() -> Run:
        return await bare_reads(device, seconds, publish)

    async def counting_round() -> Run:
        return await counting.round(seconds)

    async def publishing_round() -> Run:
        run = await publishing.round(seconds)
        await buffered.settle()
        return run

    runs = await interleaved(
        sizes.rounds,
        {
            "raw": bare,
            "raw_nats": bare_nats,
            "plantcore": counting_round,
            "plantcore_nats": publishing_round,
        },
    )
    return {
        **{name: each.figures("cycles") for name, each in runs.items()},
        "ratio": ratio(runs["plantcore"], runs["raw"]),
        # Publishing on both sides: the supervisor through its buffer, the bare loop awaiting acks.
        "ratio_nats": ratio(runs["plantcore_nats"], runs["raw_nats"]),
        # Publishing against the bare loop that does not publish at all.
        "ratio_nats_vs_pymodbus": ratio(runs["plantcore_nats"], runs["raw"]),
        "nats_buffer": buffered.figures(),
        # Cancellations of a supervisor that pymodbus's wait_for swallowed (Python 3.11).
        "lost_cancellations": counting.lost_cancellations + publishing.lost_cancellations,
    }


# -- the run -------------------------------------------------------------------------------


@asynccontextmanager
async def nats_of_its_own() -> AsyncIterator[str]:
    """A NATS server with JetStream of the run's own on a spare port; its URL.

    Stopped by its PID and its store deleted at the end, so nothing needs purging
    from the shared server: 2,000 purges of one subject each from the shared
    TELEMETRY stream took 20 to 70 s on the busy machine, more than the run.
    """
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as root:
        # Started from this (the main) thread: the server dies with it (PR_SET_PDEATHSIG).
        server = private_nats(Path(root))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@asynccontextmanager
async def telemetry_stream(
    nats_url: str, devices: Sequence[ModbusDevice], *, purge: bool = True
) -> AsyncIterator[NatsClient]:
    """A client of NATS and the TELEMETRY stream, purged of the bench devices' messages at the end.

    Device ids are single subject tokens, so only one purge per subject leaves
    other devices' messages alone. The purges are sent ``PURGES_IN_FLIGHT`` at a
    time: one after another, 2,000 of them (fleet_1000) took 20 s on a busy machine.
    """
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_telemetry_stream(js, STREAM)
        try:
            yield nc
        finally:
            if purge:
                await purge_devices(js, devices)
    finally:
        with suppress(nats.errors.Error):
            await nc.close()


async def purge_devices(js: JetStreamContext, devices: Sequence[ModbusDevice]) -> None:
    """Purge ``devices``' telemetry and status from the stream, ``PURGES_IN_FLIGHT`` at a time."""
    in_flight = asyncio.Semaphore(PURGES_IN_FLIGHT)

    async def purge(subject: str) -> None:
        async with in_flight:
            await js.purge_stream(STREAM, subject=subject)

    await asyncio.gather(
        *(
            purge(subject.format(device=device.id))
            for device in devices
            for subject in (TELEMETRY_SUBJECT, STATUS_SUBJECT)
        )
    )


async def run(config: BenchConfig) -> Figures:
    return await measure(config, DEVICES)


async def measure(config: BenchConfig, count: int, *, own_nats: bool = False) -> Figures:
    """The fleet of ``count`` devices at 1 Hz, then the one-device comparison.

    On the machine's NATS (``config.nats_url``), purged of the run's devices at the
    end, or with ``own_nats`` on a NATS server of the run's own.
    """
    sizes = Sizes.of(config)
    servers = count // UNITS_PER_SERVER
    async with (
        nats_of_its_own() if own_nats else nullcontext(config.nats_url) as nats_url,
        fleet_simulator(servers, UNITS_PER_SERVER) as simulator,
    ):
        devices = fleet_devices(
            unique_name("bench_fleet"), simulator.ports, UNITS_PER_SERVER, count
        )
        async with telemetry_stream(nats_url, devices, purge=not own_nats) as nc:
            async with buffered_nats(nc) as buffered:
                fleet = await measure_fleet(sizes, devices, simulator, nc, buffered)
            async with buffered_nats(nc) as buffered:
                one_device = await measure_one_device(sizes, devices[0], nc, buffered)
    blocks = plan_reads(FLEET_TAGS)
    return {
        "params": {
            "devices": count,
            "tags_per_device": len(FLEET_TAGS),
            "registers_per_device": REGISTERS,
            "reads_per_cycle": len(blocks),
            "registers_per_read": max(block.count for block in blocks),
            "poll_seconds": FLEET_POLL_SECONDS,
            "simulator": {"servers": servers, "units_per_server": UNITS_PER_SERVER},
            "warm_up_seconds": sizes.warm_up_seconds,
            "window_seconds": sizes.window_seconds,
            # The one-device comparison, after the fleet's window.
            "seconds_per_round": sizes.seconds_per_round,
            "rounds": sizes.rounds,
            "one_device_poll_seconds": POLL_SECONDS,
            "nats": "of its own" if own_nats else "the machine's",
        },
        "fleet": fleet,
        **one_device,
    }
