"""The events table's write lock, for a writer that may only INSERT and SELECT.

The eventsourcing library serialises writers with ``LOCK TABLE ... IN EXCLUSIVE
MODE``, so that positions commit in the order they are handed out and a
follower never passes a position that is filled in later. PostgreSQL grants
that lock only to a role with UPDATE, DELETE or TRUNCATE on the table, which the
runtime role must not have (see :mod:`eventstore.roles`). So the lock is taken
by a function that runs with its owner's rights (``SECURITY DEFINER``) and does
nothing else, and :class:`LockingApplicationRecorder` calls it instead. PUBLIC
may not execute it; ``plantcore db init`` grants it to the runtime role.

A writer through the library's own recorder (a superuser's script, a test)
takes the very same lock, so both kinds of writer can share the table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import sql

RECORDER_TOPIC = "eventstore.table_lock:LockingApplicationRecorder"

_MAX_IDENTIFIER = 63

# Serialises concurrent installs: two ``CREATE OR REPLACE FUNCTION`` racing on the
# same function fail with "tuple concurrently updated".
_INSTALL_LOCK_KEY = 0x706C616E74_03  # "plant" + table lock

# The search path is pinned because the function runs as its owner: a caller's
# objects must never be found in its place (the table is named with its schema).
_LOCK_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    LOCK TABLE {table} IN EXCLUSIVE MODE;
END
$$
"""

_REVOKE = "REVOKE ALL ON FUNCTION {function}() FROM PUBLIC"


def lock_function_name(table: str) -> str:
    """The lock function's name for ``table`` (unqualified), in the table's schema."""
    name = f"plantcore_lock_{table.rsplit('.', maxsplit=1)[-1]}"
    if len(name.encode()) > _MAX_IDENTIFIER:
        raise ValueError(f"table name too long for its lock function: {table!r}")
    return name


def install_table_lock(conninfo: str, table: str) -> None:
    """Create (or replace) the lock function of ``table``; idempotent.

    The connecting role must own ``table`` (or be a superuser); the function is
    owned by that role, and the lock it takes is held until the caller's
    transaction ends.
    """
    with psycopg.connect(conninfo, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK_KEY,))
        found = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
            (table,),
        ).fetchone()
        assert found is not None  # ::regclass raised for a missing table
        schema, name = found
        names = {
            "table": sql.Identifier(schema, name),
            "function": sql.Identifier(schema, lock_function_name(name)),
        }
        for statement in (_LOCK_FUNCTION, _REVOKE):
            conn.execute(sql.SQL(statement).format(**names))


class LockingApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, taking its write lock by :func:`install_table_lock`'s function."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        set_lock_timeout, _ = self.lock_table_statements  # the library's LOCK TABLE is replaced
        self.lock_table_statements = [
            set_lock_timeout,
            sql.SQL("SELECT {}()").format(
                sql.Identifier(datastore.schema, lock_function_name(self.events_table_name))
            ),
        ]
