"""telemetry_e2e: issue 16's P1, samples from the device to Redis and to PostgreSQL, none lost.

``DEVICES`` simulated devices, each a supervisor in this process polling an
in-process driver that numbers its reads: tag ``seq`` holds 1, 2, 3, ... (the
device's sequence) and 19 more tags change with it, so a batch is 20 samples.
Each device answers ``batches`` reads as fast as the supervisor asks, then no
more. What ``plantcore run`` does with them runs here too, on the same event
loop: every batch appended to the buffer on disk, forwarded to JetStream
(a NATS server of the benchmark's own, on a spare loopback port, so that no
other telemetry meets it), and consumed by the live-state projection (Redis,
the machine's server, keys of the run's own devices) and the history
projection (a history table of its own, with its rollups, in PostgreSQL).

The time runs from the first poll until both projections have committed every
device's last sequence number; ``samples_per_s`` is every sample over that
time. Then the count by sequence: every device's ``seq`` rows in the history
are exactly 1..batches, the rows are 20 per batch, and the live state holds the
last sequence number of every device (``lost`` is what is missing, and must be
0). ``latency_ms`` is each batch's time from its poll to its commit, in Redis and
in PostgreSQL.

The bare side, on the same batches: asyncpg ``copy_records_to_table`` of their
rows into a plain table with the history's unique index, 5,120 rows per
transaction as the history consumer writes them (**raw_indexed_copy**, the
target: 0.5 of it), and JetStream alone, the encoded batches published 256
acks in flight and fetched back from a pull consumer, 256 at a time, each
acknowledged (**raw_jetstream**). The contenders alternate over ``rounds``,
each plantcore round with devices of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import nats
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from bench.common import (
    BenchConfig,
    Figures,
    Run,
    interleaved,
    latency_ms,
    ratio,
    unique_name,
)
from bench.fleet_simulator import FLEET_TAGS
from bench.history_write import _PLAIN_TABLE, _UNIQUE_INDEX
from devices.driver import Reading
from devices.nats_bridge import OutboxForwarder, forwarding
from devices.outbox import Outbox
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import Quality, Sample, TelemetryBatch
from plantcore.embedded import embedded_nats
from plantcore.streams import ensure_telemetry_stream
from plantfile.protocols.modbus import ModbusConnection, ModbusDevice, ModbusTag
from plantfile.tags import TagConfig
from projections.history import COLUMNS, HISTORY_FEED, HistoryWriter, sample_rows
from projections.history_filter import Row
from projections.history_schema import ensure_history_schema, history_tables
from projections.live_state import (
    DEVICES_KEY,
    LIVE_KEY,
    LIVE_STATE_FEED,
    STATUS_KEY,
    LiveMessage,
    LiveState,
)
from support.clock import utc_now

DEVICES = 20
SEQ_TAG = "seq"
ROWS_PER_COPY = 20 * 256  # a history fetch: 256 batches of 20 samples
RAW_STREAM, RAW_SUBJECT = "BENCH_RAW", "bench.raw.{device}"
WINDOW = 256
FINISH_TIMEOUT = 120.0
REDIS_URL = "redis://127.0.0.1:6379/0"
NEW = DeliverPolicy.NEW


def sequenced_tags() -> tuple[ModbusTag, ...]:
    """The fleet's 20 tags with the first replaced by ``seq``, the device's sequence number."""
    seq = ModbusTag(name=SEQ_TAG, address=0, type="int32")
    return (seq, *(tag for tag in FLEET_TAGS[1:]))


class SequencedDriver:
    """An in-process device: read ``n`` gives ``seq`` = n, and no read after ``batches``."""

    def __init__(self, batches: int) -> None:
        self._batches = batches
        self.reads = 0
        self.connected = False
        self.first_read_at: float | None = None

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        if self.reads >= self._batches:
            await asyncio.Event().wait()  # the device says no more; the round cancels us
        if self.first_read_at is None:
            self.first_read_at = time.perf_counter()
        self.reads += 1
        return {
            tag.name: Reading(
                self.reads if tag.name == SEQ_TAG else self.reads % 1000 + i, Quality.GOOD
            )
            for i, tag in enumerate(tags)
        }

    async def write(self, tag: TagConfig, value: object) -> None:
        raise NotImplementedError("the benchmark writes nothing")


def device(device_id: str) -> ModbusDevice:
    """A device block for the supervisor: the connection is never used, the driver is ours."""
    return ModbusDevice(
        id=device_id,
        protocol="modbus",
        modbus=ModbusConnection(host="127.0.0.1", port=1, device_id=1),
        tags=sequenced_tags(),
    )


@dataclass
class Committed:
    """Each device's highest sequence number a projection has committed, and each batch's delay."""

    expected: int
    devices: frozenset[str]
    last_seq: dict[str, int] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)
    done_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, batches: Sequence[object]) -> None:
        now = utc_now()
        for batch in batches:
            if not isinstance(batch, TelemetryBatch) or batch.device not in self.devices:
                continue  # a status message
            self.delays.append((now - batch.ts).total_seconds())
            for sample in batch.samples:
                if sample.tag == SEQ_TAG and isinstance(sample.value, int):
                    seq = max(self.last_seq.get(batch.device, 0), sample.value)
                    self.last_seq[batch.device] = seq
        finished = sum(seq == self.expected for seq in self.last_seq.values())
        if finished == len(self.devices) and self.done_at is None:
            self.done_at = time.perf_counter()
            self.done.set()


@dataclass(frozen=True, slots=True)
class Services:
    nc: NatsClient
    pool: asyncpg.Pool
    redis: aioredis.Redis
    buffer_dir: Path


async def plantcore_round(services: Services, batches: int, history_table: str) -> Figures:
    """One round: fresh devices through the whole path; their figures and the count by sequence."""
    prefix = unique_name("e2e")
    ids = [f"{prefix}-{index:03d}" for index in range(DEVICES)]
    js = services.nc.jetstream()
    live_seen = Committed(batches, frozenset(ids))
    history_seen = Committed(batches, frozenset(ids))
    live_state = LiveState(services.redis)
    writer = HistoryWriter(services.pool, None, table=history_table)

    async def live_apply(messages: list[LiveMessage]) -> None:
        await live_state.apply(messages)
        live_seen.note(messages)

    async def history_write(messages: list[TelemetryBatch]) -> None:
        await writer.write(messages)
        history_seen.note(messages)

    # From now on: the stream still holds the earlier rounds' batches.
    live = LIVE_STATE_FEED.consumer(js, live_apply, durable=f"{prefix}-live", start=NEW)
    history = HISTORY_FEED.consumer(js, history_write, durable=f"{prefix}-history", start=NEW)
    drivers = {device_id: SequencedDriver(batches) for device_id in ids}
    outbox = Outbox.open(services.buffer_dir / prefix, max_bytes=1024**3)
    tasks: list[asyncio.Task[None]] = []
    try:
        for consumer in (live, history):
            await consumer.ensure()
        tasks += [asyncio.create_task(c.run()) for c in (live, history)]
        forwarder = OutboxForwarder(outbox, services.nc)
        async with forwarding(forwarder) as sink:
            policy = SupervisionPolicy(poll_seconds=1e-6)
            tasks += [
                asyncio.create_task(
                    DeviceSupervisor(device(i), drivers[i], sink, policy=policy).run()
                )
                for i in ids
            ]
            await until_committed(tasks, live_seen, history_seen)
        started = min(d.first_read_at or 0.0 for d in drivers.values())
        finished = max(live_seen.done_at or 0.0, history_seen.done_at or 0.0)
        count = await count_by_sequence(services, history_table, ids, batches)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        outbox.close()
        for consumer in (live, history):
            with contextlib.suppress(Exception):
                await js.delete_consumer("TELEMETRY", consumer.durable)
        await forget_devices(services.redis, ids)
    samples = DEVICES * batches * len(sequenced_tags())
    return {
        "run": Run(samples, finished - started, []),
        "live_delays": live_seen.delays,
        "history_delays": history_seen.delays,
        "count": count,
        "forwarded": outbox.figures().forwarded,
    }


async def until_committed(tasks: Sequence[asyncio.Task[None]], *stores: Committed) -> None:
    """Until every store has every device's last batch; raise if a task of the path ends first."""
    waits = [asyncio.ensure_future(store.done.wait()) for store in stores]
    try:
        async with asyncio.timeout(FINISH_TIMEOUT):
            while not all(store.done.is_set() for store in stores):
                await asyncio.wait([*waits, *tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    if task.done():
                        task.result()  # its exception, if any
                        raise RuntimeError(f"{task.get_name()} ended before the batches were in")
    except TimeoutError:
        behind = [
            {device: seq for device, seq in store.last_seq.items() if seq < store.expected}
            for store in stores
        ]
        raise TimeoutError(f"not all committed within {FINISH_TIMEOUT} s: {behind}") from None
    finally:
        for wait in waits:
            wait.cancel()


async def count_by_sequence(
    services: Services, table: str, ids: Sequence[str], batches: int
) -> Figures:
    """What each store holds of the devices' sequences, and how much of it is missing."""
    per_device = (
        "SELECT device, count(*) AS n, count(DISTINCT value) AS distinct_seq,"
        " min(value) AS first, max(value) AS last FROM {table}"
        " WHERE device = ANY($1) AND tag = $2 GROUP BY device"
    )
    rows = await services.pool.fetch(per_device.format(table=table), list(ids), SEQ_TAG)
    total = await services.pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE device = ANY($1)",  # noqa: S608 (our name)
        list(ids),
    )
    complete = sum(
        1
        for row in rows
        if row["n"] == batches
        and row["distinct_seq"] == batches
        and row["first"] == 1
        and row["last"] == batches
    )
    history_lost = DEVICES * batches - sum(min(row["distinct_seq"], batches) for row in rows)
    live_last = []
    for device_id in ids:
        stored = await services.redis.hget(LIVE_KEY.format(device=device_id), SEQ_TAG)
        live_last.append(0 if stored is None else json.loads(stored)["value"])
    return {
        "history_devices_complete": complete,
        "history_rows": total,
        "history_rows_expected": DEVICES * batches * len(sequenced_tags()),
        "history_lost": history_lost,
        "live_devices_at_last_seq": sum(last == batches for last in live_last),
        "lost": history_lost + sum(last != batches for last in live_last),
    }


async def forget_devices(redis: aioredis.Redis, ids: Sequence[str]) -> None:
    keys = [LIVE_KEY.format(device=i) for i in ids] + [STATUS_KEY.format(device=i) for i in ids]
    await redis.delete(*keys)
    await redis.srem(DEVICES_KEY, *ids)


# -- the bare side -------------------------------------------------------------------------


def same_batches(prefix: str, batches: int) -> list[TelemetryBatch]:
    """What a plantcore round's devices send, in poll order: each device's batch n, then n + 1."""
    tags = sequenced_tags()
    start = utc_now()
    out = []
    for n in range(1, batches + 1):
        ts = start + timedelta(milliseconds=n)
        for index in range(DEVICES):
            samples = tuple(
                Sample(
                    tag.name, n if tag.name == SEQ_TAG else n % 1000 + i, Quality.GOOD, tag.unit, ts
                )
                for i, tag in enumerate(tags)
            )
            out.append(TelemetryBatch(f"{prefix}-{index:03d}", ts, samples))
    return out


async def copy_indexed(pool: asyncpg.Pool, table: str, batches: Sequence[TelemetryBatch]) -> Run:
    """The rows COPYed into the indexed plain table, 5,120 a transaction."""
    rows: list[Row] = [row for batch in batches for row in sample_rows(batch)]
    started = time.perf_counter()
    for first in range(0, len(rows), ROWS_PER_COPY):
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                table, records=rows[first : first + ROWS_PER_COPY], columns=COLUMNS
            )
    return Run(len(rows), time.perf_counter() - started, [])


