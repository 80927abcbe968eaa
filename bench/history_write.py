"""history_write: telemetry samples into the history table through ``HistoryWriter.write``.

The writer gets what the history consumer hands it: one fetch of 256 messages,
each a :class:`TelemetryBatch` of 20 samples, so 5,120 rows per call and per
transaction, into a fresh table made by ``ensure_history_schema`` (natively
partitioned by day, unique on ``(device, tag, time)``; each call COPYs into a
staging table and inserts with ``ON CONFLICT DO NOTHING``).

The raw side COPYs the same rows with asyncpg's ``copy_records_to_table``, one
transaction per 5,120 rows, into a plain table of the same columns: no index,
no partitions. A third contender does the same into a plain table that has the
same unique index, to tell the cost of the index from that of staging and
partitions. Every table is dropped at the end.

A second workload, ``fleet``, is shaped like a plant's fetch instead: 200
devices of 20 tags polled at 1 Hz, so a fetch of 256 batches holds one or two
samples of each of 4,000 tags and touches ~4,000 minutes and hours, late in an
hour whose earlier minutes are already written (one sample a minute of every
tag). There the rollups cost by the minute and hour a write touches, and the
writer is measured beside ``no_rollups``: the same staging COPY and ``INSERT …
ON CONFLICT DO NOTHING`` into the same kind of partitioned, indexed table,
without the rollups (what the writer did before them). ``rollup_share`` is
the writer's rate over it: issue 15 allows the rollups 20% (0.8).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from domain.messages import Quality, Sample, TelemetryBatch
from projections.history import COLUMNS, HistoryWriter, Row, sample_rows
from projections.history_schema import Partitions, ensure_history_schema, history_tables
from projections.rollup_refresher import DEFAULT_REFRESH_SECONDS, RollupRefresher

SAMPLES_PER_BATCH = 20
BATCHES_PER_FETCH = 256
ROWS_PER_TRANSACTION = SAMPLES_PER_BATCH * BATCHES_PER_FETCH
FLEET_DEVICES = 200
# The fleet's fetches start this far into an hour whose earlier minutes are written.
FLEET_MINUTE = 55

_PLAIN_TABLE = (
    "CREATE TABLE {table} (time timestamptz NOT NULL, device text NOT NULL,"
    " tag text NOT NULL, value double precision, quality text NOT NULL, unit text NOT NULL)"
)
_UNIQUE_INDEX = "CREATE UNIQUE INDEX ON {table} (device, tag, time)"


def fetch(device: str, index: int, start: datetime) -> list[TelemetryBatch]:
    """The ``index``-th consumer fetch of one device: batches one millisecond apart."""
    batches = []
    for n in range(BATCHES_PER_FETCH):
        ts = start + timedelta(milliseconds=index * BATCHES_PER_FETCH + n)
        samples = tuple(
            Sample(f"tag_{i:02d}", float(index + n + i), Quality.GOOD, "unit", ts)
            for i in range(SAMPLES_PER_BATCH)
        )
        batches.append(TelemetryBatch(device, ts, samples))
    return batches


def fleet_batch(device: int, ts: datetime, value: float) -> TelemetryBatch:
    samples = tuple(
        Sample(f"tag_{i:02d}", value + i, Quality.GOOD, "unit", ts)
        for i in range(SAMPLES_PER_BATCH)
    )
    return TelemetryBatch(f"device-{device:03d}", ts, samples)


def fleet_fetch(index: int, start: datetime) -> list[TelemetryBatch]:
    """The ``index``-th fetch of a fleet whose devices each send a batch a second."""
    batches = []
    for n in range(index * BATCHES_PER_FETCH, (index + 1) * BATCHES_PER_FETCH):
        second, device = divmod(n, FLEET_DEVICES)
        ts = start + timedelta(seconds=second, milliseconds=device)
        batches.append(fleet_batch(device, ts, float(second)))
    return batches


def earlier_minutes(hour: datetime, minutes: int) -> list[list[TelemetryBatch]]:
    """One sample a minute of every fleet tag for the hour's first ``minutes``, per fetch."""
    batches = [
        fleet_batch(device, hour + timedelta(minutes=minute), float(minute))
        for minute in range(minutes)
        for device in range(FLEET_DEVICES)
    ]
    return [batches[i : i + BATCHES_PER_FETCH] for i in range(0, len(batches), BATCHES_PER_FETCH)]


