"""The role the runtime connects to PostgreSQL as: one that cannot alter the record.

A superuser, the events table's owner (or a member of it), or a role that can
make itself one (CREATEROLE) could disable the append-only triggers and rewrite
the log; the runtime, which faces the network, must not hold such power. So it
refuses to start as one, unless told ``--allow-owner`` (a development database,
a test), and then prepares the schema itself as it always did. As the runtime
role, it needs ``plantcore db init`` to have made every table it uses.
"""

from __future__ import annotations

import logging

import psycopg

from eventstore.roles import connection_rights
from plantcore.db_init import RUNTIME_TABLES
from plantcore.open_application import EVENTS_TABLE

log = logging.getLogger(__name__)


class RunsAsOwner(PermissionError):
    """The runtime was to connect as a role that may alter the record, and was not allowed to."""


class DatabaseNotInitialised(LookupError):
    """A table the runtime uses is missing, and the runtime role may not create it."""


def check_runtime_role(database_url: str, *, allow_owner: bool) -> bool:
    """Whether the runtime prepares the schema itself: it connects as the owner, allowed to.

    Raises :class:`RunsAsOwner` for such a role when ``allow_owner`` is false,
    and :class:`DatabaseNotInitialised` when an ordinary role finds a table missing.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        rights = connection_rights(conn, EVENTS_TABLE)
        missing = [
            table
            for table in RUNTIME_TABLES
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
        ]
    if rights.excess is not None:
        if not allow_owner:
            raise RunsAsOwner(
                f"refusing to run: {rights.excess}, so the runtime could switch off the"
                " append-only guard and rewrite the event log. Connect as the runtime role"
                " `plantcore db init` creates (PLANTCORE_DATABASE_URL), or pass --allow-owner"
                " on a database where that is acceptable"
            )
        log.warning("running as %s, who may alter the event log (--allow-owner)", rights.role)
        return True
    if missing:
        raise DatabaseNotInitialised(
            f"{', '.join(missing)} missing, and {rights.role} may not create them:"
            " run `plantcore db init` first"
        )
    return False
