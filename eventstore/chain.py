"""A hash chain over the stored-events table, in the global (notification id) order.

Every row carries ``chain_prev``, the position of the row before it (NULL for the
first), and ``chain_hash``::

    chain_hash = sha256(prev_hash ‖ int8(position) ‖ uuid(originator_id) ‖ int8(version)
                        ‖ int4(len(topic)) ‖ topic ‖ int4(len(state)) ‖ state)

with ``prev_hash`` the previous row's ``chain_hash`` (32 zero bytes for the first
row, or when the previous row has none), integers big-endian, the topic in
UTF-8 and a length of -1 (and no bytes) for a NULL topic or state. A
``BEFORE INSERT`` trigger computes it in PostgreSQL, so every writer is covered;
:func:`link_hash` is the same function in Python, for auditors.

The trigger runs under the library's ``LOCK TABLE ... IN EXCLUSIVE MODE``, which
already serialises writers in commit order. As a safety net for a writer that
does not take that lock, the trigger first takes a transaction-level advisory
lock, and a row whose position is not past the current head gets the next one
from the sequence: the chain only ever grows at its head, in commit order.

:func:`install_hash_chain` adds the columns, the functions and the trigger at
every start-up, idempotently. The first install also hashes the rows already
there, in position order, in the same transaction (see ADR 0018).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
TRIGGER_NAME = "zz_plantcore_chain"  # BEFORE triggers fire by name: this one last
GUARD_ROW_TRIGGER = "plantcore_append_only_rows"  # see eventstore/guard.py

# Serialises concurrent installs (a different key from the guard's).
_INSTALL_LOCK_KEY = 0x706C616E74_02  # "plant" + chain
# The first half of the two-key advisory lock each insert takes; the second is the table's oid.
_INSERT_LOCK_CLASS = 0x70_6C_63_68  # "plch"

_LINK_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {link}(
    prev bytea, pos bigint, originator uuid, version bigint, topic text, state bytea
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(
        prev
        || pg_catalog.int8send(pos)
        || pg_catalog.uuid_send(originator)
        || pg_catalog.int8send(version)
        || CASE WHEN topic IS NULL THEN pg_catalog.int4send(-1)
                ELSE pg_catalog.int4send(
                         pg_catalog.octet_length(pg_catalog.convert_to(topic, 'UTF8')))
                     || pg_catalog.convert_to(topic, 'UTF8') END
        || CASE WHEN state IS NULL THEN pg_catalog.int4send(-1)
                ELSE pg_catalog.int4send(pg_catalog.octet_length(state)) || state END
    )
$$
"""

_TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_position bigint;
    head_hash bytea;
BEGIN
    -- The library already holds the table in EXCLUSIVE mode; this covers other writers.
    PERFORM pg_catalog.pg_advisory_xact_lock({lock_class}, {lock_object});
    SELECT notification_id, chain_hash INTO head_position, head_hash
      FROM {table} ORDER BY notification_id DESC LIMIT 1;
    -- The chain grows at its head only: a row numbered before it (a writer that
    -- bypassed the table lock, or a position set by hand) is numbered again.
    IF head_position IS NOT NULL
       AND (NEW.notification_id IS NULL OR NEW.notification_id <= head_position) THEN
        NEW.notification_id := GREATEST(
            pg_catalog.nextval({sequence}::regclass), head_position + 1);
    END IF;
    NEW.chain_prev := head_position;
    NEW.chain_hash := {link}(
        COALESCE(head_hash, '\x{zero}'::bytea), NEW.notification_id, NEW.originator_id,
        NEW.originator_version, NEW.topic, NEW.state);
    RETURN NEW;
END
$$
"""

_TRIGGER = """
CREATE OR REPLACE TRIGGER {trigger}
BEFORE INSERT ON {table}
FOR EACH ROW EXECUTE FUNCTION {function}()
"""

# The first install only: every row already there, hashed in position order.
_BACKFILL = r"""
DO $$
DECLARE
    r record;
    prev_position bigint := NULL;
    prev_hash bytea := '\x{zero}'::bytea;
