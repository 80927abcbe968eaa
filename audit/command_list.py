"""Recent commands, newest first, read from the event store: ``commands`` in GraphQL.

No read model is kept for it: the commands are found by their ``Requested``
event in the events table (filtered in SQL by device and by the time of the
request, as :func:`audit.replay.select_events` filters), and each is
projected from its own events, fetched for a whole batch in one query, so
the status and outcome are exactly what the record says, never a copy that
lags behind.

A status is known only once a command is projected, so the status filter is
applied to each batch. That work is bounded: a page looks at no more than
``scan`` requests, and when it stops early it says where to go on
(:attr:`CommandListPage.next_before`), so a rare status over a long range
is found page by page rather than by one unbounded query.

Blocking, and PostgreSQL only (the recorder the plant runs on): call it off
the event loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, project_aggregate
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from audit.replay import EVENT_DOC, event_time
from domain.application import PlantApplication
from domain.command import CommandStatus, ControlCommand
from domain.time import utc

_REQUESTED = "ControlCommand.Requested"
# Requests looked at per query when a page asks for fewer (a status filter skips some).
_BATCH = 50
# A request stamped by another API process, whose clock may run a moment ahead.
_CLOCK_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CommandFilter:
    """Commands requested in ``[since, until)``, of ``device`` and in ``statuses`` if given."""

    since: datetime
    until: datetime
    device: str | None = None
    statuses: frozenset[CommandStatus] | None = None


@dataclass(frozen=True, slots=True)
class ListedCommand:
    position: int  # of its Requested event in the log: the page's order and cursor
    command: ControlCommand
    requested_at: datetime
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class CommandListPage:
    commands: list[ListedCommand]
    # Go on with the commands requested before this log position; None: nothing is left.
    next_before: int | None


def list_commands(
    app: Application[UUID],
    where: CommandFilter,
    *,
    before: int | None,
    first: int,
    scan: int,
) -> CommandListPage:
    """Up to ``first`` commands matching ``where`` requested before log position ``before``."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        raise TypeError("the command list reads the PostgreSQL event store")
    found: list[ListedCommand] = []
    scanned = 0
    while scanned < scan:
        size = min(max(first, _BATCH), scan - scanned)
        batch = _requests(recorder, where, before, size)
        histories = _histories(app, recorder, [originator for _, originator in batch])
        for position, originator in batch:
            scanned += 1
            before = position
            listed = _listed(position, histories[originator])
            if where.statuses is None or listed.command.status in where.statuses:
                found.append(listed)
                if len(found) == first:
                    return CommandListPage(found, position)
        if len(batch) < size:
            return CommandListPage(found, None)
    return CommandListPage(found, before)


def awaiting_approval(
    app: PlantApplication, at: datetime, *, first: int, scan: int
) -> list[ListedCommand]:
    """The commands waiting for a second person at ``at``, the first to lapse first.

    Only recent requests can be waiting: approval is asked for at the
    requester's confirmation, at most ``confirm_window`` after the request,
    and lapses ``approval_window`` later.
    """
    policy = app.command_policy
    where = CommandFilter(
        since=at - policy.confirm_window - policy.approval_window,
        until=at + _CLOCK_MARGIN,
        statuses=frozenset({CommandStatus.AWAITING_APPROVAL}),
    )
    page = list_commands(app, where, before=None, first=first, scan=scan)
    waiting = [listed for listed in page.commands if not listed.command.is_overdue(at)]
    return sorted(waiting, key=lambda listed: (listed.command.expires_at or at, listed.position))


def _listed(position: int, events: list[DomainEvent]) -> ListedCommand:
    command: ControlCommand | None = project_aggregate(None, events)
    assert command is not None  # chosen by its Requested event, so a command
    return ListedCommand(
        position=position,
        command=command,
        requested_at=event_time(events[0]),
        changed_at=event_time(events[-1]),
    )


def _requests(
    recorder: PostgresApplicationRecorder, where: CommandFilter, before: int | None, limit: int
) -> list[tuple[int, UUID]]:
    """The log position and id of each matching request, newest first."""
    # Datetimes are stored by the library's JSON transcoder as {"_type_": …, "_data_": iso}.
    statement = sql.SQL(
        "SELECT e.notification_id, e.originator_id FROM {schema}.{table} AS e {doc}"
        " WHERE split_part(e.topic, ':', 2) = %s"
        " AND (%s::bigint IS NULL OR e.notification_id < %s)"
        " AND (%s::text IS NULL OR j.doc ->> 'device' = %s)"
        " AND (j.doc -> 'at' ->> '_data_')::timestamptz >= %s"
        " AND (j.doc -> 'at' ->> '_data_')::timestamptz < %s"
        " ORDER BY e.notification_id DESC LIMIT %s"
    ).format(
        schema=sql.Identifier(recorder.datastore.schema),
        table=sql.Identifier(recorder.events_table_name),
        doc=EVENT_DOC,
    )
    params: list[Any] = [_REQUESTED, before, before, where.device, where.device]
    params += [utc(where.since), utc(where.until), limit]
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, params)
        return [(row["notification_id"], _uuid(row["originator_id"])) for row in curs.fetchall()]


def _histories(
    app: Application[UUID], recorder: PostgresApplicationRecorder, ids: Collection[UUID]
) -> dict[UUID, list[DomainEvent]]:
    """Every event of each command, oldest first, in one query."""
    if not ids:
        return {}
    statement = sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(
        schema=sql.Identifier(recorder.datastore.schema),
        table=sql.Identifier(recorder.events_table_name),
    )
    histories: dict[UUID, list[DomainEvent]] = defaultdict(list)
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, [list(ids)])
        for row in curs.fetchall():
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            event = app.mapper.to_domain_event(stored)
            assert isinstance(event, DomainEvent)  # a command's events are aggregate events
            histories[_uuid(row["originator_id"])].append(event)
    return histories


def _uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
