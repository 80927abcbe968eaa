"""audit_log: verifying, replaying and exporting a hash-chained event log of 1,000,000 events.

The log is built in a schema of its own: a ``PlantApplication`` on PostgreSQL
creates the library's events table there, the append-only guard and the hash
chain are installed on it as ``open_application`` installs them on the plant's,
and the events are bulk-loaded with ``INSERT … SELECT`` from
``generate_series``, so the chain trigger hashes every row as it would hash the
plant's.

The events are real: one *block* of plant activity is first written through the
domain (an in-memory ``PlantApplication``, the library's own mapper and JSON
transcoder): eight commands (six written and read back, one of them on a
critical tag with a second person's approval, one refused by the tag's limits,
one whose write failed) and two alarms raised, acknowledged and cleared twice,
with their area's flood counting. The block is then repeated with new aggregate
ids and its times moved along (its events' ``at`` and the library's
``timestamp``), 2,740 events a day, so the full log is a year of one plant's
commands and alarms, every aggregate replayable. Operators are left out: they
are few and long-lived in a plant, and are measured in ``request_auth``.

Measured, each side against its raw counterpart on the same run:

- **load**: the bulk insert with the chain trigger, against the same rows into
  a second events table of the library (a bare ``Application``'s) without it:
  the trigger's cost. Chunks of both alternate.
- **verify**: :func:`audit.chain_check.verify_database` over the whole log,
  against **raw**, a server-side cursor reading the same rows and recomputing
  each row's sha256 over the same bytes in a plain loop (no verifier, no
  findings, no window), and **sql**, the same recomputation in PL/pgSQL
  with the chain's own SQL function. Then the cost of signed checkpoints: a
  file of checkpoints read, their signatures checked and the log verified
  against them (``plantcore audit verify --checkpoints``).
- **replay**: aggregates spread over the whole log (commands, alarms, floods),
  each rebuilt by :func:`audit.replay.aggregate_at` (what ``plantcore audit
  replay --aggregate`` prints), by plantcore's ``repository.get`` (snapshots on,
  so the snapshot table is asked first), and **raw**: a bare ``Application``
  reading the same table, ``repository.get`` on the same ids. And one pass over
  the whole log rebuilding every aggregate in memory (pages of
  ``select_notifications``, the mapper, ``mutate``).
- **read models**: ``plantcore audit replay --read-models``
  (:func:`audit.read_models.rebuild_and_compare`) over the whole log, after the
  live alarm views were built in the bench schema by the same code (the
  projection's own run, timed too), against **raw**, reading the same pages of
  notifications without the views.
- **export**: :func:`audit.export.export_range` of the whole log to a file, and
  :func:`audit.export.verify_file` of it offline, against **raw**, PostgreSQL's
  ``COPY … TO STDOUT`` of the same rows and columns into a file.

A full run takes about three and a half minutes on the reference machine; ``--quick``
builds 100,000 events (about 20 s). The schema, the Redis key, the scratch
schema of the rebuild and the export file are removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis.asyncio as aioredis
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.persistence import Transcoder
from psycopg import sql

from audit.chain_check import verify_database
from audit.checkpoints import Checkpoint, generate_signing_key, public_keys, read_checkpoints
from audit.checkpoints import verified_heads as verified_checkpoint_heads
from audit.export import export_range, verify_file
from audit.read_models import _rebuild as build_alarm_views  # the live projection's own run
from audit.read_models import rebuild_and_compare
from audit.replay import aggregate_at
from bench.command_store import bench_schema
from bench.common import BenchConfig, Figures, Laps, Run, latency_ms, ratio
from domain.application import PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.errors import CommandRefused
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from eventstore.chain import ZERO_HASH, install_hash_chain
from eventstore.executor import StoreExecutor
from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env
from plantcore.settings import DEFAULT_REDIS_URL

EVENTS_TABLE = "plantapplication_events"  # PlantApplication's, in the bench schema
RAW_APPLICATION = "BenchRawLog"  # its table, benchrawlog_events, has no chain
EVENTS_PER_DAY = 2740  # a million a year
LOG_START = datetime(2025, 11, 24, tzinfo=UTC)
# Where the template's times are anchored before they become offsets in the block.
TEMPLATE_START = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)
PLACEHOLDER = "unused-by-the-benchmark"
# The library records an event a few milliseconds after the domain stamped its ``at``.
RECORD_DELAY = timedelta(milliseconds=3)


@dataclass(frozen=True, slots=True)
class Size:
    events: int
    load_chunk: int
    verify_rounds: int
    checkpoints: int
    replay_blocks: int
    replay_rounds: int

    @staticmethod
    def of(config: BenchConfig) -> Size:
        return Size(
            events=config.pick(quick=100_000, full=1_000_000),
            load_chunk=config.pick(quick=25_000, full=100_000),
            verify_rounds=2,
            checkpoints=config.pick(quick=2_000, full=20_000),
            replay_blocks=config.pick(quick=40, full=500),
            replay_rounds=config.pick(quick=2, full=5),
        )


# -- the template: one block of plant activity through the real domain ---------------------


@dataclass(frozen=True, slots=True)
class TemplateEvent:
    """One stored event of the block, its times replaced by ``@T<k>@`` tokens."""

    seq: int
    aggregate: int  # the aggregate's index within the block
    version: int
    topic: str
    state: str  # the JSON the transcoder wrote, with tokens for its times
    offsets: tuple[float, ...]  # seconds from the block's start, one per token


@dataclass(frozen=True, slots=True)
class Template:
    events: tuple[TemplateEvent, ...]
    versions: tuple[int, ...]  # each aggregate's last version in the block
    kinds: tuple[str, ...]  # each aggregate's class name
    span_seconds: float

    @property
    def tokens(self) -> int:
        return max(len(event.offsets) for event in self.events)


def _catalog() -> TagCatalog:
    def tag(device: str, name: str, unit: str, high: float, *, critical: bool = False) -> TagLimits:
        return TagLimits(
            device,
            name,
            unit,
            writable=True,
            kind=ValueKind.NUMBER if critical else ValueKind.INTEGER,
            low=0,
            high=high,
            critical=critical,
        )

    return TagCatalog(
        [
            tag("press-1", "speed_setpoint", "rpm", 3000),
            tag("press-2", "speed_setpoint", "rpm", 3000),
            tag("press-1", "ram_pressure_limit", "bar", 250.0, critical=True),
        ],
        {"press-1": DeviceInfo(area="hall-a"), "press-2": DeviceInfo(area="hall-a")},
    )


def _write_block(app: PlantApplication) -> None:
    """A morning of plant activity, through the use cases the API and the runtime call."""
    t0 = TEMPLATE_START
    for name, full_name in (("ana", "Ana Operator"), ("ben", "Ben Supervisor")):
        app.register_operator(
            username=name,
            full_name=full_name,
            roles=["operator"],
            password_hash=PLACEHOLDER,
            totp_secret_sealed=PLACEHOLDER,
            actor="admin",
            at=t0,
        )
        app.grant_permission(username=name, scope="plant", actor="admin", at=t0)
    step = 0

    def command(at: datetime, device: str, tag: str, value: float | int) -> UUID:
        nonlocal step
        ticket = app.request_command(actor="ana", device=device, tag=tag, value=value, at=at)
        step += 1
        app.confirm_command(
            actor="ana", command_id=ticket.command_id, totp_step=step, at=at + timedelta(seconds=9)
        )
        return ticket.command_id

    def written(command_id: UUID, at: datetime, value: float | int) -> None:
        app.record_dispatch(command_id, at)
        app.record_write_succeeded(command_id, value, at + timedelta(milliseconds=180))

    minute = timedelta(minutes=1)
    for n, (device, value) in enumerate(
        [("press-1", 1500), ("press-2", 1320), ("press-1", 1480), ("press-2", 1350)]
    ):
        at = t0 + minute * (3 * n + 1)
        written(command(at, device, "speed_setpoint", value), at + timedelta(seconds=9.2), value)
    # A critical tag: the requester signs, a second person approves, then it is written.
    at = t0 + minute * 14
    critical = command(at, "press-1", "ram_pressure_limit", 210.0)
    app.approve_command(
        actor="ben", command_id=critical, totp_step=1, at=at + timedelta(seconds=40)
    )
    written(critical, at + timedelta(seconds=40.3), 210.0)
    # Refused by the tag's limits: recorded, never written.
    with contextlib.suppress(CommandRefused):
        app.request_command(
            actor="ana", device="press-2", tag="speed_setpoint", value=3600, at=t0 + minute * 17
        )
    # A write the PLC did not take.
    at = t0 + minute * 19
    failed = command(at, "press-2", "speed_setpoint", 1400)
    app.record_dispatch(failed, at + timedelta(seconds=9.2))
    app.record_write_failed(failed, "timeout: no reply from press-2", at + timedelta(seconds=14.2))
    at = t0 + minute * 21
    written(command(at, "press-2", "speed_setpoint", 1400), at + timedelta(seconds=9.2), 1400)
    # Two alarms, each raised, acknowledged and cleared twice, one after the other.
    alarms = [
        ("oil_temperature_hi", "oil_temperature", 80.0, 81.4),
        ("ram_pressure_hi", "ram", 240.0, 242.5),
    ]
    for cycle in range(2):
        for n, (condition, tag, limit, reading) in enumerate(alarms):
            raised = t0 + minute * (2 + 12 * cycle + 5 * n)
            transition = AlarmTransition(
                transition_id=f"{condition}-{cycle}-raised",
                device="press-1",
                condition=condition,
                kind=AlarmKind.HI,
                priority=AlarmPriority.HIGH,
                area="hall-a",
                tag=tag,
                active=True,
                suppressed=False,
                latch=False,
                value=reading,
                limit=limit,
                message=f"{tag} above {limit:g}",
                ts=raised,
            )
            [change] = app.record_alarm_transitions([transition], raised)
            app.acknowledge_alarm(
                alarm_id=change.alarm_id,
                actor="ana",
                comment="checked on site",
                at=raised + timedelta(seconds=50),
            )
            cleared = raised + timedelta(minutes=3)
            back = replace(
                transition,
                transition_id=f"{condition}-{cycle}-cleared",
                active=False,
                value=limit - 2.0,
                ts=cleared,
            )
            app.record_alarm_transitions([back], cleared)


def _tokenised(
    transcoder: Transcoder, state: bytes, start: datetime
) -> tuple[str, tuple[float, ...]]:
    """The state's JSON with each time as a token, and each token's offset from ``start``."""
    decoded: dict[str, Any] = transcoder.decode(state)
    at = decoded.get("at")
    if isinstance(at, datetime) and isinstance(decoded.get("timestamp"), datetime):
        decoded["timestamp"] = at + RECORD_DELAY
    offsets: list[float] = []
    sentinel = datetime(2000, 1, 1, tzinfo=UTC)

    def walk(value: Any) -> Any:
        if isinstance(value, datetime):
            offsets.append((value - start).total_seconds())
            return sentinel + timedelta(seconds=len(offsets) - 1)
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    text = transcoder.encode(walk(decoded)).decode("utf-8")
    for k in range(len(offsets)):
        marked = (sentinel + timedelta(seconds=k)).isoformat()
        assert text.count(marked) == 1, marked
        text = text.replace(marked, f"@T{k}@")
    return text, tuple(offsets)


def make_template() -> Template:
    """The block written through the domain in memory, operators left out."""
    app = PlantApplication(_catalog())
    try:
        _write_block(app)
        stored = app.recorder.select_notifications(start=None, limit=10_000)
        transcoder = app.mapper.transcoder
        aggregates: dict[str, int] = {}
        events: list[TemplateEvent] = []
        versions: dict[int, int] = {}
        kinds: dict[int, str] = {}
        for notification in stored:
            module, _, qualname = notification.topic.partition(":")
            if module.startswith("domain.operator"):
                continue
            index = aggregates.setdefault(str(notification.originator_id), len(aggregates))
            text, offsets = _tokenised(transcoder, notification.state, TEMPLATE_START)
            events.append(
                TemplateEvent(
                    len(events),
                    index,
                    notification.originator_version,
                    notification.topic,
                    text,
                    offsets,
                )
            )
            versions[index] = notification.originator_version
            kinds[index] = qualname.split(".")[0]
        # In the order the events were recorded (by their ``timestamp``, the first time
        # in every state), as the plant would have recorded them; each aggregate's
        # events keep their order.
        ordered = sorted(events, key=lambda event: (event.offsets[0], event.seq))
        ordered = [replace(event, seq=seq) for seq, event in enumerate(ordered)]
        last: dict[int, int] = {}
        for event in ordered:
            assert event.version == last.get(event.aggregate, 0) + 1, (event, last)
            last[event.aggregate] = event.version
        span = max(max(event.offsets) for event in ordered)
        return Template(
            tuple(ordered),
            tuple(versions[i] for i in range(len(aggregates))),
            tuple(kinds[i] for i in range(len(aggregates))),
            span,
        )
    finally:
        app.close()


# -- the log ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Log:
    url: str
    schema: str
    seed: str
    template: Template
    blocks: int
    events: int
    block_seconds: float

    @property
    def table(self) -> str:
        return f"{self.schema}.{EVENTS_TABLE}"

    @property
    def raw_table(self) -> str:
        return f"{self.schema}.{RAW_APPLICATION.lower()}_events"

    def aggregate_id(self, block: int, aggregate: int) -> UUID:
        """The id the load gives ``aggregate`` of ``block`` (as the SQL does)."""
        key = f"{self.seed}:{block}:{aggregate}".encode()
        return UUID(hashlib.md5(key, usedforsecurity=False).hexdigest())


class RawLog(Application[UUID]):
    """The bare library's own events table, without the chain: the load's raw side."""

    name = RAW_APPLICATION


def _identifier(table: str) -> sql.Identifier:
    schema, name = table.split(".")
    return sql.Identifier(schema, name)


def _store_template(url: str, schema: str, template: Template) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.bench_template (seq int PRIMARY KEY, aggregate int,"
                " version int, topic text, state text, offsets float8[])"
            ).format(sql.Identifier(schema))
        )
        width = template.tokens
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL("INSERT INTO {}.bench_template VALUES (%s, %s, %s, %s, %s, %s)").format(
                    sql.Identifier(schema)
                ),
                [
                    (
                        e.seq,
                        e.aggregate,
                        e.version,
                        e.topic,
                        e.state,
                        list(e.offsets) + [0.0] * (width - len(e.offsets)),
                    )
                    for e in template.events
                ],
            )


def _insert_blocks(log: Log, table: str, first: int, last: int, limit: int) -> sql.Composed:
    """``INSERT … SELECT``: blocks ``first``..``last`` in order, at most ``limit`` events."""
    times: sql.Composable = sql.SQL("t.state")
    for k in range(log.template.tokens):
        at = sql.SQL(
            "to_char(({start}::timestamptz + (b * {block}::float8 + t.offsets[{index}])"
            " * interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        ).format(
            start=sql.Literal(LOG_START.isoformat()),
            block=sql.Literal(log.block_seconds),
            index=sql.Literal(k + 1),
        )
        times = sql.SQL("replace({}, {}, {})").format(times, sql.Literal(f"@T{k}@"), at)
    return sql.SQL(
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " SELECT md5({seed} || ':' || b || ':' || t.aggregate)::uuid, t.version, t.topic,"
        " convert_to({times}, 'UTF8')"
        " FROM generate_series({first}::int, {last}::int) AS b"
        " CROSS JOIN {schema}.bench_template AS t ORDER BY b, t.seq LIMIT {limit}"
    ).format(
        table=_identifier(table),
        seed=sql.Literal(log.seed),
        times=times,
        first=sql.Literal(first),
        last=sql.Literal(last),
        schema=sql.Identifier(log.schema),
        limit=sql.Literal(limit),
    )


def load(log: Log, chunk_events: int) -> tuple[Run, Run]:
    """The log into both tables, chunk by chunk, alternating which goes first: (chained, raw)."""
    per_block = len(log.template.events)
    chunks = max(1, round(log.events / chunk_events))
    blocks_per_chunk = math.ceil(log.blocks / chunks)
    tables = (log.table, log.raw_table)
    durations: dict[str, list[float]] = {table: [] for table in tables}  # per event, by chunk
    sizes: list[int] = []
    loaded = first = chunk = 0
    with psycopg.connect(log.url, autocommit=True) as conn:
        while first < log.blocks:
            last = min(log.blocks, first + blocks_per_chunk) - 1
            limit = min(log.events - loaded, (last - first + 1) * per_block)
            for table in tables if chunk % 2 == 0 else tables[::-1]:
                started = time.perf_counter()
                with conn.transaction():
                    # As the library does for every write.
                    conn.execute(
                        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(_identifier(table))
                    )
                    conn.execute(_insert_blocks(log, table, first, last, limit))
                durations[table].append((time.perf_counter() - started) / limit)
            sizes.append(limit)
            loaded += limit
            first = last + 1
            chunk += 1
    chained, unchained = (
        Run(log.events, sum(d * n for d, n in zip(durations[t], sizes, strict=True)), durations[t])
        for t in tables
    )
    return chained, unchained


def vacuum(log: Log) -> float:
    """What autovacuum would have done to a table that grew over a year; timed, not compared."""
    started = time.perf_counter()
    with psycopg.connect(log.url, autocommit=True) as conn:
        for table in (log.table, log.raw_table):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(_identifier(table)))
    return time.perf_counter() - started


def table_bytes(log: Log) -> Figures:
    with psycopg.connect(log.url) as conn:
        row = conn.execute(
            "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
            (log.table, log.table),
        ).fetchone()
    assert row is not None
    table, indexes = int(row[0]), int(row[1])
    return {
        "table_mb": round(table / 2**20, 1),
        "indexes_mb": round(indexes / 2**20, 1),
        "bytes_per_event": round((table + indexes) / log.events),
    }


# -- verify -------------------------------------------------------------------------------------


def _timed(operations: int, work: Callable[[], object]) -> Run:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return Run(operations, seconds, [seconds])


def verify_plantcore(log: Log) -> int:
    report = verify_database(log.url, log.table)
    if not report.intact or report.rows != log.events:
        raise RuntimeError(f"the bench log does not verify: {report.first}")
    return report.rows


_Q = struct.Struct(">q").pack
_I = struct.Struct(">i").pack


def recompute_raw(log: Log) -> int:
    """The chain recomputed in a plain loop: read, hash the same bytes, compare; no verifier."""
    mismatches = 0
    rows = 0
    previous = ZERO_HASH
    sha256 = hashlib.sha256
    with psycopg.connect(log.url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor(name="bench_raw_chain") as cursor:
            cursor.itersize = 2000  # as iter_chain_rows
            cursor.execute(
                sql.SQL(
                    "SELECT notification_id, chain_hash, originator_id, originator_version,"
                    " topic, state FROM {} ORDER BY notification_id"
                ).format(_identifier(log.table))
            )
            for position, stored, originator, version, topic, state in cursor:
                topic_bytes = topic.encode("utf-8")
                digest = sha256(previous)
                digest.update(_Q(position))
                digest.update(originator.bytes)
                digest.update(_Q(version))
                digest.update(_I(len(topic_bytes)))
                digest.update(topic_bytes)
                digest.update(_I(len(state)))
                digest.update(state)
                if digest.digest() != stored:
                    mismatches += 1
                previous = stored
                rows += 1
    if mismatches or rows != log.events:
        raise RuntimeError(f"raw recomputation: {mismatches} mismatches in {rows} rows")
    return rows


_SQL_VERIFY = r"""
CREATE FUNCTION {function}() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r record;
    previous bytea := '\x{zero}'::bytea;
    mismatches bigint := 0;