BEGIN
    FOR r IN SELECT notification_id, originator_id, originator_version, topic, state
               FROM {table} ORDER BY notification_id
    LOOP
        prev_hash := {link}(prev_hash, r.notification_id, r.originator_id,
                            r.originator_version, r.topic, r.state);
        UPDATE {table} SET chain_prev = prev_position, chain_hash = prev_hash
         WHERE notification_id = r.notification_id;
        prev_position := r.notification_id;
    END LOOP;
END
$$
"""


@dataclass(frozen=True)
class ChainRow:
    """One stored event with its place in the chain, as an auditor reads it."""

    position: int
    chain_prev: int | None
    chain_hash: bytes | None
    originator_id: uuid.UUID
    version: int
    topic: str | None
    state: bytes | None


@dataclass(frozen=True)
class ChainHead:
    position: int
    chain_hash: bytes | None


def link_hash(
    prev_hash: bytes,
    position: int,
    originator_id: uuid.UUID,
    version: int,
    topic: str | None,
    state: bytes | None,
) -> bytes:
    """The chain hash of one row: the Python twin of the SQL function the trigger calls."""
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"a chain hash has {HASH_SIZE} bytes, got {len(prev_hash)}")
    digest = hashlib.sha256(prev_hash)
    digest.update(struct.pack(">q", position))
    digest.update(originator_id.bytes)
    digest.update(struct.pack(">q", version))
    for field in (None if topic is None else topic.encode("utf-8"), state):
        if field is None:
            digest.update(struct.pack(">i", -1))
        else:
            digest.update(struct.pack(">i", len(field)))
            digest.update(field)
    return digest.digest()


def row_hash(prev_hash: bytes, row: ChainRow) -> bytes:
    """:func:`link_hash` of ``row``'s content at its own position."""
    return link_hash(prev_hash, row.position, row.originator_id, row.version, row.topic, row.state)


class _Names:
    def __init__(self, table: str) -> None:
        *schema, name = table.split(".")
        if len(schema) > 1 or not name:
            raise ValueError(f"not a table name: {table!r}")
        function_name = f"plantcore_chain_{name}"
        if len(function_name.encode()) > 63:
            raise ValueError(f"table name too long for its chain function: {table!r}")
        self.schema = schema[0] if schema else None
        self.name = name
        self.table = sql.Identifier(*schema, name)
        self.function = sql.Identifier(*schema, function_name)
        self.link = sql.Identifier(*schema, "plantcore_chain_link")
        self.trigger = sql.Identifier(TRIGGER_NAME)
        self.guard_trigger = sql.Identifier(GUARD_ROW_TRIGGER)

    def regclass(self) -> str:
        return self.table.as_string()


def install_hash_chain(conninfo: str, table: str) -> None:
    """Chain every row of ``table`` (the library's events table) from now on; idempotent.

    The first install adds ``chain_prev`` and ``chain_hash`` and hashes the rows
    already there, in one transaction that holds the table exclusively and
    switches the append-only guard's row trigger off for its own updates only.
    Later installs leave every row alone: a row a superuser slipped in without
    the trigger keeps its missing hash, for ``plantcore audit verify`` to report.
    The connecting role must own the table.
    """
    names = _Names(table)
    with psycopg.connect(conninfo, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK_KEY,))
        first_install = not _has_chain_columns(conn, names)
        oid_row = conn.execute("SELECT %s::regclass::oid::bigint", (names.regclass(),)).fetchone()
        column_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'originator_id'",
            (names.regclass(),),
        ).fetchone()
        sequence_row = conn.execute(
            "SELECT pg_get_serial_sequence(%s, 'notification_id')", (names.regclass(),)
        ).fetchone()
        assert oid_row is not None
        assert sequence_row is not None
        if column_type != ("uuid",):
            raise ValueError(f"{table}.originator_id must be uuid to be chained, not {column_type}")
        if sequence_row[0] is None:
            raise ValueError(f"{table}.notification_id has no sequence")
        parts = {
            "table": names.table,
            "function": names.function,
            "link": names.link,
            "trigger": names.trigger,
            "zero": sql.SQL(ZERO_HASH.hex()),
            "lock_class": sql.Literal(_INSERT_LOCK_CLASS),
            "lock_object": sql.Literal(int(oid_row[0]) & 0x7FFFFFFF),
            "sequence": sql.Literal(sequence_row[0]),
        }
        if first_install:
            # Adding the columns holds the table exclusively (readers too) until the
            # commit; writers and readers wait until the rows present are chained.
            conn.execute(sql.SQL("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE").format(**parts))
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {table} ADD COLUMN chain_prev bigint, ADD COLUMN chain_hash bytea"
                ).format(**parts)
            )
        conn.execute(sql.SQL(_LINK_FUNCTION).format(**parts))
        conn.execute(sql.SQL(_TRIGGER_FUNCTION).format(**parts))
        if first_install:
            _backfill(conn, names, parts)
        conn.execute(sql.SQL(_TRIGGER).format(**parts))


