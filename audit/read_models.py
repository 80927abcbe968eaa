"""Rebuild the read models from the event log alone and compare them with the live ones.

The read models derived from the event log are the alarm views
(:mod:`projections.alarm_views`): PostgreSQL ``alarm_current`` and
``alarm_journal``, and the Redis hash of alarms not normal
(``plant:alarms:active``). :func:`rebuild_and_compare`:

1. takes the position the live projection says it has applied (its tracking
   record, ``alarm-views``; the end of the log if it never ran);
2. creates an empty scratch schema (``audit_rebuild_<random>``) and a scratch
   Redis key, and runs the live projection's own code (:class:`AlarmViews`,
   the same tables created by the same ``ensure_alarm_schema``, on connections
   whose ``search_path`` is the scratch schema) over the whole log, from
   position 0 to that position;
3. compares both row by row in one repeatable-read snapshot (a full outer
   join on each table's key, so a row missing on either side counts), and
   the two Redis hashes entry by entry;
4. drops the scratch schema and key, whatever happened.

A plant that keeps running meanwhile moves the live views past the position
compared: journal rows after it are left out, and so are the alarms that
changed after it (counted as ``skipped``), instead of being reported as
differences.

No column is ignored (:data:`IGNORED_COLUMNS` is empty on purpose): every
column of both tables is a function of the events. ``alarm_current.updated_at``
looks like an insertion time but is the alarm's ``modified_on``, the library
timestamp of its last event, stored in the event itself.

Not compared, and why (:data:`NOT_COMPARED`): the command figures of
``/metrics`` live in each process's memory from the log's end at its start,
and the live tag state and history are projected from NATS telemetry, not
from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis
from asyncpg.pool import PoolConnectionProxy
from eventsourcing.persistence import Notification

from audit.replay import JsonValue, jsonable
from domain.application import PlantApplication
from eventstore.executor import StoreExecutor
from projections.alarm_views import (
    ACTIVE_KEY,
    AlarmViews,
    JournalEntry,
    ensure_alarm_schema,
)

# The live projection's own filter (the notifications it turns into journal rows), so that
# the rebuild knows which notification of a batch the projection will report as applied.
from projections.alarm_views import _is_alarm as _alarm_views_take

LIVE_TRACKING_NAME = "alarm-views"
SCRATCH_SCHEMA_PREFIX = "audit_rebuild_"
SCRATCH_KEY_PREFIX = "audit:rebuild:"
# Each table of the alarm views and its key.
TABLES: Mapping[str, str] = {"alarm_current": "alarm_id", "alarm_journal": "position"}
# Columns legitimately different between a live and a rebuilt table: none (see the docstring).
IGNORED_COLUMNS: Mapping[str, tuple[str, ...]] = {"alarm_current": (), "alarm_journal": ()}
NOT_COMPARED: Mapping[str, str] = {
    "command metrics (/metrics)": (
        "counted in each process's memory from the end of the log at its start, with no"
        " stored position and a monotonic clock for the rate: not a function of the log,"
        " and nothing stored to compare with"
    ),
    "live tag state and history (plant:live:*, samples)": (
        "projected from the NATS telemetry stream, not from the event log"
    ),
}
READ_BATCH = 500
ROW = "(row)"


@dataclass(frozen=True, slots=True)
class Difference:
    """One value that differs: ``column`` is ``(row)`` when a row is on one side only."""

    model: str
    key: str
    column: str
    live: JsonValue
    rebuilt: JsonValue


@dataclass(frozen=True, slots=True)
class ModelComparison:
    model: str
    live_rows: int
    rebuilt_rows: int
    differing_rows: int
    skipped: int  # alarms changed after the position compared


@dataclass(frozen=True)
class ReadModelReport:
    """What was compared, up to which log position, and every difference found (bounded)."""

    position: int
    log_end: int
    models: tuple[ModelComparison, ...]
    differences: tuple[Difference, ...]
    not_compared: Mapping[str, str] = field(default_factory=lambda: dict(NOT_COMPARED))

    @property
    def equal(self) -> bool:
        return not self.differences and all(m.differing_rows == 0 for m in self.models)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "equal": self.equal,
            "position": self.position,
            "log_end": self.log_end,
            "models": [
                {
                    "model": m.model,
                    "live_rows": m.live_rows,
                    "rebuilt_rows": m.rebuilt_rows,
                    "differing_rows": m.differing_rows,
                    "skipped": m.skipped,
                }
                for m in self.models
            ],
            "differences": [
                {
                    "model": d.model,
                    "key": d.key,
                    "column": d.column,
                    "live": d.live,
                    "rebuilt": d.rebuilt,
                }
                for d in self.differences
            ],
            "not_compared": dict(self.not_compared),
        }


class _ScratchPosition:
    """The rebuild's position: from 0, kept in memory only."""

    def __init__(self) -> None:
        self.saved = 0

    async def load(self) -> int:
        return 0

    async def save(self, position: int) -> None:
        self.saved = position


