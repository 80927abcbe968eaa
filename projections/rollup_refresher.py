"""The refresher of a history table's rollups: a period behind the writer, by its position.

Every ``period_seconds`` (``PLANTCORE_HISTORY_ROLLUP_REFRESH_SECONDS``, 10 s)
a pass moves the watermark to the current minute (step A) and computes the
minutes before it that are not rolled up yet, the late ones and their hours
(step B); :mod:`projections.rollups` says how, and why nothing is lost
between the writer and the two steps. A minute is complete in ``samples_1m``
once the watermark has passed its end and a step B has run: at most a minute
and a period after its first sample; the history query serves what comes
after ``done`` from the raw rows (:mod:`projections.history_query`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from projections.history_schema import check_table_name
from projections.rollups import RollupStatements
from projections.store_outage import POSTGRES_UNAVAILABLE, transaction
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

# How often the rollups are brought up to the current minute
# (PLANTCORE_HISTORY_ROLLUP_REFRESH_SECONDS).
DEFAULT_REFRESH_SECONDS = 10.0


def _hour_of(ts: datetime) -> datetime:
    # date_bin('1 hour', ts, BUCKET_ORIGIN): the origin is on a UTC hour.
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class RollupRefresher:
    """Keeps the minute and hour rollups of history table ``table`` complete up to ``done``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        table: str = "samples",
        period_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        if not period_seconds > 0:
            raise ValueError(f"period_seconds must be more than 0, not {period_seconds}")
        self._pool = pool
        self._table = check_table_name(table)
        self._period = period_seconds
        self._statements = RollupStatements(table)
        self._failures = RepeatedLog(log, "rollups of", level=logging.WARNING)

    async def refresh(self) -> datetime:
        """One pass: step A, then step B; returns where the rollups are now complete."""
        await self.advance()
        return await self.catch_up()

    async def advance(self, to: datetime | None = None) -> datetime:
        """Step A: move the watermark to the start of the current minute of the database
        clock (of ``to``'s minute, if given), never back; returns it."""
        async with transaction(self._pool) as conn:
            locks, lock, move = self._statements.advance
            await conn.execute(locks)
            await conn.execute(lock)
            watermark: datetime = await conn.fetchval(move, to)
        return watermark

    async def catch_up(self) -> datetime:
        """Step B: compute the minutes up to the watermark and the pending ones, then the
        ended hours they fall in and those that end now, in one transaction; returns the
        new ``done``."""
        statements = self._statements
        async with transaction(self._pool) as conn:
            mark = await conn.fetchrow(statements.read_mark)
            assert mark is not None, f"{self._table}'s rollup mark has no row"
            for create in statements.create_taken:
                await conn.execute(create)
            await conn.execute(statements.take_pending)
            done, watermark = mark["done"], mark["watermark"]
            await conn.execute(statements.compute_minutes, done, watermark)
            if _hour_of(done) != _hour_of(watermark):
                await conn.execute(statements.take_ended_hours, done, watermark)
            await conn.execute(statements.compute_hours)
            await conn.execute(statements.set_done, mark["watermark"])
        return watermark

    async def keep_fresh(self) -> None:
        """A pass every period, for ever. A pass that fails (PostgreSQL away) is tried again
        a period later: what it would have computed waits in the raw rows meanwhile."""
        while True:
            try:
                await self.refresh()
            except POSTGRES_UNAVAILABLE as exc:
                self._failures.happened(self._table, repr(exc))
            else:
                self._failures.ended(self._table)
            await asyncio.sleep(self._period)
