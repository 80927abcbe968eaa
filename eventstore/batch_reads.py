"""Many aggregates' stored rows in one query, for a batched load (see domain.checked_snapshots).

The library reads one aggregate's rows at a time: loading the 256 alarms of a
burst's batch was 512 queries, each with its round trip and its pool check.
:class:`PostgresBatchReads` reads the newest snapshots of them all in one query
(a lateral join on the primary key, so each aggregate costs one index probe)
and their events after those in another.

A recorder that is not PostgreSQL's is read one aggregate at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from psycopg.sql import SQL, Identifier

from domain.checked_snapshots import OneByOne

_NEWEST = SQL("""
SELECT e.originator_id, e.originator_version, e.topic, e.state
  FROM unnest(%s::uuid[]) AS wanted(id)
  CROSS JOIN LATERAL (
      SELECT * FROM {table} AS s WHERE s.originator_id = wanted.id
       ORDER BY s.originator_version DESC LIMIT %s
  ) AS e
 ORDER BY e.originator_id, e.originator_version DESC
""")

_AFTER = SQL("""
SELECT e.originator_id, e.originator_version, e.topic, e.state
  FROM unnest(%s::uuid[], %s::bigint[]) AS wanted(id, after)
  JOIN {table} AS e ON e.originator_id = wanted.id AND e.originator_version > wanted.after
 ORDER BY e.originator_id, e.originator_version
""")


class PostgresBatchReads:
    """:class:`~domain.checked_snapshots.BatchReads` with one query per read."""

    def __init__(self) -> None:
        self._fallback = OneByOne()

    def newest(
        self, recorder: AggregateRecorder, ids: Sequence[UUID], limit: int
    ) -> dict[UUID, list[StoredEvent]]:
        if not isinstance(recorder, PostgresAggregateRecorder):
            return self._fallback.newest(recorder, ids, limit)
        return _select(recorder, _NEWEST, [list(ids), limit])

    def after(
        self, recorder: AggregateRecorder, versions: Mapping[UUID, int | None]
    ) -> dict[UUID, list[StoredEvent]]:
        if not isinstance(recorder, PostgresAggregateRecorder):
            return self._fallback.after(recorder, versions)
        # Versions start at 1: "after 0" is every row.
        return _select(recorder, _AFTER, [list(versions), [v or 0 for v in versions.values()]])


def _select(
    recorder: PostgresAggregateRecorder, statement: SQL, params: list[Any]
) -> dict[UUID, list[StoredEvent]]:
    query = statement.format(
        table=Identifier(recorder.datastore.schema, recorder.events_table_name)
    )
    rows: dict[UUID, list[StoredEvent]] = {}
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(query, params, prepare=True)
        for row in cursor.fetchall():
            rows.setdefault(row["originator_id"], []).append(
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
    return rows