async def rebuild_and_compare(
    app: PlantApplication,
    database_url: str,
    redis: aioredis.Redis,
    *,
    store_executor: StoreExecutor | None = None,
    live_schema: str = "public",
    live_active_key: str = ACTIVE_KEY,
    tracking_name: str = LIVE_TRACKING_NAME,
    position: int | None = None,
    max_differences: int = 100,
) -> ReadModelReport:
    """Rebuild every log-derived read model in scratch space and compare it with the live one.

    ``position`` overrides the log position compared (by default the live
    projection's tracked one). At most ``max_differences`` differing rows per
    model are detailed; ``ModelComparison.differing_rows`` counts them all.
    """
    own_store = store_executor is None
    executor = store_executor or StoreExecutor(max_workers=2)
    token = secrets.token_hex(6)
    scratch = SCRATCH_SCHEMA_PREFIX + token
    scratch_key = f"{SCRATCH_KEY_PREFIX}{token}:alarms:active"
    live_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        log_end = await executor.call(app.recorder.max_notification_id) or 0
        if position is None:
            tracker = await executor.call(app.factory.tracking_recorder)
            tracked = await executor.call(tracker.max_tracking_id, tracking_name)
            position = log_end if tracked is None else tracked
        await live_pool.execute(f"CREATE SCHEMA {_ident(scratch)}")
        try:
            await _rebuild(app, executor, database_url, redis, scratch, scratch_key, position)
            return await _compare(
                live_pool,
                redis,
                live_schema=live_schema,
                scratch=scratch,
                live_key=live_active_key,
                scratch_key=scratch_key,
                position=position,
                log_end=log_end,
                max_differences=max_differences,
            )
        finally:
            await live_pool.execute(f"DROP SCHEMA IF EXISTS {_ident(scratch)} CASCADE")
            await redis.delete(scratch_key)
    finally:
        await live_pool.close()
        if own_store:
            executor.shutdown()


# -- the rebuild ---------------------------------------------------------------------------------


async def _rebuild(
    app: PlantApplication,
    store_executor: StoreExecutor,
    database_url: str,
    redis: aioredis.Redis,
    scratch: str,
    scratch_key: str,
    up_to: int,
) -> None:
    """The log from 0 to ``up_to`` through :class:`AlarmViews` into ``scratch``, in order."""
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"search_path": scratch}
    )
    try:
        await ensure_alarm_schema(pool)
        views = AlarmViews(
            app, store_executor, pool, redis, _ScratchPosition(), active_key=scratch_key
        )
        await views.load_position()
        running = asyncio.create_task(views.run())
        try:
            async with views.subscribe() as applied:
                read = 0
                while read < up_to:
                    batch: Sequence[Notification] = await store_executor.call(
                        app.recorder.select_notifications,
                        read,
                        READ_BATCH,
                        stop=up_to,
                        inclusive_of_start=False,
                    )
                    if not batch:
                        break
                    await views.on_notifications(batch)
                    taken = [n.id for n in batch if _alarm_views_take(n.topic)]
                    if taken:
                        # One batch at a time: the rebuild's memory stays that of a batch.
                        await _until_applied(views, applied, taken[-1], running)
                    read = batch[-1].id
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    finally:
        await pool.close()