class InsertWithoutRollups:
    """The writer's raw insert alone: staging COPY, then ``INSERT … ON CONFLICT DO NOTHING``."""

    def __init__(self, pool: asyncpg.Pool, partitions: Partitions, table: str) -> None:
        self._pool = pool
        self._partitions = partitions
        self._table = table
        columns = ", ".join(COLUMNS)
        self._staging = f"{table}_staging"
        self._create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._staging} (LIKE {table}) ON COMMIT DELETE ROWS"
        )
        self._insert = (
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {self._staging}"  # noqa: S608
            " ON CONFLICT DO NOTHING"
        )

    async def write(self, batches: Sequence[TelemetryBatch]) -> int:
        rows = rows_of(batches)
        await self._partitions.ensure_for({row[0] for row in rows})
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(self._create_staging)
            await conn.copy_records_to_table(self._staging, records=rows, columns=COLUMNS)
            status = await conn.execute(self._insert)
        return int(status.rsplit(" ", 1)[1])


class RefreshedWriter:
    """The history writer, with a refresher's pass whenever the samples' clock has moved
    on by a refresh period: the rollups' whole cost, paced by the plant's clock."""

    def __init__(self, pool: asyncpg.Pool, partitions: Partitions | None, table: str) -> None:
        self._writer = HistoryWriter(pool, partitions, table=table)
        self._refresher = RollupRefresher(pool, table=table)
        self._period = timedelta(seconds=DEFAULT_REFRESH_SECONDS)
        self._refreshed_at: datetime | None = None

    async def write(self, batches: Sequence[TelemetryBatch]) -> int:
        added = await self._writer.write(batches)
        now = max(batch.ts for batch in batches)
        if self._refreshed_at is None or now - self._refreshed_at >= self._period:
            await self.refresh(now)
        return added

    async def refresh(self, now: datetime) -> None:
        await self._refresher.advance(to=now)
        await self._refresher.catch_up()
        self._refreshed_at = now


def rows_of(batches: Sequence[TelemetryBatch]) -> list[Row]:
    return [row for batch in batches for row in sample_rows(batch)]


class Writer(Protocol):
    async def write(self, batches: Sequence[TelemetryBatch]) -> int: ...


async def write_history(writer: Writer, work: Sequence[list[TelemetryBatch]]) -> Run:
    laps = Laps()
    for batches in work:
        added = await writer.write(batches)
        assert added == ROWS_PER_TRANSACTION, f"{added} rows added"
        laps.lap()
    return laps.run()


async def copy_rows(pool: asyncpg.Pool, table: str, work: Sequence[list[Row]]) -> Run:
    laps = Laps()
    for rows in work:
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(table, records=rows, columns=COLUMNS)
        laps.lap()
    return laps.run()


@asynccontextmanager
async def dropped_after(pool: asyncpg.Pool, *tables: str) -> AsyncIterator[None]:
    """Drop ``tables`` (a partitioned one with its partitions) however the run ends."""
    try:
        yield
    finally:
        for table in tables:
            await pool.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


