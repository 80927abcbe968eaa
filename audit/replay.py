"""Reading the event log back: any aggregate as it stood at any time, and events by filter.

:func:`aggregate_at` rebuilds one aggregate from its own events, through the
last one whose ``at`` (the time the domain stamped on it; the library's
``timestamp`` for an event without one) is at or before the time asked, or
through a given version. The events come through the application's mapper,
so old versions are upcast exactly as the running plant upcasts them
(``Operator.Registered`` v1, ``ControlCommand.Confirmed`` v1), and the
aggregate is projected from those events alone, never from a snapshot: a
snapshot is not part of the hash chain, and the record is what the events say
(``plantcore audit verify`` checks the snapshots against them).

The answer is plain JSON: the aggregate's public state (its properties and
public attributes, never the underscored internals), its version and type,
and the last event applied. :func:`select_events` lists stored events by
aggregate, actor, event type and time, in log order, for ``auditEvents``.

Credentials never leave this module: every value under a name of
:data:`SECRET_FIELDS` (password hashes, sealed or clear TOTP secrets, refresh
token hashes), in a state or in an event, reads :data:`REDACTED`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Any, TypedDict, cast
from uuid import UUID

from eventsourcing.application import Application, project_aggregate
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from domain.time import utc

REDACTED = "[redacted]"
# Names whose values are credentials, wherever they appear (states, event payloads).
SECRET_FIELDS = frozenset(
    {
        "password_hash",
        "totp_secret_sealed",
        "totp_secret",  # Operator.Registered v1 held the secret in clear
        "refresh_hash",
        "used_hashes",
        # Enrolment tokens: the hash of each part (events), the hashes outstanding (state).
        "token_hash",
        "token_hashes",
        "presented_hash",
        "new_hash",
    }
)
# The library's envelope: the answer carries these apart, or not at all.
_ENVELOPE = frozenset({"originator_id", "originator_version", "originator_topic"})
# The library's own properties of every aggregate: answered apart (id, version, times).
_AGGREGATE_BOOKKEEPING = frozenset(
    name for name in dir(Aggregate) if isinstance(getattr(Aggregate, name, None), property)
)

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class RecordedEvent(TypedDict):
    """One stored event, as JSON: its name, version, times, actor and fields."""

    type: str
    version: int
    at: str
    recorded_at: str
    actor: str
    payload: dict[str, JsonValue]


class AggregateState(TypedDict):
    """An aggregate as it stood after ``last_event``, as JSON."""

    aggregate_id: str
    aggregate_type: str
    as_of: str | None  # the time asked, None for now
    version: int
    created_on: str
    modified_on: str
    state: dict[str, JsonValue]
    last_event: RecordedEvent


class AggregateNotFound(LookupError):
    """No event was ever recorded for this id."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(f"no aggregate {aggregate_id} in the event log")
        self.aggregate_id = aggregate_id


class NotYetRecorded(LookupError):
    """The aggregate exists, but its first event is later than the time (or version) asked."""

    def __init__(self, aggregate_id: UUID, at: datetime | None, version: int | None) -> None:
        when = f"at {at.isoformat()}" if at is not None else f"at version {version}"
        super().__init__(f"aggregate {aggregate_id} did not exist yet {when}")
        self.aggregate_id = aggregate_id
        self.at = at
        self.version = version


# -- JSON --------------------------------------------------------------------------------------


def jsonable(value: object) -> JsonValue:  # noqa: PLR0911 - one flat table of types
    """``value`` as plain JSON, with every :data:`SECRET_FIELDS` entry redacted."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): REDACTED if k in SECRET_FIELDS else jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, set | frozenset):
        return sorted((jsonable(item) for item in value), key=repr)
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return REDACTED  # opaque bytes are never shown: they may be key material
    return repr(value)


def _object(value: Mapping[str, Any]) -> dict[str, JsonValue]:
    return cast(dict[str, JsonValue], jsonable(value))


# -- events ------------------------------------------------------------------------------------


def event_time(event: object) -> datetime:
    """When the event happened: its ``at``, or the library's ``timestamp`` without one."""
    at = getattr(event, "at", None)
    if isinstance(at, datetime):
        return at
    timestamp: datetime = event.timestamp  # type: ignore[attr-defined]
    return timestamp