async def jetstream_only(nc: NatsClient, batches: Sequence[TelemetryBatch]) -> Run:
    """The encoded batches published (``WINDOW`` acks in flight) and fetched back, acked."""
    js = nc.jetstream()
    durable = unique_name("bench_raw")
    await js.add_consumer(
        RAW_STREAM,
        ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=4 * WINDOW
        ),
    )
    payloads = [(RAW_SUBJECT.format(device=b.device), b.encode()) for b in batches]
    started = time.perf_counter()
    try:
        for first in range(0, len(payloads), WINDOW):
            await asyncio.gather(
                *(js.publish(subject, data) for subject, data in payloads[first : first + WINDOW])
            )
        sub = await js.pull_subscribe_bind(durable=durable, stream=RAW_STREAM)
        fetched = 0
        while fetched < len(payloads):
            for msg in await sub.fetch(WINDOW, timeout=10):
                await msg.ack()
                fetched += 1
        await sub.unsubscribe()
        seconds = time.perf_counter() - started
    finally:
        await js.delete_consumer(RAW_STREAM, durable)
    samples = sum(len(b.samples) for b in batches)
    return Run(samples, seconds, [])


# -- the run -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def services(config: BenchConfig) -> AsyncIterator[Services]:
    """A NATS server of our own with its streams, the shared PostgreSQL and Redis, a buffer dir."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory,
        embedded_nats(Path(directory)) as nats_url,
    ):
        nc = await nats.connect(nats_url)
        pool = await asyncpg.create_pool(config.database_url, min_size=1, max_size=4)
        redis = aioredis.Redis.from_url(REDIS_URL)
        try:
            js = nc.jetstream()
            await ensure_telemetry_stream(js)
            await js.add_stream(
                StreamConfig(name=RAW_STREAM, subjects=[RAW_SUBJECT.format(device=">")])
            )
            yield Services(nc, pool, redis, Path(directory))
        finally:
            await redis.aclose()
            await pool.close()
            await nc.close()


async def run(config: BenchConfig) -> Figures:
    batches = config.pick(quick=150, full=600)
    rounds = config.pick(quick=1, full=3)
    history, indexed = unique_name("bench_e2e_hist"), unique_name("bench_e2e_idx")
    async with services(config) as svc:
        try:
            await ensure_history_schema(svc.pool, table=history)
            await svc.pool.execute(_PLAIN_TABLE.format(table=indexed))
            await svc.pool.execute(_UNIQUE_INDEX.format(table=indexed))
            rounds_done: list[Figures] = []

            async def plantcore() -> Run:
                figures = await plantcore_round(svc, batches, history)
                rounds_done.append(figures)
                measured: Run = figures["run"]
                return measured

            async def raw_indexed_copy() -> Run:
                return await copy_indexed(
                    svc.pool, indexed, same_batches(unique_name("e2e"), batches)
                )

            async def raw_jetstream() -> Run:
                return await jetstream_only(svc.nc, same_batches(unique_name("e2e"), batches))

            runs = await interleaved(
                rounds,
                {
                    "plantcore": plantcore,
                    "raw_indexed_copy": raw_indexed_copy,
                    "raw_jetstream": raw_jetstream,
                },
            )
        finally:
            for table in (*history_tables(history), indexed):
                await svc.pool.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    counts = [figures["count"] for figures in rounds_done]
    return {
        "params": {
            "devices": DEVICES,
            "batches_per_device": batches,
            "samples_per_batch": len(sequenced_tags()),
            "rounds": rounds,
            "rows_per_copy_transaction": ROWS_PER_COPY,
            "jetstream_window": WINDOW,
        },
        "plantcore": {
            **_rate(runs["plantcore"]),
            "live_latency_ms": latency_ms([d for f in rounds_done for d in f["live_delays"]]),
            "history_latency_ms": latency_ms([d for f in rounds_done for d in f["history_delays"]]),
            "forwarded": sum(f["forwarded"] for f in rounds_done),
            "count_by_sequence": counts,
            "lost": sum(count["lost"] for count in counts),
        },
        "raw_indexed_copy": _rate(runs["raw_indexed_copy"]),
        "raw_jetstream": _rate(runs["raw_jetstream"]),
        "ratio": ratio(runs["plantcore"], runs["raw_indexed_copy"]),
        "ratio_vs_jetstream": ratio(runs["plantcore"], runs["raw_jetstream"]),
    }


def _rate(samples: Run) -> Figures:
    return {
        "samples_per_s": round(samples.rate, 1),
        "samples": samples.operations,
        "seconds": round(samples.seconds, 3),
    }
