"""Reacts to time; calls unshelve_if_due, end_alarm_chattering_if_quiet, end_alarm_flood_if_over.

The alarms' clock: what ends by the passing of time, recorded when its time comes.

A shelve ends at its ``until``, a chattering flag after a quiet minute and an
area's flood when its last ten minutes hold fewer than five activations,
whether or not anything else happens to the alarm. Every few seconds this
task asks the alarm read model (``alarm_current``) which alarms are shelved
or chattering, and lets the domain decide, with its own clock check, whether
to record the automatic ``Unshelved``, ``ChatteringEnded`` or ``FloodEnded``
(actor ``system``). The read model only narrows the search: a decision is never
taken from it, so a stale row costs one look, not a wrong event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from domain.application import PlantApplication
from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from projections.store_outage import POSTGRES_UNAVAILABLE
from support.clock import utc_now

log = logging.getLogger(__name__)

# The event store and the read models' PostgreSQL: the next tick tries again.
_STORES_UNAVAILABLE: tuple[type[Exception], ...] = (*TRANSIENT_STORE_ERRORS, *POSTGRES_UNAVAILABLE)


class AlarmClock:
    def __init__(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        pool: asyncpg.Pool,
        *,
        interval: float = 2.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._app = app
        self._store_executor = store_executor
        self._pool = pool
        self._interval = interval
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except _STORES_UNAVAILABLE as exc:
                log.warning("alarm clock: store unavailable, retrying: %r", exc)
            await asyncio.sleep(self._interval)

    async def tick(self) -> int:
        """Record what is due now; how many events it recorded."""
        now = self._clock()
        rows = await self._pool.fetch(
            "SELECT alarm_id, shelved_until <= $1 AS shelve_due, chattering FROM alarm_current"
            " WHERE shelved_until <= $1 OR chattering",
            now,
        )
        recorded = 0
        for row in rows:
            if row["shelve_due"]:
                recorded += await self._store_executor.call(
                    self._app.unshelve_if_due, row["alarm_id"], now
                )
            if row["chattering"]:
                recorded += await self._store_executor.call(
                    self._app.end_alarm_chattering_if_quiet, row["alarm_id"], now
                )
        for area in await self._pool.fetch("SELECT DISTINCT area FROM alarm_current"):
            recorded += await self._store_executor.call(
                self._app.end_alarm_flood_if_over, area["area"], now
            )
        return recorded