def event_payload(event: object) -> dict[str, JsonValue]:
    """The event's fields (``actor``, ``at`` and ``timestamp`` included), redacted."""
    return _object({k: v for k, v in vars(event).items() if k not in _ENVELOPE})


def recorded_event(event: DomainEvent) -> RecordedEvent:
    return RecordedEvent(
        type=type(event).__name__,
        version=event.originator_version,
        at=event_time(event).isoformat(),
        recorded_at=event.timestamp.isoformat(),
        actor=str(getattr(event, "actor", "")),
        payload=event_payload(event),
    )


# -- an aggregate at a time ----------------------------------------------------------------------


def public_state(aggregate: object) -> dict[str, JsonValue]:
    """The aggregate's properties and public attributes, without the library's bookkeeping."""
    cls = type(aggregate)
    names = {
        name
        for name in dir(cls)
        if not name.startswith("_")
        and name not in _AGGREGATE_BOOKKEEPING
        and isinstance(getattr(cls, name, None), property)
    }
    names |= {name for name in vars(aggregate) if not name.startswith("_")}
    return _object({name: getattr(aggregate, name) for name in sorted(names)})


def aggregate_at(
    app: Application[UUID],
    aggregate_id: UUID,
    at: datetime | None = None,
    version: int | None = None,
) -> AggregateState:
    """The aggregate as it stood at ``at`` and/or ``version`` (the earlier of both), or now.

    ``at`` must be timezone-aware. Raises :class:`AggregateNotFound` for an id
    with no events, :class:`NotYetRecorded` when it did not exist yet then.
    Blocking: call it off the event loop.
    """
    if version is not None and version < 1:
        raise ValueError(f"versions start at 1, got {version}")
    cut_at = utc(at) if at is not None else None
    # Every stored event of an aggregate is an aggregate event, hence a DomainEvent.
    events = cast(list[DomainEvent], list(app.events.get(aggregate_id)))
    if not events:
        raise AggregateNotFound(aggregate_id)
    applied = [
        event
        for event in events
        if (version is None or event.originator_version <= version)
        and (cut_at is None or event_time(event) <= cut_at)
    ]
    if not applied:
        raise NotYetRecorded(aggregate_id, cut_at, version)
    # Times need not grow with versions (a source's time, a shelve ending at its ``until``):
    # the state is the one after the last event at or before the time, with all before it.
    last = max(applied, key=lambda event: event.originator_version)
    through = [event for event in events if event.originator_version <= last.originator_version]
    aggregate: Aggregate | None = project_aggregate(None, through)
    assert aggregate is not None  # ``through`` holds at least ``last``
    return AggregateState(
        aggregate_id=str(aggregate_id),
        aggregate_type=type(aggregate).__name__,
        as_of=cut_at.isoformat() if cut_at is not None else None,
        version=aggregate.version,
        created_on=aggregate.created_on.isoformat(),
        modified_on=aggregate.modified_on.isoformat(),
        state=public_state(aggregate),
        last_event=recorded_event(last),
    )


# -- events by filter ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events to list; ``None`` leaves a criterion out.

    ``event_type`` is an event class name (``Confirmed``) or qualified by its
    aggregate (``ControlCommand.Confirmed``); ``since``/``until`` bound the
    event's ``at`` as ``[since, until)``.
    """

    aggregate_id: UUID | None = None
    actor: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored event with its global position in the log, its payload redacted."""

    position: int
    aggregate_id: UUID
    aggregate_type: str
    version: int
    event_type: str
    at: datetime
    actor: str
    payload: dict[str, JsonValue]


# Each event's state as jsonb, for filters on its fields. JSON may escape a NUL
# (``\u0000``: a refused request records the text it was sent), which jsonb refuses;
# read as U+FFFD, it still matches no name the plant knows, and the event stays listed.
EVENT_DOC = sql.SQL(
    "CROSS JOIN LATERAL (SELECT replace(convert_from(e.state, 'UTF8'), '\\u0000', '\\ufffd')"
    "::jsonb AS doc) AS j"
)


def select_events(
    app: Application[UUID], where: EventFilter, *, after: int = 0, limit: int = 100
) -> list[AuditRecord]:
    """Up to ``limit`` events matching ``where`` after log position ``after``, in log order.

    On PostgreSQL the filters run in SQL on the events table (the JSON of each
    event's state); any other recorder (the in-memory one of unit tests) is
    read in pages and filtered here. Blocking: call it off the event loop.
    """
    recorder = app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        rows = _select_postgres(recorder, where, after, limit)
    else:
        rows = _select_scanning(app, where, after, limit)
    return [_record(app, stored, position) for position, stored in rows]


