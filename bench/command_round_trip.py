"""command_round_trip (P3): a confirmed command's way to the PLC and back, as an HMI sees it.

**plantcore**: a whole plant core (:mod:`bench.plant_stack`: API, event store,
log tail, dispatcher, supervisor, buffer) runs in this process for one press,
the demo plant's Modbus press, served by ``python -m simulators modbus`` in a
process of its own that logs every write it applies (the PLC's own record).
An HMI in another process (:mod:`bench.hmi_client`) requests a setpoint,
subscribes to its ``commandStatus``, then times ``confirmCommand`` sent →
``WriteSucceeded`` received on that subscription. Between the two: the
confirmation's checks and save, the dispatcher's wake-up and load, the
``WriteDispatched`` save, the NATS request to the supervisor, the Modbus write
and read-back, the reply, the ``WriteSucceeded`` save, the log tail's read and
the subscription's delivery over the WebSocket. Commands go one after
another, each a new value.

Where the time goes, per command, from the HMI's clock, the events' ``at``
(each use case's clock reading) and the simulator's write log, all on this
machine's clock:

- ``confirm``: the mutation sent → answered (TOTP check, loads, save);
- ``dispatch_wake_up``: answered → the dispatcher's ``record_dispatch``
  (the log tail's wake-up and read, the command's load);
- ``to_the_plc``: → the simulator applied the write (``WriteDispatched``
  saved, NATS request, the supervisor's queue, the Modbus request);
- ``write_and_read_back``: → ``record_write_succeeded`` (the Modbus reply,
  the read-back, the NATS reply);
- ``recorded_and_notified``: → the HMI holds ``WriteSucceeded`` (its save,
  the log tail's wake-up and read, the subscription, the WebSocket).

**raw**: the same steps on the bare libraries, in this process: the bare
eventsourcing application of :mod:`bench.command_store` loads and saves the
command's ``Confirmed`` (with the operator's step) and ``WriteDispatched``,
a NATS request goes to a bare responder that writes the register with
pymodbus and reads it back from the same simulator, and ``WriteSucceeded`` is
saved. Its ``request`` (not timed) comes before each. The ratio is of the
sequential commands per second; the target is p99 < 50 ms for plantcore.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pymodbus.client import AsyncModbusTcpClient

from bench.command_store import RawApplication, RawLifecycle, bench_schema
from bench.common import (
    BenchConfig,
    Figures,
    Run,
    interleaved,
    latency_ms,
    ratio,
    unique_name,
)
from bench.modbus_poll import REPO, simulator_process
from bench.plant_stack import Hmi, PlantStack, modbus_press, plant_stack
from eventstore.postgres import event_store_env
from plantcore.embedded import free_port

TAG, REGISTER, UNIT = "speed_setpoint", 1, 1
WARM_UP_COMMANDS = 5
SEGMENTS = (
    "confirm",
    "dispatch_wake_up",
    "to_the_plc",
    "write_and_read_back",
    "recorded_and_notified",
)
TARGET_P99_MS = 50


class SetpointValues:
    """A new setpoint for every command, within the tag's 0 to 3000 rpm."""

    def __init__(self) -> None:
        self._next = 1000

    def take(self, count: int) -> list[int]:
        values = [1000 + (self._next + i) % 2000 for i in range(count)]
        self._next += count
        return values


# -- plantcore: an HMI in another process --------------------------------------------------