async def _until_applied(
    views: AlarmViews,
    applied: asyncio.Queue[JournalEntry],
    target: int,
    running: asyncio.Task[None],
) -> None:
    """Wait until the views applied ``target``: each applied batch wakes this up."""
    while views.applied < target:
        entry = asyncio.ensure_future(applied.get())
        done, _ = await asyncio.wait({entry, running}, return_when=asyncio.FIRST_COMPLETED)
        if running in done:
            entry.cancel()
            running.result()  # what stopped the projection, raised here
            raise RuntimeError("the alarm views stopped during the rebuild")
        # Only the wake-up matters: the rest of the batch's entries are dropped, not kept.
        while not applied.empty():
            applied.get_nowait()


# -- the comparison -----------------------------------------------------------------------------


async def _compare(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    *,
    live_schema: str,
    scratch: str,
    live_key: str,
    scratch_key: str,
    position: int,
    log_end: int,
    max_differences: int,
) -> ReadModelReport:
    # Redis first: the live views write it after their PostgreSQL commit, so any alarm
    # this read saw change after ``position`` is in the journal the snapshot below reads.
    live_hash = _decoded(await redis.hgetall(live_key))
    rebuilt_hash = _decoded(await redis.hgetall(scratch_key))
    models: list[ModelComparison] = []
    differences: list[Difference] = []
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        live_tables = {
            table: await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{_ident(live_schema)}.{_ident(table)}"
            )
            for table in TABLES
        }
        later: list[UUID] = []
        if live_tables["alarm_journal"]:
            later = [
                row["alarm_id"]
                for row in await conn.fetch(
                    f"SELECT DISTINCT alarm_id FROM {_ident(live_schema)}.alarm_journal"  # noqa: S608 (quoted)
                    " WHERE position > $1 AND alarm_id IS NOT NULL",
                    position,
                )
            ]
        for table, key in TABLES.items():
            comparison, found = await _compare_table(
                conn,
                table,
                key,
                live=f"{_ident(live_schema)}.{_ident(table)}" if live_tables[table] else None,
                rebuilt=f"{_ident(scratch)}.{_ident(table)}",
                position=position,
                later=later,
                limit=max_differences,
            )
            models.append(comparison)
            differences += found
    comparison, found = _compare_hashes(
        f"redis {live_key}", live_hash, rebuilt_hash, {str(a) for a in later}, max_differences
    )
    models.append(comparison)
    differences += found
    return ReadModelReport(position, log_end, tuple(models), tuple(differences))


async def _compare_table(
    conn: PoolConnectionProxy[asyncpg.Record],
    table: str,
    key: str,
    *,
    live: str | None,
    rebuilt: str,
    position: int,
    later: list[UUID],
    limit: int,
) -> tuple[ModelComparison, list[Difference]]:
    # Both sides cut alike: the journal up to the position, the alarms that did not move on.
    argument: object
    if table == "alarm_journal":
        scope, argument, skipped = "position <= $1", position, 0
    else:
        scope, argument = "NOT (alarm_id = ANY($1::uuid[]))", later
        skipped = len(later)
    # Quoted identifiers only (ours, or the caller's schema quoted); values go as parameters.
    # A live table that does not exist reads as empty: every rebuilt row is then missing.
    live_rows = f"(SELECT * FROM {live or rebuilt} WHERE {scope}{'' if live else ' AND false'})"  # noqa: S608
    rebuilt_rows = f"(SELECT * FROM {rebuilt} WHERE {scope})"  # noqa: S608
    k = _ident(key)
    rows = await conn.fetch(
        f"SELECT coalesce(l.{k}, r.{k})::text AS key,"  # noqa: S608
        "  to_jsonb(l) - $2::text[] AS live, to_jsonb(r) - $2::text[] AS rebuilt,"
        "  count(*) OVER () AS total"
        f" FROM {live_rows} AS l FULL OUTER JOIN {rebuilt_rows} AS r ON l.{k} = r.{k}"
        " WHERE (to_jsonb(l) - $2::text[]) IS DISTINCT FROM (to_jsonb(r) - $2::text[])"
        f" ORDER BY coalesce(l.{k}, r.{k}) LIMIT $3",
        argument,
        list(IGNORED_COLUMNS.get(table, ())),
        limit,
    )
    live_count = await conn.fetchval(f"SELECT count(*) FROM {live_rows} AS l", argument)  # noqa: S608
    rebuilt_count = await conn.fetchval(f"SELECT count(*) FROM {rebuilt_rows} AS r", argument)  # noqa: S608
    differences = [
        d
        for row in rows
        for d in _row_differences(table, row["key"], _json(row["live"]), _json(row["rebuilt"]))
    ]
    total = rows[0]["total"] if rows else 0
    return ModelComparison(table, live_count, rebuilt_count, total, skipped), differences


