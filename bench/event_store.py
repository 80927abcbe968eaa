"""event_store (issue 16, P5): the event store where a burst or an audit meets it.

**Alarm burst.** A burst of alarm transitions (``alarm_burst.make_burst``: 10
per alarm on average, every one effective) is recorded three ways, round after
round, each round with alarms of its own (``interleaved``):

- ``recorder``: the runtime's wiring. The burst is published to the ALARMS
  stream first, then the durable consumer of
  :data:`~reactors.alarm_recorder.ALARM_FEED` (fetch batch 256) feeding a
  fresh :class:`~reactors.alarm_recorder.AlarmRecorder` (its cache empty, as
  after a start) works through it; timed from its start until it has committed
  every transition.
- ``direct``: the same use case, ``record_alarm_transitions`` with one
  recorder's :class:`~domain.alarm_cache.AlarmCache`, in batches of 256 from
  one thread: no NATS.
- ``library``, the bare side: the eventsourcing library saving one event per
  transition (the same count, round-robin over as many aggregates, each
  created by its first event) in batches of 256 ``save`` calls' worth, into
  its own table without plantcore's triggers. Its aggregates stay in memory:
  it only saves.

``ratio`` is ``recorder`` transitions/s over ``library`` events/s. At the end
the journal must hold one ``Raised`` or ``Cleared`` per transition recorded.

**Audit.** A log of events as the plant makes them (``audit_log``'s template:
commands, alarms and floods over a year, loaded with ``INSERT … SELECT``
through the chain trigger) is then

- verified: ``plantcore audit verify`` (:func:`audit.chain_check.verify_database`)
  against the library reading the same notifications in pages of 1,000
  (``select_notifications``), nothing done with them;
- rebuilt: the alarm read models rebuilt and compared
  (``audit_log.read_model_figures``), against the same library read;
- exported: ``plantcore audit export`` against ``COPY … TO STDOUT``.

Everything lives in a scratch database (the burst) and a schema (the log),
dropped at the end; the burst's subjects are purged from the ALARMS stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from psycopg import sql

from audit.chain_check import verify_database
from bench import audit_log
from bench.alarm_burst import (
    BATCH,
    EFFECTIVE_EVENTS,
    CountingRecorder,
    make_burst,
    publish,
    scratch_database,
    wait_until,
)
from bench.command_store import bench_schema
from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from domain.alarm_cache import AlarmCache
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import ALARM_SUBJECT, AlarmTransition
from eventstore.chain import install_hash_chain
from eventstore.executor import StoreExecutor
from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env
from plantcore.open_application import EVENTS_TABLE, open_application
from plantcore.streams import ensure_alarm_stream
from reactors.alarm_recorder import ALARM_FEED, ALARM_STREAM

LIBRARY_PAGE = 1000  # notifications per library read


# -- the bare library ---------------------------------------------------------------------------


class RawAlarm(Aggregate):
    """An alarm as the bare library would keep it: each transition one event."""

    @event("Defined")
    def __init__(self, *, transition_id: str, active: bool, value: float, at: datetime) -> None:
        self.active = active

    @event("Changed")
    def change(self, *, transition_id: str, active: bool, value: float, at: datetime) -> None:
        self.active = active


class RawAlarms(Application[UUID]):
    name = "BenchRawAlarms"  # its own table, benchrawalarms_events: no plantcore trigger


def save_with_library(app: RawAlarms, transitions: list[AlarmTransition]) -> Run:
    """One event per transition, saved in batches of ``BATCH`` transitions."""
    alarms: dict[tuple[str, str], RawAlarm] = {}
    laps = Laps()
    for start in range(0, len(transitions), BATCH):
        touched: dict[tuple[str, str], RawAlarm] = {}
        for t in transitions[start : start + BATCH]:
            key = (t.device, t.condition)
            fields: dict[str, Any] = {
                "transition_id": t.transition_id,
                "active": t.active,
                "value": t.value,
                "at": t.ts,
            }
            if key in alarms:
                alarms[key].change(**fields)
            else:
                alarms[key] = RawAlarm(**fields)
            touched[key] = alarms[key]
        app.save(*touched.values())
        laps.lap()
    return _per_transition(laps.run(), len(transitions))


def _per_transition(batches: Run, transitions: int) -> Run:
    return Run(transitions, batches.seconds, batches.durations)


# -- plantcore ----------------------------------------------------------------------------------


def record_direct(app: PlantApplication, transitions: list[AlarmTransition]) -> Run:
    """``record_alarm_transitions`` in batches, with one recorder's cache, from one thread."""
    cache = AlarmCache()
    laps = Laps()
    for start in range(0, len(transitions), BATCH):
        app.record_alarm_transitions(transitions[start : start + BATCH], datetime.now(UTC), cache)
        laps.lap()
    return _per_transition(laps.run(), len(transitions))