async def hmi_commands(
    stack: PlantStack, device: str, hmis: dict[Hmi, int], values: list[int]
) -> list[Any]:
    """``bench.hmi_client commands``: one line of stamps per command.

    ``hmis`` maps each operator to the last TOTP step it used, updated here.
    """
    task = {
        "mode": "commands",
        "http_url": stack.runtime.api_url,
        "ws_url": stack.ws_url,
        "device": device,
        "tag": TAG,
        "values": values,
        "hmis": [
            {"username": h.username, "token": h.token, "totp_secret": h.totp_secret, "last_step": s}
            for h, s in hmis.items()
        ],
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.hmi_client"),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(json.dumps(task).encode() + b"\n")
    if process.returncode != 0:
        raise RuntimeError(f"the HMI client failed:\n{err.decode(errors='replace')}")
    *lines, last = [json.loads(line) for line in out.decode().splitlines()]
    by_name = {hmi.username: hmi for hmi in hmis}
    for username, step in last["last_steps"].items():
        hmis[by_name[username]] = step
    failed = [line for line in lines if line["status"] != "SUCCEEDED"]
    if failed or len(lines) != len(values):
        raise RuntimeError(
            f"{len(lines)} of {len(values)} commands settled; not succeeded: {failed}"
        )
    return lines


def applied_writes(write_log: Path) -> dict[int, float]:
    """The simulator's write log: when it applied each setpoint (each value is written once)."""
    writes = {}
    for line in write_log.read_text(encoding="utf-8").splitlines():
        write = json.loads(line)
        if write["tag"] == TAG:
            writes[int(write["value"])] = datetime.fromisoformat(write["time"]).timestamp()
    return writes


def event_times(stack: PlantStack, command_id: str) -> dict[str, float]:
    """When each of the command's use cases ran (its events' ``at``)."""
    app = stack.runtime.app
    assert app is not None
    return {
        type(event).__name__: event.at.timestamp()  # type: ignore[attr-defined]
        for event in app.command_events(UUID(command_id))
    }


def segments(line: dict[str, Any], events: dict[str, float], written: float) -> dict[str, float]:
    """One command's time, in the segments of the module's docstring (seconds)."""
    marks = [
        line["sent"],
        line["answered"],
        events["WriteDispatched"],
        written,
        events["WriteSucceeded"],
        line["seen"]["WriteSucceeded"],
    ]
    return {name: marks[i + 1] - marks[i] for i, name in enumerate(SEGMENTS)}


class PlantcoreSide:
    def __init__(
        self, stack: PlantStack, device: str, hmis: dict[Hmi, int], write_log: Path
    ) -> None:
        self._stack, self._device, self._hmis, self._write_log = stack, device, hmis, write_log
        self.segments: dict[str, list[float]] = {name: [] for name in SEGMENTS}

    async def commands(self, values: list[int]) -> Run:
        lines = await hmi_commands(self._stack, self._device, self._hmis, values)
        writes = applied_writes(self._write_log)
        durations = []
        for line, value in zip(lines, values, strict=True):
            events = await asyncio.to_thread(event_times, self._stack, line["command_id"])
            for name, seconds in segments(line, events, writes[value]).items():
                self.segments[name].append(seconds)
            durations.append(line["seen"]["WriteSucceeded"] - line["sent"])
        return Run(len(durations), sum(durations), durations)


# -- raw: the bare libraries ----------------------------------------------------------------


@asynccontextmanager
async def bare_responder(nc: NatsClient, port: int) -> Any:
    """A NATS responder that writes the value with pymodbus and reads it back."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0)
    if not await client.connect():
        raise ConnectionError(f"no Modbus server on port {port}")

    async def write_and_read(msg: Msg) -> None:
        value = int(msg.data)
        await client.write_register(REGISTER, value, device_id=UNIT)
        read = await client.read_holding_registers(REGISTER, count=1, device_id=UNIT)
        await msg.respond(str(read.registers[0]).encode())

    subject = f"bench.write.{unique_name('press')}"
    subscription = await nc.subscribe(subject, cb=write_and_read)
    try:
        yield subject
    finally:
        await subscription.unsubscribe()
        client.close()


async def raw_commands(
    lifecycle: RawLifecycle, nc: NatsClient, subject: str, values: list[int]
) -> Run:
    durations = []
    for value in values:
        command_id = await asyncio.to_thread(lifecycle.request)
        started = time.perf_counter()
        await asyncio.to_thread(lifecycle.confirm, command_id)
        await asyncio.to_thread(lifecycle.dispatch, command_id)
        reply = await nc.request(subject, str(value).encode(), timeout=5)
        if int(reply.data) != value:
            raise RuntimeError(f"read back {reply.data!r} instead of {value}")
        await asyncio.to_thread(lifecycle.succeed, command_id)
        durations.append(time.perf_counter() - started)
    return Run(len(durations), sum(durations), durations)


@contextmanager
def raw_application(database_url: str) -> Iterator[RawApplication]:
    with bench_schema(database_url) as schema:
        app = RawApplication(env={**event_store_env(database_url), "POSTGRES_SCHEMA": schema})
        try:
            yield app
        finally:
            app.close()


# -- the run --------------------------------------------------------------------------------


async def run(config: BenchConfig) -> Figures:
    per_round = config.pick(quick=20, full=100)
    rounds = config.pick(quick=2, full=3)
    hmi_count = config.pick(quick=25, full=100)
    port = free_port()
    device = unique_name("bench-press").replace("_", "-")
    values = SetpointValues()
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as directory:
        write_log = Path(directory) / "writes.jsonl"
        async with (
            simulator_process(port, "--write-log", str(write_log)),
            plant_stack(config, [modbus_press(device, port)]) as stack,
        ):
            hmis = {await stack.hmi(): 0 for _ in range(hmi_count)}
            plantcore = PlantcoreSide(stack, device, hmis, write_log)
            nc = await nats.connect(config.nats_url)
            try:
                async with bare_responder(nc, port) as subject:
                    with raw_application(config.database_url) as raw_app:
                        lifecycle = await asyncio.to_thread(RawLifecycle, raw_app)
                        # Untimed: connections, statements and the supervisor's connection warm.
                        await hmi_commands(stack, device, hmis, values.take(WARM_UP_COMMANDS))
                        await raw_commands(lifecycle, nc, subject, values.take(WARM_UP_COMMANDS))
                        runs = await interleaved(
                            rounds,
                            {
                                "plantcore": lambda: plantcore.commands(values.take(per_round)),
                                "raw": lambda: raw_commands(
                                    lifecycle, nc, subject, values.take(per_round)
                                ),
                            },
                        )
            finally:
                await nc.close()
    ours = runs["plantcore"]
    return {
        "params": {
            "commands_per_round": per_round,
            "rounds": rounds,
            "hmis": hmi_count,
            "target_p99_ms": TARGET_P99_MS,
        },
        "plantcore": {
            **ours.figures("commands"),
            "segments_ms": {name: latency_ms(each) for name, each in plantcore.segments.items()},
        },
        "raw": runs["raw"].figures("commands"),
        "ratio": ratio(ours, runs["raw"]),
        "target_met": latency_ms(ours.durations)["p99"] < TARGET_P99_MS,
    }
