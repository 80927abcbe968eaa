"""``plantcore db init``: the plant's database, made ready for roles of least privilege.

Run once per database by an administrator, with a superuser's URL (it creates
roles and hands objects to the owner), and again after each upgrade and each
change of the history's retention (``PLANTCORE_HISTORY_*_DAYS``): every step is
idempotent, and on a database from before the roles it takes the
objects over from whoever made them. In order:

1. the owner, runtime, auditor and analyst roles (:mod:`eventstore.roles`);
2. every object plantcore uses, created if missing: the event store (events,
   snapshots and tracking tables, the append-only guard, the hash chain, the
   write lock), the history table with its partition functions, the days each
   history table keeps (from the settings) and the next days' partitions, the
   alarm views; then the analysts' SQL views over them
   (:mod:`projections.history_views`), made again each time;
3. all of them handed to the owner, partitions included, and each login role's
   privileges set to exactly :data:`RUNTIME_TABLES` and :data:`AUDITOR_TABLES`
   say, the analyst's to SELECT on the views alone (ADR 0023).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from domain.catalog import TagCatalog
from eventstore.roles import (
    Grant,
    Kind,
    PlantRoles,
    ensure_roles,
    give_to_owner,
    grant_exactly,
    role_url,
)
from eventstore.table_lock import lock_function_name
from plantcore.open_application import (
    EVENTS_TABLE,
    SNAPSHOTS_TABLE,
    TRACKING_TABLE,
    open_application,
)
from projections.alarm_views import ensure_alarm_schema
from projections.history_schema import (
    ADD_PARTITION_FUNCTION,
    DEFAULT_RETENTION,
    DROP_PARTITION_FUNCTION,
    DROPS_TABLE,
    RETENTION_TABLE,
    RetentionPolicy,
    ensure_history_schema,
    hours_table,
    minutes_pending_table,
    minutes_table,
    rollup_mark_table,
)
from projections.history_views import ensure_analyst_views

HISTORY_TABLE = "samples"
# The partitioned history tables: the raw samples and their rollups.
HISTORY_TABLES = [HISTORY_TABLE, minutes_table(HISTORY_TABLE), hours_table(HISTORY_TABLE)]

# Every table plantcore makes, with what the runtime may do to it: nothing else.
RUNTIME_TABLES: Mapping[str, tuple[str, ...]] = {
    EVENTS_TABLE: ("SELECT", "INSERT"),
    SNAPSHOTS_TABLE: ("SELECT", "INSERT"),
    # A follower's position moves by INSERT ... ON CONFLICT DO UPDATE.
    TRACKING_TABLE: ("SELECT", "INSERT", "UPDATE"),
    # Rows reach a day's partition through the parent: the partitions need no grant.
    HISTORY_TABLE: ("SELECT", "INSERT"),
    # Its rollups, upserted by the refresher (ADR 0049).
    minutes_table(HISTORY_TABLE): ("SELECT", "INSERT", "UPDATE"),
    hours_table(HISTORY_TABLE): ("SELECT", "INSERT", "UPDATE"),
    # The minutes that got a late sample: noted by a write, taken by a refresh.
    minutes_pending_table(HISTORY_TABLE): ("SELECT", "INSERT", "UPDATE", "DELETE"),
    # The rollups' one row of progress: moved by the refresher, made by the owner.
    rollup_mark_table(HISTORY_TABLE): ("SELECT", "UPDATE"),
    # The days each history table keeps, which the drop function obeys: the owner's to set.
    RETENTION_TABLE: ("SELECT",),
    # The drop function's own note of each drop: the runtime can neither add nor erase one.
    DROPS_TABLE: (),
    "alarm_current": ("SELECT", "INSERT", "UPDATE"),
    "alarm_journal": ("SELECT", "INSERT"),
}
AUDITOR_TABLES: Mapping[str, tuple[str, ...]] = dict.fromkeys(RUNTIME_TABLES, ("SELECT",))

# The library's composite type of a stored event (its originator ids are uuids), and
# the insert function it always creates on that type (unused: db functions are off).
_STORED_EVENT_TYPE = "stored_event_uuid"
_LIBRARY_FUNCTION = "es_insert_events_uuid"


class AdminRequired(PermissionError):
    """``db init`` was given a URL of a role that is not a superuser."""


@dataclass(frozen=True)
class InitialisedDatabase:
    roles: PlantRoles
    runtime_url: str
    auditor_url: str
    analyst_url: str


async def initialise_database(
    admin_url: str,
    roles: PlantRoles,
    passwords: Mapping[str, str] | None = None,
    *,
    retention: RetentionPolicy = DEFAULT_RETENTION,
) -> InitialisedDatabase:
    """Create or repair the roles, the objects and the privileges of ``admin_url``'s database.

    ``passwords`` maps a login role to its password (set each time it is given;
    left alone otherwise). ``retention`` is how long the history keeps each of
    its tables, set each time: the runtime role can drop nothing younger (ADR 0039).
    Returns the URLs the runtime and the auditor connect with: ``admin_url``'s
    server and database, as those roles.
    """
    passwords = dict(passwords or {})
    await asyncio.to_thread(_prepare_roles, admin_url, roles, passwords)
    await asyncio.to_thread(_create_event_store, admin_url)
    pool = await asyncpg.create_pool(admin_url, min_size=1, max_size=1)
    try:
        await ensure_history_schema(pool, table=HISTORY_TABLE, retention=retention)
        await ensure_alarm_schema(pool)
        views = await ensure_analyst_views(pool, events_table=EVENTS_TABLE)
    finally:
        await pool.close()
    await asyncio.to_thread(_hand_over, admin_url, roles, views)
    return InitialisedDatabase(
        roles,
        runtime_url=role_url(admin_url, roles.runtime, passwords.get(roles.runtime)),
        auditor_url=role_url(admin_url, roles.auditor, passwords.get(roles.auditor)),
        analyst_url=role_url(admin_url, roles.analyst, passwords.get(roles.analyst)),
    )


def _prepare_roles(admin_url: str, roles: PlantRoles, passwords: dict[str, str]) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if row is None or not row[0]:
            raise AdminRequired(
                f"{conn.info.user} is not a superuser: `plantcore db init` creates roles and"
                " hands every table to the owner role, so it needs a superuser's URL (--admin-url)"
            )
        with conn.transaction():
            ensure_roles(conn, roles, passwords)


def _create_event_store(admin_url: str) -> None:
    app = open_application(admin_url, TagCatalog([]))
    try:
        app.factory.tracking_recorder()  # creates the followers' positions table
    finally:
        app.close()


def _hand_over(admin_url: str, roles: PlantRoles, views: list[str]) -> None:
    with psycopg.connect(admin_url) as conn:  # one transaction: all of it or none
        partitions = [
            name
            for (name,) in conn.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits"
                " WHERE inhparent = ANY(%s::regclass[]) ORDER BY 1",
                (HISTORY_TABLES,),
            )
        ]
        functions = [
            name
            for (name,) in conn.execute(
                "SELECT oid::regprocedure::text FROM pg_proc"
                " WHERE pronamespace = current_schema()::regnamespace"
                " AND (proname LIKE 'plantcore\\_%%' OR proname = %s) ORDER BY 1",
                (_LIBRARY_FUNCTION,),
            )
        ]
        sequence = conn.execute(
            "SELECT pg_get_serial_sequence(%s, 'notification_id')", (EVENTS_TABLE,)
        ).fetchone()
        assert sequence is not None
        assert sequence[0] is not None
        # Public's right to create in the schema (granted before PostgreSQL 15) is taken
        # back: the login roles create nothing but temporary tables. The owner creates
        # each new day's history partition.
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(
                sql.Identifier(roles.owner)
            )
        )
        give_to_owner(
            conn,
            roles.owner,
            [
                *((Kind.TABLE, _quoted(conn, table)) for table in RUNTIME_TABLES),
                *((Kind.TABLE, partition) for partition in partitions),
                *((Kind.TABLE, _quoted(conn, view)) for view in views),
                *((Kind.FUNCTION, function) for function in functions),
                (Kind.TYPE, _quoted(conn, _STORED_EVENT_TYPE)),
            ],
        )
        grants = _grants(conn, roles, partitions, sequence[0], views)
        grant_exactly(conn, grants, roles.logins)


def _grants(
    conn: psycopg.Connection[TupleRow],
    roles: PlantRoles,
    partitions: list[str],
    sequence: str,
    views: list[str],
) -> list[Grant]:
    database = _quoted(conn, conn.info.dbname)
    grants = [
        Grant(Kind.DATABASE, database, roles.runtime, ("CONNECT", "TEMPORARY")),
        Grant(Kind.DATABASE, database, roles.auditor, ("CONNECT",)),
        Grant(Kind.DATABASE, database, roles.analyst, ("CONNECT",)),
        Grant(Kind.SCHEMA, "public", roles.runtime, ("USAGE",)),
        Grant(Kind.SCHEMA, "public", roles.auditor, ("USAGE",)),
        Grant(Kind.SCHEMA, "public", roles.analyst, ("USAGE",)),
        # The positions handed out when an event is inserted (and by the chain's trigger).
        Grant(Kind.SEQUENCE, sequence, roles.runtime, ("USAGE",)),
        Grant(Kind.SEQUENCE, sequence, roles.auditor, ()),
        # Runs as the owner, to take the lock the library takes before it inserts.
        Grant(Kind.FUNCTION, f"{lock_function_name(EVENTS_TABLE)}()", roles.runtime, ("EXECUTE",)),
    ]
    if partitions:  # natively partitioned: a new partition comes from this function
        grants.append(Grant(Kind.FUNCTION, ADD_PARTITION_FUNCTION, roles.runtime, ("EXECUTE",)))
        # The retention policy's drops of whole dated partitions past the days the owner
        # set, each noted by the function and recorded as an event.
        grants.append(Grant(Kind.FUNCTION, DROP_PARTITION_FUNCTION, roles.runtime, ("EXECUTE",)))
    for role, tables in ((roles.runtime, RUNTIME_TABLES), (roles.auditor, AUDITOR_TABLES)):
        grants += [
            Grant(Kind.TABLE, _quoted(conn, table), role, rights)
            for table, rights in tables.items()
        ]
        # Whatever a role was granted on a partition directly is taken back.
        grants += [Grant(Kind.TABLE, partition, role, ()) for partition in partitions]
    # The analyst reads the views and nothing else: each runs with its owner's rights.
    for view in views:
        grants += [
            Grant(
                Kind.TABLE, _quoted(conn, view), role, ("SELECT",) if role == roles.analyst else ()
            )
            for role in roles.logins
        ]
    return grants


def _quoted(conn: psycopg.Connection[TupleRow], name: str) -> str:
    return sql.Identifier(name).as_string(conn)