async def run(config: BenchConfig) -> Figures:
    per_round = config.pick(quick=4, full=40)
    rounds = config.pick(quick=1, full=3)
    history, bare, plain, indexed = (
        unique_name(f"bench_{kind}") for kind in ("hist", "norollup", "plain", "idx")
    )
    device = unique_name("bench-device")
    start = datetime.now(UTC)

    def work(first: int) -> list[list[TelemetryBatch]]:
        """Fetches ``first..first+per_round``: every contender writes the same rows."""
        return [fetch(device, index, start) for index in range(first, first + per_round)]

    def rows_work(first: int) -> list[list[Row]]:
        return [rows_of(batches) for batches in work(first)]

    def round_starts() -> Iterator[int]:
        return iter(range(1, 1 + per_round * rounds, per_round))  # fetch 0 is the warm-up

    pool = await asyncpg.create_pool(config.database_url, min_size=1, max_size=2)
    try:
        async with dropped_after(
            pool, *history_tables(history), *history_tables(bare), plain, indexed
        ):
            writer = RefreshedWriter(
                pool, await ensure_history_schema(pool, table=history), table=history
            )
            without_rollups = await _insert_without_rollups(pool, bare)
            await pool.execute(_PLAIN_TABLE.format(table=plain))
            await pool.execute(_PLAIN_TABLE.format(table=indexed))
            await pool.execute(_UNIQUE_INDEX.format(table=indexed))
            warm_up = fetch(device, 0, start)
            await write_history(writer, [warm_up])
            await write_history(without_rollups, [warm_up])
            await copy_rows(pool, plain, [rows_of(warm_up)])
            await copy_rows(pool, indexed, [rows_of(warm_up)])

            history_rounds, bare_rounds, plain_rounds, indexed_rounds = (
                round_starts() for _ in range(4)
            )

            async def plantcore_round() -> Run:
                return await write_history(writer, work(next(history_rounds)))

            async def no_rollups_round() -> Run:
                return await write_history(without_rollups, work(next(bare_rounds)))

            async def raw_round() -> Run:
                return await copy_rows(pool, plain, rows_work(next(plain_rounds)))

            async def indexed_round() -> Run:
                return await copy_rows(pool, indexed, rows_work(next(indexed_rounds)))

            runs = await interleaved(
                rounds,
                {
                    "plantcore": plantcore_round,
                    "no_rollups": no_rollups_round,
                    "raw": raw_round,
                    "raw_indexed": indexed_round,
                },
            )
        fleet = await _fleet(config, pool)
    finally:
        await pool.close()
    return {
        "params": {
            "samples_per_batch": SAMPLES_PER_BATCH,
            "batches_per_transaction": BATCHES_PER_FETCH,
            "transactions_per_round": per_round,
            "rounds": rounds,
        },
        **{name: _figures(each) for name, each in runs.items()},
        "ratio": ratio(runs["plantcore"], runs["raw"]),
        "ratio_vs_indexed": ratio(runs["plantcore"], runs["raw_indexed"]),
        "rollup_share": ratio(runs["plantcore"], runs["no_rollups"]),
        "fleet": fleet,
    }


async def _insert_without_rollups(pool: asyncpg.Pool, table: str) -> InsertWithoutRollups:
    partitions = await ensure_history_schema(pool, table=table)
    assert partitions is not None, "the benchmark needs native partitions"
    return InsertWithoutRollups(pool, partitions, table)


async def _fleet(config: BenchConfig, pool: asyncpg.Pool) -> Figures:
    """The writer beside its raw insert alone, on fleet-shaped fetches late in an hour."""
    # A round is a minute of the fleet's samples: the refresher computes a minute, and
    # its hour, once its end has passed.
    per_round = -(-60 * FLEET_DEVICES // BATCHES_PER_FETCH)
    rounds = config.pick(quick=1, full=3)
    earlier = config.pick(quick=10, full=FLEET_MINUTE)
    # Ahead of the database clock, so that no sample is late: the refresher's passes
    # follow the samples' clock (``RefreshedWriter``).
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    start = hour + timedelta(minutes=earlier)
    with_rollups, without = (unique_name(f"bench_{kind}") for kind in ("fleet", "norollup"))
    async with dropped_after(pool, *history_tables(with_rollups), *history_tables(without)):
        writer = RefreshedWriter(
            pool, await ensure_history_schema(pool, table=with_rollups), table=with_rollups
        )
        plain = await _insert_without_rollups(pool, without)
        for fetched in earlier_minutes(hour, earlier):  # untimed: the hour so far
            await writer.write(fetched)
            await plain.write(fetched)
        await writer.refresh(start)
        writer_rounds, plain_rounds = (
            iter(range(0, per_round * rounds, per_round)) for _ in range(2)
        )

        def work(first: int) -> list[list[TelemetryBatch]]:
            return [fleet_fetch(index, start) for index in range(first, first + per_round)]

        async def plantcore_round() -> Run:
            return await write_history(writer, work(next(writer_rounds)))

        async def no_rollups_round() -> Run:
            return await write_history(plain, work(next(plain_rounds)))

        runs = await interleaved(
            rounds, {"plantcore": plantcore_round, "no_rollups": no_rollups_round}
        )
    return {
        "params": {
            "devices": FLEET_DEVICES,
            "samples_per_batch": SAMPLES_PER_BATCH,
            "batches_per_transaction": BATCHES_PER_FETCH,
            "transactions_per_round": per_round,
            "rounds": rounds,
            "minutes_into_the_hour": earlier,
        },
        **{name: _figures(each) for name, each in runs.items()},
        "rollup_share": ratio(runs["plantcore"], runs["no_rollups"]),
    }


def _figures(transactions: Run) -> Figures:
    return {
        "samples_per_s": round(transactions.rate * ROWS_PER_TRANSACTION, 1),
        **transactions.figures("transactions"),
    }
