"""Makes the eventsourcing library's tables append-only, inside PostgreSQL itself.

It guards the stored-events table, and the snapshots table too: a snapshot is
never changed either, only a newer one added (and the application checks each
one against its events before it loads from it, see
:mod:`domain.checked_snapshots`).

Privileges alone cannot do it: the table's owner and superusers bypass them, and
any role granted ``ALL`` on the table gets ``UPDATE`` and ``DELETE`` back. Triggers
bind every role, the owner and superusers included, so a changed or removed
row needs someone to disable the triggers on purpose (which the hash chain
detects in the events, ADR 0018). ``REVOKE ... FROM PUBLIC`` is kept as a second line, so
an ordinary role is refused before a trigger even runs.

The guard is installed once at start-up, from a thread, with a synchronous
psycopg connection; installing it again changes nothing.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

# Serialises concurrent installs: two ``CREATE OR REPLACE FUNCTION`` racing on the
# same function fail with "tuple concurrently updated".
_INSTALL_LOCK_KEY = 0x706C616E74_01  # "plant" + guard

_REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'plantcore: % is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the record is never changed: append a new row instead';
END
$$
"""

ROW_TRIGGER = "plantcore_append_only_rows"
# TRUNCATE never fires row triggers, so it needs its own statement-level one.
TRUNCATE_TRIGGER = "plantcore_append_only_truncate"
GUARD_TRIGGERS = (ROW_TRIGGER, TRUNCATE_TRIGGER)

_ROW_TRIGGER = f"""
CREATE OR REPLACE TRIGGER {ROW_TRIGGER}
BEFORE UPDATE OR DELETE ON {{table}}
FOR EACH ROW EXECUTE FUNCTION {{function}}()
"""

_TRUNCATE_TRIGGER = f"""
CREATE OR REPLACE TRIGGER {TRUNCATE_TRIGGER}
BEFORE TRUNCATE ON {{table}}
FOR EACH STATEMENT EXECUTE FUNCTION {{function}}()
"""

_REVOKE = "REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC"


def install_append_only_guard(conninfo: str, table: str) -> None:
    """Refuse UPDATE, DELETE and TRUNCATE on ``table`` for every role.

    ``table`` is one of the library's tables, e.g. ``plantapplication_events`` or
    ``plantapplication_snapshots``, optionally qualified as ``schema.table``; the
    trigger function, one for every guarded table, is created in the same
    schema. The error raised on a refused change has SQLSTATE 42501
    (insufficient privilege) and the message ``plantcore: <table> is append-only``.
    """
    *schema, name = table.split(".")
    table_id = sql.Identifier(*schema, name)
    function_id = sql.Identifier(*schema, "plantcore_refuse_change")
    names = {"table": table_id, "function": function_id}
    with psycopg.connect(conninfo, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK_KEY,))
        for statement in (_REFUSE_FUNCTION, _ROW_TRIGGER, _TRUNCATE_TRIGGER, _REVOKE):
            conn.execute(sql.SQL(statement).format(**names))
