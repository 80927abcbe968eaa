"""The alarm read models, kept from the event log: current alarms, the journal, live events.

A follower of the :class:`~eventstore.log_tail.LogTail`. For every batch of
the log that holds alarm events it writes, in one PostgreSQL transaction:

- ``alarm_journal``: one row per alarm or flood event, keyed by its position
  in the log (so a replayed batch inserts nothing twice, and the position is
  the journal's natural cursor);
- ``alarm_current``: one row per alarm with its state as the aggregate now
  has it (the domain's own events replayed on the aggregate, not re-derived
  here, so this view can never disagree with the domain), guarded by the
  aggregate's version.

Then it mirrors the alarms that are not normal into Redis (``plant:alarms:active``,
one hash field per alarm), hands each journal row to the ``alarmEvents``
subscribers, and moves its tracked position (``alarm-views``) past the batch.
Every write is idempotent, so a crash between them only repeats work.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import Notification

from domain.alarm import Alarm, AlarmState
from domain.alarm_flood import AlarmFlood
from domain.application import PlantApplication
from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from eventstore.notifications import originator_uuid
from eventstore.tracking import PositionStore
from projections.store_outage import POSTGRES_UNAVAILABLE, REDIS_UNAVAILABLE, transaction
from support.cancellation import raise_if_cancelling

log = logging.getLogger(__name__)

ACTIVE_KEY = "plant:alarms:active"

# The event store, the read models' PostgreSQL and Redis: a batch is applied again once back.
_STORES_UNAVAILABLE: tuple[type[Exception], ...] = (
    *TRANSIENT_STORE_ERRORS,
    *POSTGRES_UNAVAILABLE,
    *REDIS_UNAVAILABLE,
)

# The library's fields and the two every event has: the journal has columns for those.
_BOOKKEEPING = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "actor", "at"}
)
ALARM_PREFIX = Alarm.__module__ + ":" + Alarm.__qualname__ + "."
FLOOD_PREFIX = AlarmFlood.__module__ + ":" + AlarmFlood.__qualname__ + "."
FLOOD_EVENTS = frozenset({"FloodStarted", "FloodEnded"})

SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS alarm_current (
        alarm_id uuid PRIMARY KEY,
        device text NOT NULL,
        condition text NOT NULL,
        kind text NOT NULL,
        priority text NOT NULL,
        area text NOT NULL,
        tag text NOT NULL,
        state text NOT NULL,
        active boolean NOT NULL,
        acknowledged boolean NOT NULL,
        annunciated boolean NOT NULL,
        chattering boolean NOT NULL,
        shelved_until timestamptz,
        raised_at timestamptz,
        detail jsonb NOT NULL,
        version integer NOT NULL,
        updated_at timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS alarm_current_not_normal ON alarm_current (state)"
    " WHERE state <> 'normal'",
    """
    CREATE TABLE IF NOT EXISTS alarm_journal (
        position bigint PRIMARY KEY,
        alarm_id uuid,
        device text NOT NULL,
        condition text NOT NULL,
        area text NOT NULL,
        priority text NOT NULL,
        event text NOT NULL,
        actor text NOT NULL,
        at timestamptz NOT NULL,
        detail jsonb NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS alarm_journal_at ON alarm_journal (at)",
]

_UPSERT_CURRENT = """
INSERT INTO alarm_current (alarm_id, device, condition, kind, priority, area, tag, state,
    active, acknowledged, annunciated, chattering, shelved_until, raised_at, detail, version,
    updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (alarm_id) DO UPDATE SET
    state = excluded.state, priority = excluded.priority, area = excluded.area,
    active = excluded.active, acknowledged = excluded.acknowledged,
    annunciated = excluded.annunciated, chattering = excluded.chattering,
    shelved_until = excluded.shelved_until, raised_at = excluded.raised_at,
    detail = excluded.detail, version = excluded.version, updated_at = excluded.updated_at
WHERE alarm_current.version < excluded.version
"""

_INSERT_JOURNAL = """
INSERT INTO alarm_journal (position, alarm_id, device, condition, area, priority, event, actor,
    at, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (position) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One alarm (or flood) event as the journal and the ``alarmEvents`` subscription see it."""

    position: int
    alarm_id: UUID | None  # None for a flood, which belongs to an area
    device: str
    condition: str
    area: str
    priority: str
    event: str
    actor: str
    at: datetime
    detail: dict[str, Any]
    state: str  # the alarm's state after the event ("" for a flood)


async def ensure_alarm_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for statement in SCHEMA:
            await conn.execute(statement)