def _backfill(
    conn: psycopg.Connection[TupleRow], names: _Names, parts: dict[str, sql.Composable]
) -> None:
    if conn.execute(sql.SQL("SELECT 1 FROM {table} LIMIT 1").format(**parts)).fetchone() is None:
        return
    guarded = _has_trigger(conn, names, GUARD_ROW_TRIGGER)
    if guarded:
        # Inside this transaction only, which holds the table exclusively until it commits.
        conn.execute(
            sql.SQL("ALTER TABLE {table} DISABLE TRIGGER {guard}").format(
                table=names.table, guard=names.guard_trigger
            )
        )
    conn.execute(sql.SQL(_BACKFILL).format(**parts))
    if guarded:
        conn.execute(
            sql.SQL("ALTER TABLE {table} ENABLE TRIGGER {guard}").format(
                table=names.table, guard=names.guard_trigger
            )
        )


def _has_chain_columns(conn: psycopg.Connection[TupleRow], names: _Names) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attname IN ('chain_prev', 'chain_hash') AND NOT attisdropped",
        (names.regclass(),),
    ).fetchone()
    assert row is not None
    return bool(row[0] == 2)


def _has_trigger(conn: psycopg.Connection[TupleRow], names: _Names, trigger: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
        (names.regclass(), trigger),
    ).fetchone()
    return row is not None


def has_hash_chain(conn: psycopg.Connection[TupleRow], table: str) -> bool:
    """Whether ``table`` exists with the chain columns (the chain was installed once)."""
    names = _Names(table)
    found = conn.execute("SELECT to_regclass(%s)", (names.regclass(),)).fetchone()
    return found is not None and found[0] is not None and _has_chain_columns(conn, names)


def chain_head(conn: psycopg.Connection[TupleRow], table: str) -> ChainHead | None:
    """The last row of the chain (highest position), or None for an empty table."""
    names = _Names(table)
    row = conn.execute(
        sql.SQL(
            "SELECT notification_id, chain_hash FROM {} ORDER BY notification_id DESC LIMIT 1"
        ).format(names.table)
    ).fetchone()
    if row is None:
        return None
    position, digest = row
    assert isinstance(position, int)
    return ChainHead(position, None if digest is None else bytes(digest))


def iter_chain_rows(
    conn: psycopg.Connection[TupleRow],
    table: str,
    *,
    first: int | None = None,
    last: int | None = None,
    batch: int = 2000,
) -> Iterator[ChainRow]:
    """Stream rows in position order through a server-side cursor (needs a transaction)."""
    names = _Names(table)
    query = sql.SQL(
        "SELECT notification_id, chain_prev, chain_hash, originator_id, originator_version,"
        " topic, state FROM {table}"
        " WHERE notification_id >= %(first)s AND notification_id <= %(last)s"
        " ORDER BY notification_id"
    ).format(table=names.table)
    params = {
        "first": -(2**63) if first is None else first,
        "last": 2**63 - 1 if last is None else last,
    }
    with conn.cursor(name="plantcore_chain_rows") as cursor:
        cursor.itersize = batch
        cursor.execute(query, params)
        for position, prev, digest, originator, version, topic, state in cursor:
            yield ChainRow(
                position=position,
                chain_prev=prev,
                chain_hash=None if digest is None else bytes(digest),
                originator_id=originator,
                version=version,
                topic=topic,
                state=None if state is None else bytes(state),
            )