async def record_through_recorder(
    app: PlantApplication,
    store_executor: StoreExecutor,
    js: JetStreamContext,
    transitions: list[AlarmTransition],
    devices: list[str],
) -> Run:
    """The burst published first, then worked through by a fresh recorder; from its start."""
    recorder = CountingRecorder(app, store_executor, devices)
    durable = unique_name("bench_p5_recorder")
    consumer = ALARM_FEED.consumer(
        js, recorder.record, durable=durable, start=DeliverPolicy.NEW, batch=BATCH
    )
    await consumer.ensure()
    try:
        await publish(js, transitions)
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run())

        async def all_recorded() -> bool:
            if task.done():
                await task  # raises what stopped it
            return recorder.transitions >= len(transitions)

        seconds = await wait_until(all_recorded, started)
        await consumer.stop()
        await task
    finally:
        await js.delete_consumer(ALARM_STREAM, durable)
        for device in devices:
            await js.purge_stream(ALARM_STREAM, subject=ALARM_SUBJECT.format(device=device))
    return Run(len(transitions), seconds, recorder.batches)


@dataclass(frozen=True, slots=True)
class Journal:
    """What the burst's rounds left in plantcore's events table."""

    effective: int
    events: int


def journal(database_url: str, alarms: Collection[UUID]) -> Journal:
    """The ``Raised``/``Cleared`` of ``alarms`` (the bursts'), and every event stored.

    The recorder's consumer takes all of ``plant.alarms.>``, so a transition
    another process publishes meanwhile is recorded too: only the bursts'
    alarms are counted against the transitions.
    """
    topics = [f"domain.alarm:Alarm.{name}" for name in EFFECTIVE_EVENTS]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE topic = ANY(%s) AND originator_id = ANY(%s)),"
                " count(*) FROM {}"
            ).format(sql.Identifier(EVENTS_TABLE)),
            (topics, list(alarms)),
        ).fetchone()
    assert row is not None
    return Journal(effective=int(row[0]), events=int(row[1]))


async def alarm_figures(config: BenchConfig) -> Figures:
    transitions = config.pick(quick=2_000, full=10_000)
    rounds = config.pick(quick=2, full=3)
    with scratch_database(config.database_url) as database_url:
        store_executor = StoreExecutor()
        app = await store_executor.call(open_application, database_url, TagCatalog(()))
        library = RawAlarms(env=event_store_env(database_url))
        nc = await nats.connect(config.nats_url)
        js = nc.jetstream()
        try:
            await ensure_alarm_stream(js)

            ours: set[UUID] = set()

            async def recorder() -> Run:
                burst = make_burst(unique_name("p5r"), transitions)
                ours.update(UUID(alarm) for alarm in burst.expected)
                return await record_through_recorder(
                    app, store_executor, js, burst.transitions, burst.devices
                )

            async def direct() -> Run:
                burst = make_burst(unique_name("p5d"), transitions)
                ours.update(UUID(alarm) for alarm in burst.expected)
                return await asyncio.to_thread(record_direct, app, burst.transitions)

            async def bare() -> Run:
                burst = make_burst(unique_name("p5l"), transitions)
                return await asyncio.to_thread(save_with_library, library, burst.transitions)

            runs = await interleaved(
                rounds, {"recorder": recorder, "direct": direct, "library": bare}
            )
            recorded = await asyncio.to_thread(journal, database_url, ours)
        finally:
            await nc.close()
            library.close()
            app.close()
            store_executor.shutdown()
    expected = 2 * rounds * transitions  # recorder and direct
    if recorded.effective != expected:
        raise RuntimeError(f"{recorded.effective} Raised/Cleared recorded, {expected} expected")
    return {
        "params": {
            "transitions_per_round": transitions,
            "alarms_per_round": transitions // 10,
            "rounds": rounds,
            "batch": BATCH,
        },
        "recorder": runs["recorder"].figures("transitions"),
        "direct": runs["direct"].figures("transitions"),
        "library": runs["library"].figures("events"),
        "none_lost": {"effective_events": recorded.effective, "expected": expected},
        "plantcore_events_per_transition": round(recorded.events / expected, 3),
        "ratio": ratio(runs["recorder"], runs["library"]),
        "ratio_direct": ratio(runs["direct"], runs["library"]),
    }