class AlarmViews:
    def __init__(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        position: PositionStore,
        *,
        retry_delay: float = 1.0,
        active_key: str = ACTIVE_KEY,
    ) -> None:
        self._app = app
        self._store_executor = store_executor
        self._pool = pool
        self._redis = redis
        # Another hash than the plant's for a rebuild to compare with it (``plantcore audit``).
        self._active_key = active_key
        self._position = position
        self._retry_delay = retry_delay
        self._start = 0
        self._pending: asyncio.Queue[list[Notification]] = asyncio.Queue()
        self._subscribers: set[asyncio.Queue[JournalEntry]] = set()
        self.applied = 0  # the last position written, for tests and figures

    # -- the log tail's follower protocol ----------------------------------------------------

    async def load_position(self) -> int:
        self._start = self.applied = await self._position.load()
        return self._start

    async def on_notifications(self, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.id > self._start and _is_alarm(n.topic)]
        if mine:
            self._pending.put_nowait(mine)

    # -- subscribers ------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[JournalEntry]]:
        """Every journal entry written from now on (the ``alarmEvents`` subscription)."""
        queue: asyncio.Queue[JournalEntry] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Apply the alarm events the tail hands over, in log order, until cancelled."""
        while True:
            raise_if_cancelling()
            batch = await self._pending.get()
            while True:
                try:
                    entries = await self._apply(batch)
                    break
                except _STORES_UNAVAILABLE as exc:
                    log.warning("alarm views: store unavailable, retrying: %r", exc)
                    await asyncio.sleep(self._retry_delay)
            for entry in entries:
                for queue in self._subscribers:
                    queue.put_nowait(entry)

    async def _apply(self, batch: list[Notification]) -> list[JournalEntry]:
        replayed = await self._store_executor.call(self._replay, batch)
        entries = [self._entry(n, replayed.get(n.id)) for n in batch]
        alarms = {alarm.id: alarm for alarm in replayed.values()}  # each at its last event
        async with transaction(self._pool) as conn:
            await conn.executemany(_INSERT_JOURNAL, [_journal_args(e) for e in entries])
            await conn.executemany(_UPSERT_CURRENT, [_current_args(a) for a in alarms.values()])
        await self._mirror(alarms.values())
        await self._position.save(batch[-1].id)
        self.applied = batch[-1].id
        return entries

    def _replay(self, batch: list[Notification]) -> dict[int, Alarm]:
        """Each alarm event's alarm just after it (by notification id), the batch replayed
        on the alarm as it was before the batch: the state an entry shows is its own."""
        states: dict[int, Alarm] = {}
        alarms: dict[UUID, Alarm | None] = {}
        for notification in batch:
            if not notification.topic.startswith(ALARM_PREFIX):
                continue
            alarm_id = originator_uuid(notification)
            if alarm_id not in alarms:
                before = notification.originator_version - 1
                alarms[alarm_id] = (
                    self._app.repository.get(alarm_id, version=before) if before else None
                )
            event = self._app.mapper.to_domain_event(notification)
            assert isinstance(event, CanMutateAggregate)
            alarm = event.mutate(alarms[alarm_id])
            assert isinstance(alarm, Alarm)
            alarms[alarm_id] = alarm
            states[notification.id] = copy.deepcopy(alarm)  # the next event mutates alarm
        return states

    def _entry(self, notification: Notification, alarm: Alarm | None) -> JournalEntry:
        recorded = vars(self._app.mapper.to_domain_event(notification))
        actor, at = str(recorded.get("actor", "")), recorded["at"]
        fields = _jsonable({k: v for k, v in recorded.items() if k not in _BOOKKEEPING})
        name = notification.topic.rsplit(".", 1)[-1]
        if alarm is None:  # a flood event: it belongs to an area
            area = str(fields.get("area", ""))
            return JournalEntry(
                notification.id, None, "", "", area, "", name, actor, at, fields, ""
            )
        return JournalEntry(
            notification.id, alarm.id, alarm.device, alarm.condition, alarm.area,
            alarm.priority.value, name, actor, at, fields, alarm.state.value,
        )  # fmt: skip

    async def _mirror(self, alarms: Iterable[Alarm]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for alarm in alarms:
            if alarm.state is AlarmState.NORMAL:
                pipe.hdel(self._active_key, str(alarm.id))
            else:
                pipe.hset(self._active_key, str(alarm.id), json.dumps(alarm_summary(alarm)))
        await pipe.execute()


def alarm_summary(alarm: Alarm) -> dict[str, Any]:
    """The fields every view of an alarm shows, JSON-ready."""
    return {
        "alarm_id": str(alarm.id),
        "device": alarm.device,
        "condition": alarm.condition,
        "kind": alarm.kind.value,
        "priority": alarm.priority.value,
        "area": alarm.area,
        "tag": alarm.tag,
        "state": alarm.state.value,
        "active": alarm.active,
        "acknowledged": alarm.acknowledged,
        "annunciated": alarm.annunciated,
        "chattering": alarm.chattering,
        "shelved_until": _iso(alarm.shelved_until),
        "raised_at": _iso(alarm.raised_at),
        "version": alarm.version,
    }


def _current_args(alarm: Alarm) -> tuple[Any, ...]:
    summary = alarm_summary(alarm)
    return (
        alarm.id, alarm.device, alarm.condition, alarm.kind.value, alarm.priority.value,
        alarm.area, alarm.tag, alarm.state.value, alarm.active, alarm.acknowledged,
        alarm.annunciated, alarm.chattering, alarm.shelved_until, alarm.raised_at,
        json.dumps(summary), alarm.version, alarm.modified_on,
    )  # fmt: skip


def _journal_args(entry: JournalEntry) -> tuple[Any, ...]:
    return (
        entry.position, entry.alarm_id, entry.device, entry.condition, entry.area,
        entry.priority, entry.event, entry.actor, entry.at, json.dumps(entry.detail),
    )  # fmt: skip


def _is_alarm(topic: str) -> bool:
    if topic.startswith(ALARM_PREFIX):
        return True
    # A flood's counting is its own bookkeeping; its start and end are the journal's.
    return topic.startswith(FLOOD_PREFIX) and topic.rsplit(".", 1)[-1] in FLOOD_EVENTS


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(fields, default=str))  # type: ignore[no-any-return]