def _compare_hashes(
    model: str,
    live: dict[str, str],
    rebuilt: dict[str, str],
    later: set[str],
    limit: int,
) -> tuple[ModelComparison, list[Difference]]:
    keys = sorted((set(live) | set(rebuilt)) - later)
    differing = [
        (field_key, _json(live.get(field_key)), _json(rebuilt.get(field_key)))
        for field_key in keys
        if _json(live.get(field_key)) != _json(rebuilt.get(field_key))
    ]
    differences = [
        d
        for field_key, live_value, rebuilt_value in differing[:limit]
        for d in _row_differences(model, field_key, live_value, rebuilt_value)
    ]
    comparison = ModelComparison(
        model,
        len(set(live) - later),
        len(set(rebuilt) - later),
        len(differing),
        len(later & (set(live) | set(rebuilt))),
    )
    return comparison, differences


def _row_differences(model: str, key: str, live: Any, rebuilt: Any) -> list[Difference]:
    if not isinstance(live, dict) or not isinstance(rebuilt, dict):
        return [Difference(model, key, ROW, jsonable(live), jsonable(rebuilt))]
    return [
        Difference(model, key, column, jsonable(live.get(column)), jsonable(rebuilt.get(column)))
        for column in sorted(set(live) | set(rebuilt))
        if live.get(column) != rebuilt.get(column)
    ]


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _decoded(mapping: Mapping[Any, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return {text(k): text(v) for k, v in mapping.items()}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- printed --------------------------------------------------------------------------------------


def format_report(report: ReadModelReport) -> str:
    """The report as an auditor reads it on a terminal."""
    lines = [
        f"read models rebuilt from the event log up to position {report.position}"
        f" (log end {report.log_end}) and compared with the live ones:",
    ]
    width = max(len(m.model) for m in report.models) if report.models else 0
    for m in report.models:
        skipped = f", {m.skipped} skipped (changed after the position)" if m.skipped else ""
        lines.append(
            f"  {m.model:<{width}}  {m.live_rows} live, {m.rebuilt_rows} rebuilt,"
            f" {m.differing_rows} differing{skipped}"
        )
    lines.append("not compared:")
    lines += [f"  {name}: {why}" for name, why in report.not_compared.items()]
    if report.equal:
        lines.append("EQUAL: the live read models are what the event log says")
        return "\n".join(lines) + "\n"
    lines.append(f"DIFFERENT: {len(report.differences)} differing values")
    for d in report.differences:
        if d.column == ROW and d.live is None:
            lines.append(f"  {d.model} [{d.key}]: missing from the live model")
        elif d.column == ROW and d.rebuilt is None:
            lines.append(f"  {d.model} [{d.key}]: in the live model, not in the log")
        else:
            lines.append(
                f"  {d.model} [{d.key}] {d.column}: live {json.dumps(d.live)}"
                f" | rebuilt {json.dumps(d.rebuilt)}"
            )
    if any(d.column == ROW for d in report.differences):
        lines.append("(--json shows whole rows)")
    return "\n".join(lines) + "\n"