# -- the audit ----------------------------------------------------------------------------------


def read_with_library(log: audit_log.Log, app: PlantApplication) -> int:
    """The library's read of the whole notification log, in pages, nothing done with it."""
    up_to = app.recorder.max_notification_id() or 0
    read = audit_log.scan_notifications(app, up_to, LIBRARY_PAGE)
    if read != log.events:
        raise RuntimeError(f"read {read} notifications of {log.events}")
    return read


@contextlib.contextmanager
def plant_log(config: BenchConfig, events: int) -> Iterator[tuple[audit_log.Log, PlantApplication]]:
    """A chained log of ``events`` as the plant makes them, in a schema of its own."""
    template = audit_log.make_template()
    blocks = math.ceil(events / len(template.events))
    days = events / audit_log.EVENTS_PER_DAY
    with bench_schema(config.database_url) as schema:
        log = audit_log.Log(
            url=config.database_url,
            schema=schema,
            seed=schema,
            template=template,
            blocks=blocks,
            events=events,
            block_seconds=days * 86400 / blocks,
        )
        with audit_log.applications(config.database_url, schema) as (plant, _):
            install_append_only_guard(config.database_url, log.table)
            install_hash_chain(config.database_url, log.table)
            audit_log._store_template(config.database_url, schema, template)
            audit_log.load(log, chunk_events=events)
            audit_log.vacuum(log)
            yield log, plant


def _verify(log: audit_log.Log) -> int:
    report = verify_database(log.url, log.table)
    if not report.intact or report.rows != log.events:
        raise RuntimeError(f"the bench log does not verify: {report.first}")
    return report.rows


async def audit_figures(config: BenchConfig) -> Figures:
    events = config.pick(quick=30_000, full=300_000)
    rounds = config.pick(quick=1, full=3)
    with contextlib.ExitStack() as stack:
        log, plant = await asyncio.to_thread(stack.enter_context, plant_log(config, events))

        def timed(work: Any) -> Any:
            async def contender() -> Run:
                started = time.perf_counter()
                done = await asyncio.to_thread(work)
                return Run(done, time.perf_counter() - started, [])

            return contender

        verify = await interleaved(
            rounds,
            {
                "plantcore": timed(lambda: _verify(log)),
                "library": timed(lambda: read_with_library(log, plant)),
            },
        )
        read_models = await audit_log.read_model_figures(log, plant)
        with tempfile.TemporaryDirectory() as scratch:
            export = await asyncio.to_thread(audit_log.export_figures, log, Path(scratch))
    return {
        "params": {"events": events, "rounds": rounds, "library_page": LIBRARY_PAGE},
        "verify": {
            "plantcore": verify["plantcore"].figures("events"),
            "library": verify["library"].figures("events"),
            "ratio": ratio(verify["plantcore"], verify["library"]),
        },
        "read_models": read_models,
        "export": export,
    }


async def run(config: BenchConfig) -> Figures:
    load_before = os.getloadavg()[0]
    alarms = await alarm_figures(config)
    audit = await audit_figures(config)
    return {
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "alarm_burst": alarms,
        "audit": audit,
    }