BEGIN
    FOR r IN SELECT notification_id, originator_id, originator_version, topic, state, chain_hash
               FROM {table} ORDER BY notification_id
    LOOP
        IF {link}(previous, r.notification_id, r.originator_id, r.originator_version,
                  r.topic, r.state) IS DISTINCT FROM r.chain_hash THEN
            mismatches := mismatches + 1;
        END IF;
        previous := r.chain_hash;
    END LOOP;
    RETURN mismatches;
END
$$
"""


def install_sql_verify(log: Log) -> None:
    with psycopg.connect(log.url) as conn:
        conn.execute(
            sql.SQL(_SQL_VERIFY).format(
                function=sql.Identifier(log.schema, "bench_sql_verify"),
                zero=sql.SQL(ZERO_HASH.hex()),
                table=_identifier(log.table),
                link=sql.Identifier(log.schema, "plantcore_chain_link"),
            )
        )


def recompute_sql(log: Log) -> int:
    with psycopg.connect(log.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT {}()").format(sql.Identifier(log.schema, "bench_sql_verify"))
        ).fetchone()
    assert row is not None
    if row[0] != 0:
        raise RuntimeError(f"SQL recomputation: {row[0]} mismatches")
    return log.events


def alternate(rounds: int, contenders: Mapping[str, Callable[[int], Run]]) -> dict[str, Run]:
    """Each contender once per round, the order turned by one each round (no one always first)."""
    names = list(contenders)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_ in range(rounds):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            runs[name].append(contenders[name](round_))
    return {name: Run.combined(each) for name, each in runs.items()}


def verify_figures(log: Log, rounds: int) -> dict[str, Run]:
    install_sql_verify(log)
    return alternate(
        rounds,
        {
            "plantcore": lambda _: _timed(log.events, lambda: verify_plantcore(log)),
            "raw": lambda _: _timed(log.events, lambda: recompute_raw(log)),
            "sql": lambda _: _timed(log.events, lambda: recompute_sql(log)),
        },
    )


def checkpoint_figures(log: Log, count: int, directory: Path) -> Figures:
    """``verify --checkpoints``: a file of ``count`` signed checkpoints over the whole log."""
    key = generate_signing_key()
    step = max(1, log.events // count)
    with psycopg.connect(log.url) as conn:
        heads = conn.execute(
            sql.SQL(
                "SELECT notification_id, chain_hash FROM"
                " (SELECT notification_id, chain_hash, row_number() OVER (ORDER BY notification_id)"
                " AS n FROM {}) AS numbered WHERE n %% %s = 0 ORDER BY notification_id"
            ).format(_identifier(log.table)),
            (step,),
        ).fetchall()
    path = directory / "checkpoints.jsonl"
    every = log.blocks * log.block_seconds / len(heads)
    with path.open("w", encoding="utf-8") as out:
        for n, (position, digest) in enumerate(heads):
            at = LOG_START + timedelta(seconds=(n + 1) * every)
            out.write(Checkpoint.sign(key, position, bytes(digest), at).to_json() + "\n")
    started = time.perf_counter()
    checkpoints = read_checkpoints(path)
    expected, refused = verified_checkpoint_heads(checkpoints, public_keys([key.public_key()]))
    checked = time.perf_counter()
    report = verify_database(log.url, log.table, expected=expected)
    ended = time.perf_counter()
    if refused or not report.intact or report.checkpoints_matched != len(heads):
        raise RuntimeError(f"checkpoints: {report.first or refused}")
    return {
        "checkpoints": len(heads),
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "read_and_signatures_seconds": round(checked - started, 3),
        "us_per_checkpoint": round(1e6 * (checked - started) / len(heads), 1),
        "verify_seconds": round(ended - checked, 3),
        "events_per_s": round(log.events / (ended - started), 1),
    }


# -- replay -------------------------------------------------------------------------------------


class RawReader(Application[UUID]):
    """The bare library on the plant's table: no snapshots, none of plantcore's code."""

    name = "PlantApplication"  # the same events table, plantapplication_events


@dataclass(frozen=True, slots=True)
class Sample:
    ids: tuple[UUID, ...]
    events: int


def samples(log: Log, blocks: int, rounds: int) -> list[Sample]:
    """Every aggregate of ``blocks`` blocks spread over the whole log, in ``rounds`` parts."""
    whole = log.blocks - 1  # the last block may be cut short
    chosen = [round(i * (whole - 1) / max(1, blocks - 1)) for i in range(blocks)]
    parts: list[Sample] = []
    for r in range(rounds):
        mine = chosen[r::rounds]
        ids = tuple(
            log.aggregate_id(block, aggregate)
            for block in mine
            for aggregate in range(len(log.template.versions))
        )
        parts.append(Sample(ids, len(mine) * sum(log.template.versions)))
    return parts


def _warm(log: Log, sample: Sample) -> None:
    """Every contender reads a round's aggregates from the same cache: read them once first."""
    with psycopg.connect(log.url) as conn:
        conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE originator_id = ANY(%s)").format(
                _identifier(log.table)
            ),
            (list(sample.ids),),
        )


