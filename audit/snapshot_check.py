"""Every stored snapshot checked against the events it stands for (``plantcore audit verify``).

A snapshot is not part of the hash chain: it is the state of an aggregate at a
version, which the plant core loads instead of replaying the events before it.
The chain cannot tell whether that state is the one the events make (a forged
snapshot is inserted through the same trigger as an honest one would be), so
this replays each snapshotted aggregate from its first event and compares
every snapshot with the aggregate at the snapshot's version, with the same
comparison the plant core makes before it loads from one
(:func:`domain.checked_snapshots.snapshot_disagreement`).

Each snapshot that disagrees is a ``snapshot_mismatch`` finding at the
position of the event it claims to stand at (or, when no such event exists,
the aggregate's last event, or the end of the log).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import Mapper, StoredEvent
from psycopg import sql
from psycopg.rows import TupleRow

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.checked_snapshots import mutated, snapshot_disagreement


@dataclass(frozen=True)
class SnapshotSource:
    """Where the snapshots are, and the mapper their events were stored with."""

    table: str
    mapper: Mapper[UUID]


@dataclass(frozen=True)
class SnapshotMismatch:
    """A snapshot that disagrees with its events, placed at a position of the log."""

    position: int
    explanation: str


@dataclass(frozen=True)
class SnapshotReport:
    checked: int
    mismatches: tuple[SnapshotMismatch, ...]


def plant_mapper() -> Mapper[UUID]:
    """The mapper the plant core stores with (its transcodings and upcasts), without a database."""
    return PlantApplication(TagCatalog([])).mapper


def snapshots_table_of(events_table: str) -> str:
    """The library names an application's tables ``<name>_events`` and ``<name>_snapshots``."""
    return events_table.removesuffix("_events") + "_snapshots"


def check_snapshots(
    conn: psycopg.Connection[TupleRow],
    events_table: str,
    source: SnapshotSource,
    *,
    log_end: int | None,
) -> SnapshotReport:
    """Compare every snapshot in ``source.table`` with the events of ``events_table``.

    Reads in ``conn``'s transaction (the verifier's snapshot of the database);
    ``log_end`` is the last position of the log, the place of a finding about
    an aggregate without events. A missing snapshots table holds no snapshot.
    """
    snapshots, events = _table(source.table), _table(events_table)
    if conn.execute("SELECT to_regclass(%s)", (source.table,)).fetchone() == (None,):
        return SnapshotReport(0, ())
    aggregates = conn.execute(
        sql.SQL(
            "SELECT originator_id, max(originator_version) FROM {} GROUP BY 1 ORDER BY 1"
        ).format(snapshots)
    ).fetchall()
    checked = 0
    mismatches: list[SnapshotMismatch] = []
    for aggregate_id, last_version in aggregates:
        stored = [
            StoredEvent(aggregate_id, version, topic, bytes(state))
            for version, topic, state in conn.execute(
                sql.SQL(
                    "SELECT originator_version, topic, state FROM {}"
                    " WHERE originator_id = %s ORDER BY originator_version"
                ).format(snapshots),
                (aggregate_id,),
            )
        ]
        # Streamed: a long-lived alarm's years of events are never held at once.
        with conn.cursor(name="plantcore_snapshot_events") as rows:
            rows.itersize = 2000
            rows.execute(
                sql.SQL(
                    "SELECT notification_id, originator_version, topic, state FROM {}"
                    " WHERE originator_id = %s AND originator_version <= %s"
                    " ORDER BY originator_version"
                ).format(events),
                (aggregate_id, last_version),
            )
            mismatches += _check_aggregate(aggregate_id, stored, rows, source.mapper, log_end or 0)
        checked += len(stored)
    return SnapshotReport(checked, tuple(mismatches))


def _check_aggregate(
    aggregate_id: UUID,
    snapshots: Sequence[StoredEvent],
    rows: Iterable[tuple[Any, ...]],
    mapper: Mapper[UUID],
    log_end: int,
) -> list[SnapshotMismatch]:
    """One pass over an aggregate's events, judging each snapshot (oldest first) at its version."""
    pending = deque(snapshots)
    mismatches: list[SnapshotMismatch] = []
    aggregate: BaseAggregate[UUID] | None = None
    last_position = log_end

    def judge_through(version: int, position: int) -> None:
        while pending and pending[0].originator_version <= version:
            snapshot = pending.popleft()
            reason = snapshot_disagreement(snapshot, aggregate, mapper)
            if reason is not None:
                mismatches.append(_mismatch(snapshot, aggregate, position, reason))

    for position, version, topic, state in rows:
        judge_through(version - 1, last_position)  # a version the events skipped
        stored = StoredEvent(aggregate_id, version, topic, bytes(state))
        try:
            aggregate = mutated(aggregate, [mapper.to_domain_event(stored)])
        except Exception as exc:  # the report says so: a verifier does not stop at a bad row
            reason = f"its events cannot be replayed from position {position}: {exc}"[:300]
            return [*mismatches, *(_mismatch(left, None, position, reason) for left in pending)]
        last_position = position
        judge_through(version, position)
    judge_through(2**63 - 1, last_position)  # past its last event
    return mismatches


def _mismatch(
    snapshot: StoredEvent, aggregate: BaseAggregate[UUID] | None, position: int, reason: str
) -> SnapshotMismatch:
    kind = "aggregate" if aggregate is None else type(aggregate).__name__
    return SnapshotMismatch(
        position,
        f"the snapshot of {kind} {snapshot.originator_id} at version"
        f" {snapshot.originator_version} disagrees with its events ({reason}):"
        " the plant core does not load from it",
    )


def _table(name: str) -> sql.Identifier:
    *schema, table = name.split(".")
    return sql.Identifier(*schema, table)
