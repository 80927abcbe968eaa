"""Opens the event-sourced application on PostgreSQL, the one way every entry point does.

The runtime and the CLI both come through here, so whichever writes the first
event or snapshot, the events and snapshots tables are already append-only
(see :mod:`eventstore.guard`).

Who prepares the event store (creates its tables, installs the guard, the hash
chain and the write lock) depends on who connects. A role that may alter the
events table (its owner, a superuser) prepares it here, as it always did; so
does a role that may create it, before it exists. The runtime role may do
neither: for it, ``plantcore db init`` has prepared everything, and opening
checks that it did, and that nobody has switched a trigger off since (ADR 0023).
"""

from __future__ import annotations

import psycopg

from domain.application import CommandPolicy, PlantApplication
from domain.catalog import TagCatalog
from domain.operator import LoginPolicy
from eventstore.batch_reads import PostgresBatchReads
from eventstore.chain import TRIGGER_NAME as CHAIN_TRIGGER
from eventstore.chain import install_hash_chain
from eventstore.guard import GUARD_TRIGGERS, install_append_only_guard
from eventstore.postgres import event_store_env
from eventstore.roles import connection_rights
from eventstore.table_lock import RECORDER_TOPIC, install_table_lock, lock_function_name

EVENTS_TABLE = "plantapplication_events"
SNAPSHOTS_TABLE = "plantapplication_snapshots"
TRACKING_TABLE = "plantapplication_tracking"
# Never changed, only added to: the record, and the snapshots loaded in its place.
GUARDED_TABLES = (EVENTS_TABLE, SNAPSHOTS_TABLE)


class EventStoreNotPrepared(LookupError):
    """The connecting role may not prepare the event store, and nobody has."""


def open_application(
    database_url: str,
    catalog: TagCatalog,
    *,
    plant_id: str = "plant",
    command_policy: CommandPolicy | None = None,
    login_policy: LoginPolicy | None = None,
) -> PlantApplication:
    """The application with its append-only events table. Blocking: call it off the event loop.

    Raises :class:`EventStoreNotPrepared` if the connecting role may not prepare
    the store and it was not prepared (run ``plantcore db init``).
    """
    prepare = may_prepare(database_url)
    if not prepare:
        require_prepared(database_url)
    app = PlantApplication(
        catalog,
        env={
            **event_store_env(database_url),
            "CREATE_TABLE": "y" if prepare else "n",
            "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        },
        command_policy=command_policy,
        plant_id=plant_id,
        login_policy=login_policy,
        batch_reads=PostgresBatchReads(),
    )
    try:
        if prepare:
            for table in GUARDED_TABLES:
                install_append_only_guard(database_url, table)
            install_hash_chain(database_url, EVENTS_TABLE)
            install_table_lock(database_url, EVENTS_TABLE)
    except BaseException:
        app.close()
        raise
    return app


def may_prepare(database_url: str) -> bool:
    """Whether the connecting role may alter the events table, or create it where it is missing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rights = connection_rights(conn, EVENTS_TABLE)
    return rights.excess is not None or (rights.owns_table is None and rights.creates_tables)


def require_prepared(database_url: str) -> None:
    """Raise :class:`EventStoreNotPrepared` unless every part of the event store is in place."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        present = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname::text FROM pg_class c"
                " WHERE c.oid IN (to_regclass(%(events)s), to_regclass(%(snapshots)s),"
                "                 to_regclass(%(tracking)s))"
                " UNION ALL SELECT t.tgname::text || ' on ' || c.relname::text FROM pg_trigger t"
                " JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE t.tgrelid IN (to_regclass(%(events)s), to_regclass(%(snapshots)s))"
                " AND t.tgenabled <> 'D'"
                " UNION ALL SELECT p.proname::text FROM pg_proc p"
                " WHERE p.proname = %(lock)s AND p.pronamespace = current_schema()::regnamespace",
                {
                    "events": EVENTS_TABLE,
                    "snapshots": SNAPSHOTS_TABLE,
                    "tracking": TRACKING_TABLE,
                    "lock": lock_function_name(EVENTS_TABLE),
                },
            )
        }
        role = conn.info.user
    wanted = [
        EVENTS_TABLE,
        SNAPSHOTS_TABLE,
        TRACKING_TABLE,
        *(f"{trigger} on {table}" for table in GUARDED_TABLES for trigger in GUARD_TRIGGERS),
        f"{CHAIN_TRIGGER} on {EVENTS_TABLE}",
        lock_function_name(EVENTS_TABLE),
    ]
    missing = [name for name in wanted if name not in present]
    if missing:
        raise EventStoreNotPrepared(
            f"the event store is not prepared (missing or disabled: {', '.join(missing)}),"
            f" and {role} may not prepare it: run `plantcore db init` first"
        )


def open_reader(
    database_url: str, catalog: TagCatalog, *, plant_id: str = "plant"
) -> PlantApplication:
    """The application for reading the record only (``plantcore audit replay``, ``timeline``).

    It creates no table and installs nothing, so a role with ``SELECT`` alone
    can use it; anything it would write is refused by the database.
    """
    env = {**event_store_env(database_url), "CREATE_TABLE": "n"}
    return PlantApplication(catalog, env=env, plant_id=plant_id)