def replay_sample(sample: Sample, load_one: Callable[[UUID], object]) -> Run:
    laps = Laps()
    for aggregate_id in sample.ids:
        load_one(aggregate_id)
        laps.lap()
    run = laps.run()
    return Run(sample.events, run.seconds, run.durations)


def replay_figures(
    log: Log, plant: PlantApplication, raw: RawReader, parts: Sequence[Sample]
) -> dict[str, Run]:
    for part in parts:
        _warm(log, part)

    def by_round(load_one: Callable[[UUID], object]) -> Callable[[int], Run]:
        return lambda round_: replay_sample(parts[round_], load_one)

    def getter(app: Application[UUID]) -> Callable[[UUID], object]:
        def get(aggregate_id: UUID) -> object:
            aggregate: Aggregate = app.repository.get(aggregate_id)
            return aggregate

        return get

    return alternate(
        len(parts),
        {
            "aggregate_at": by_round(lambda aggregate_id: aggregate_at(plant, aggregate_id)),
            "repository_get": by_round(getter(plant)),
            "raw": by_round(getter(raw)),
        },
    )


def replay_whole_log(log: Log, app: PlantApplication, page: int = 1000) -> Figures:
    """Every aggregate rebuilt in memory in one pass over the log, in log order."""
    aggregates: dict[UUID, Aggregate] = {}
    reading = mapping = 0.0
    events = 0
    position = 0
    started = time.perf_counter()
    while True:
        before = time.perf_counter()
        batch = app.recorder.select_notifications(position, page, inclusive_of_start=False)
        read = time.perf_counter()
        reading += read - before
        if not batch:
            break
        for notification in batch:
            event = app.mapper.to_domain_event(notification)
            assert isinstance(event, CanMutateAggregate)
            originator = event.originator_id
            assert isinstance(originator, UUID)
            aggregate = event.mutate(aggregates.get(originator))
            assert isinstance(aggregate, Aggregate)
            aggregates[originator] = aggregate
        mapping += time.perf_counter() - read
        events += len(batch)
        position = batch[-1].id
    seconds = time.perf_counter() - started
    if events != log.events:
        raise RuntimeError(f"replayed {events} events of {log.events}")
    return {
        "events_per_s": round(events / seconds, 1),
        "events": events,
        "aggregates": len(aggregates),
        "seconds": round(seconds, 3),
        "parts_seconds": {
            "select_notifications": round(reading, 3),
            "mapper_and_mutate": round(mapping, 3),
        },
    }