def _select_postgres(
    recorder: PostgresApplicationRecorder, where: EventFilter, after: int, limit: int
) -> list[tuple[int, StoredEvent]]:
    conditions: list[sql.Composable] = [sql.SQL("e.notification_id > %s")]
    params: list[object] = [after]
    if where.aggregate_id is not None:
        conditions.append(sql.SQL("e.originator_id = %s"))
        params.append(where.aggregate_id)
    if where.event_type is not None:
        if "." in where.event_type:  # Aggregate.Event
            conditions.append(sql.SQL("split_part(e.topic, ':', 2) = %s"))
            params.append(where.event_type)
        else:
            conditions.append(sql.SQL("right(e.topic, length(%s) + 1) = '.' || %s"))
            params += [where.event_type, where.event_type]
    if where.actor is not None:
        conditions.append(sql.SQL("j.doc ->> 'actor' = %s"))
        params.append(where.actor)
    # Datetimes are stored by the library's JSON transcoder as {"_type_": …, "_data_": iso}.
    at = sql.SQL(
        "coalesce(j.doc -> 'at' ->> '_data_', j.doc -> 'timestamp' ->> '_data_')::timestamptz"
    )
    if where.since is not None:
        conditions.append(sql.SQL("{} >= %s").format(at))
        params.append(utc(where.since))
    if where.until is not None:
        conditions.append(sql.SQL("{} < %s").format(at))
        params.append(utc(where.until))
    params.append(limit)
    needs_json = where.actor is not None or where.since is not None or where.until is not None
    statement = sql.SQL(
        "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
        " FROM {schema}.{table} AS e{lateral} WHERE {conditions}"
        " ORDER BY e.notification_id LIMIT %s"
    ).format(
        schema=sql.Identifier(recorder.datastore.schema),
        table=sql.Identifier(recorder.events_table_name),
        lateral=sql.SQL(" {}").format(EVENT_DOC) if needs_json else sql.SQL(""),
        conditions=sql.SQL(" AND ").join(conditions),
    )
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, params)
        return [
            (
                row["notification_id"],
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                ),
            )
            for row in curs.fetchall()
        ]


def _select_scanning(
    app: Application[UUID], where: EventFilter, after: int, limit: int
) -> list[tuple[int, StoredEvent]]:
    found: list[tuple[int, StoredEvent]] = []
    page = max(limit, 500)
    while len(found) < limit:
        batch = app.recorder.select_notifications(after, page, inclusive_of_start=False)
        for notification in batch:
            if _matches(app, notification, where):
                found.append((notification.id, notification))
        if len(batch) < page:
            break
        after = batch[-1].id
    return found[:limit]


def _matches(app: Application[UUID], stored: StoredEvent, where: EventFilter) -> bool:
    if where.aggregate_id is not None and str(stored.originator_id) != str(where.aggregate_id):
        return False
    if where.event_type is not None and not _is_type(stored.topic, where.event_type):
        return False
    event = app.mapper.to_domain_event(stored)
    if where.actor is not None and getattr(event, "actor", None) != where.actor:
        return False
    at = event_time(event)
    if where.since is not None and at < utc(where.since):
        return False
    return where.until is None or at < utc(where.until)


def _is_type(topic: str, event_type: str) -> bool:
    qualname = topic.partition(":")[2]
    return qualname == event_type if "." in event_type else qualname.endswith("." + event_type)


def _record(app: Application[UUID], stored: StoredEvent, position: int) -> AuditRecord:
    qualname = stored.topic.partition(":")[2]
    aggregate_type, _, event_type = qualname.rpartition(".")
    event = app.mapper.to_domain_event(stored)
    originator = stored.originator_id
    return AuditRecord(
        position=position,
        aggregate_id=originator if isinstance(originator, UUID) else UUID(str(originator)),
        aggregate_type=aggregate_type,
        version=stored.originator_version,
        event_type=event_type,
        at=event_time(event),
        actor=str(getattr(event, "actor", "")),
        payload=event_payload(event),
    )


def record_json(record: AuditRecord) -> dict[str, JsonValue]:
    """An :class:`AuditRecord` as JSON (for the command line)."""
    return _object(dataclasses.asdict(record))
