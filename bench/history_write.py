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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from domain.messages import Quality, Sample, TelemetryBatch
from projections.history import COLUMNS, HistoryWriter, Row, sample_rows
from projections.history_schema import (
    ensure_history_schema,
    hours_pending_table,
    hours_table,
    minutes_table,
)

SAMPLES_PER_BATCH = 20
BATCHES_PER_FETCH = 256
ROWS_PER_TRANSACTION = SAMPLES_PER_BATCH * BATCHES_PER_FETCH

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


def rows_of(batches: Sequence[TelemetryBatch]) -> list[Row]:
    return [row for batch in batches for row in sample_rows(batch)]


async def write_history(writer: HistoryWriter, work: Sequence[list[TelemetryBatch]]) -> Run:
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
    history, plain, indexed = (unique_name(f"bench_{kind}") for kind in ("hist", "plain", "idx"))
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
            pool,
            history,
            minutes_table(history),
            hours_table(history),
            hours_pending_table(history),
            plain,
            indexed,
        ):
            writer = HistoryWriter(
                pool, await ensure_history_schema(pool, table=history), table=history
            )
            await pool.execute(_PLAIN_TABLE.format(table=plain))
            await pool.execute(_PLAIN_TABLE.format(table=indexed))
            await pool.execute(_UNIQUE_INDEX.format(table=indexed))
            warm_up = fetch(device, 0, start)
            await write_history(writer, [warm_up])
            await copy_rows(pool, plain, [rows_of(warm_up)])
            await copy_rows(pool, indexed, [rows_of(warm_up)])

            history_rounds, plain_rounds, indexed_rounds = (round_starts() for _ in range(3))

            async def plantcore_round() -> Run:
                return await write_history(writer, work(next(history_rounds)))

            async def raw_round() -> Run:
                return await copy_rows(pool, plain, rows_work(next(plain_rounds)))

            async def indexed_round() -> Run:
                return await copy_rows(pool, indexed, rows_work(next(indexed_rounds)))

            runs = await interleaved(
                rounds,
                {"plantcore": plantcore_round, "raw": raw_round, "raw_indexed": indexed_round},
            )
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
    }


def _figures(transactions: Run) -> Figures:
    return {
        "samples_per_s": round(transactions.rate * ROWS_PER_TRANSACTION, 1),
        **transactions.figures("transactions"),
    }