# -- read models --------------------------------------------------------------------------------


def _last_position(log: Log) -> int:
    with psycopg.connect(log.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT max(notification_id) FROM {}").format(_identifier(log.table))
        ).fetchone()
    assert row is not None
    return int(row[0])


def _alarm_events(log: Log, up_to: int) -> int:
    with psycopg.connect(log.url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE notification_id <= %s AND (topic LIKE"
                " 'domain.alarm:%%' OR topic LIKE 'domain.alarm_flood:AlarmFlood.Flood%%')"
            ).format(_identifier(log.table)),
            (up_to,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def scan_notifications(app: PlantApplication, up_to: int, page: int) -> int:
    """The raw side of a rebuild: the same pages of the log read, nothing done with them."""
    position = count = 0
    while position < up_to:
        batch = app.recorder.select_notifications(
            position, page, stop=up_to, inclusive_of_start=False
        )
        if not batch:
            break
        count += len(batch)
        position = batch[-1].id
    return count


async def read_model_figures(log: Log, app: PlantApplication) -> Figures:
    """The whole log: the live views built, then rebuilt and compared; then the bare scan."""
    events = log.events
    up_to = _last_position(log)
    alarm_events = await asyncio.to_thread(_alarm_events, log, up_to)
    redis_url = os.environ.get("PLANTCORE_REDIS_URL", DEFAULT_REDIS_URL)
    redis = aioredis.Redis.from_url(redis_url)
    live_key = f"bench:{log.schema}:alarms:active"
    store_executor = StoreExecutor(max_workers=2)
    try:
        # The live views, as the plant's projection would have built them up to there.
        started = time.perf_counter()
        await build_alarm_views(app, store_executor, log.url, redis, log.schema, live_key, up_to)
        live = time.perf_counter() - started
        started = time.perf_counter()
        report = await rebuild_and_compare(
            app,
            log.url,
            redis,
            store_executor=store_executor,
            live_schema=log.schema,
            live_active_key=live_key,
            position=up_to,
        )
        audit = time.perf_counter() - started
        if not report.equal:
            raise RuntimeError(f"the rebuilt read models differ: {report.differences[:3]}")
        started = time.perf_counter()
        scanned = await asyncio.to_thread(scan_notifications, app, up_to, 500)
        scan = time.perf_counter() - started
    finally:
        store_executor.shutdown()
        with contextlib.suppress(Exception):
            await redis.delete(live_key)
        await redis.aclose()
    if scanned != events:
        raise RuntimeError(f"scanned {scanned} events of {events}")
    rows = {m.model.split(" ")[0]: m.rebuilt_rows for m in report.models}  # "redis <key>"
    return {
        "events": events,
        "alarm_events": alarm_events,
        "rows": rows,
        "plantcore": {
            "events_per_s": round(events / audit, 1),
            "alarm_events_per_s": round(alarm_events / audit, 1),
            "seconds": round(audit, 3),
        },
        "live_build": {
            "events_per_s": round(events / live, 1),
            "seconds": round(live, 3),
        },
        "raw": {"events_per_s": round(events / scan, 1), "seconds": round(scan, 3)},
        "ratio": round(scan / audit, 3),
    }


# -- export -------------------------------------------------------------------------------------


def export_figures(log: Log, directory: Path) -> Figures:
    path = directory / "export.ndjson"
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as out:
        summary = export_range(log.url, log.table, out)
    exported = time.perf_counter() - started
    size = path.stat().st_size
    started = time.perf_counter()
    report = verify_file(path)
    verified = time.perf_counter() - started
    path.unlink()
    if summary.count != log.events or not report.intact or report.rows != log.events:
        raise RuntimeError(f"export: {summary.count} events, {report.first}")
    copied = directory / "copy.txt"
    started = time.perf_counter()
    statement = sql.SQL(
        "COPY (SELECT notification_id, chain_prev, chain_hash, originator_id,"
        " originator_version, topic, state FROM {} ORDER BY notification_id) TO STDOUT"
    ).format(_identifier(log.table))
    with (
        psycopg.connect(log.url) as conn,
        copied.open("wb") as out,
        conn.cursor() as cursor,
        cursor.copy(statement) as copy_out,
    ):
        for data in copy_out:
            out.write(data)
    raw = time.perf_counter() - started
    raw_size = copied.stat().st_size
    copied.unlink()
    return {
        "export": {
            "events_per_s": round(log.events / exported, 1),
            "seconds": round(exported, 3),
            "file_mb": round(size / 2**20, 1),
            "bytes_per_event": round(size / log.events),
        },
        "verify_file": {
            "events_per_s": round(log.events / verified, 1),
            "seconds": round(verified, 3),
        },
        "raw_copy": {
            "events_per_s": round(log.events / raw, 1),
            "seconds": round(raw, 3),
            "file_mb": round(raw_size / 2**20, 1),
        },
        "ratio": round(raw / exported, 3),
    }


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def applications(url: str, schema: str) -> Iterator[tuple[PlantApplication, RawReader]]:
    env = {**event_store_env(url), "POSTGRES_SCHEMA": schema}
    plant = PlantApplication(_catalog(), env=env)
    RawLog(env=env).close()  # creates its table, the load's raw side
    raw = RawReader(env=env)
    try:
        yield plant, raw
    finally:
        plant.close()
        raw.close()


def _load_rates(run: Run) -> Figures:
    """A load's rate, and its cost per event in the first and the last chunk (as the table grew)."""
    return {
        **_rates(run),
        "us_per_event": {
            "first_chunk": round(1e6 * run.durations[0], 2),
            "last_chunk": round(1e6 * run.durations[-1], 2),
        },
    }


def _rates(run: Run) -> Figures:
    return {
        "events_per_s": round(run.rate, 1),
        "events": run.operations,
        "seconds": round(run.seconds, 3),
    }


def _replay_rates(run: Run, aggregates: int) -> Figures:
    return {
        **_rates(run),
        "aggregates": aggregates,
        "aggregates_per_s": round(aggregates / run.seconds, 1) if run.seconds else 0.0,
        "latency_ms": latency_ms(run.durations),
    }


async def run(config: BenchConfig) -> Figures:
    size = Size.of(config)
    load_before = os.getloadavg()
    template = await asyncio.to_thread(make_template)
    per_block = len(template.events)
    blocks = math.ceil(size.events / per_block)
    days = size.events / EVENTS_PER_DAY
    with bench_schema(config.database_url) as schema, tempfile.TemporaryDirectory() as scratch:
        log = Log(
            url=config.database_url,
            schema=schema,
            seed=schema,
            template=template,
            blocks=blocks,
            events=size.events,
            block_seconds=days * 86400 / blocks,
        )
        with applications(config.database_url, schema) as (plant, raw):
            install_append_only_guard(config.database_url, log.table)
            install_hash_chain(config.database_url, log.table)
            await asyncio.to_thread(_store_template, config.database_url, schema, template)
            chained, unchained = await asyncio.to_thread(load, log, size.load_chunk)
            vacuum_seconds = await asyncio.to_thread(vacuum, log)
            sizes = await asyncio.to_thread(table_bytes, log)
            verify = await asyncio.to_thread(verify_figures, log, size.verify_rounds)
            checkpoints = await asyncio.to_thread(
                checkpoint_figures, log, size.checkpoints, Path(scratch)
            )
            parts = samples(log, size.replay_blocks, size.replay_rounds)
            replay = await asyncio.to_thread(replay_figures, log, plant, raw, parts)
            whole = await asyncio.to_thread(replay_whole_log, log, plant)
            read_models = await read_model_figures(log, plant)
            export = await asyncio.to_thread(export_figures, log, Path(scratch))
    aggregates = sum(len(part.ids) for part in parts)
    kinds = {kind: template.kinds.count(kind) for kind in sorted(set(template.kinds))}
    return {
        "params": {
            "events": size.events,
            "events_per_day": EVENTS_PER_DAY,
            "days": round(days, 1),
            "block": {
                "events": per_block,
                "aggregates": kinds,
                "span_minutes": round(template.span_seconds / 60, 1),
            },
            "blocks": blocks,
            "load_chunk_events": size.load_chunk,
            "verify_rounds": size.verify_rounds,
            "replay_aggregates": aggregates,
            "replay_rounds": size.replay_rounds,
            "load_average_before_after": [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ],
        },
        "log": sizes,
        "load": {
            "plantcore": _load_rates(chained),
            "raw": _load_rates(unchained),
            "ratio": ratio(chained, unchained),
            "trigger_us_per_event": round(
                1e6 * (chained.seconds - unchained.seconds) / size.events, 2
            ),
            "vacuum_analyze_seconds": round(vacuum_seconds, 3),
        },
        "verify": {
            **{name: _rates(each) for name, each in verify.items()},
            "ratio": ratio(verify["plantcore"], verify["raw"]),
            "ratio_sql": ratio(verify["plantcore"], verify["sql"]),
            "with_checkpoints": checkpoints,
        },
        "replay": {
            **{name: _replay_rates(each, aggregates) for name, each in replay.items()},
            "ratio": ratio(replay["aggregate_at"], replay["raw"]),
            "ratio_repository_get": ratio(replay["repository_get"], replay["raw"]),
            "whole_log": whole,
        },
        "read_models": read_models,
        "export": export,
    }
