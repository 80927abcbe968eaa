"""Forging an operator's snapshot as an intruder with write access to the snapshots table would.

The forged state is made with the domain's own methods on a loaded operator
(nothing is saved to the events table), so it is exactly what an honest
snapshot of such an operator would hold: the admin role, a password hash the
intruder knows, and an open session of theirs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from domain.application import PlantApplication
from domain.operator import LoginPolicy, Operator
from plantcore.open_application import SNAPSHOTS_TABLE

KNOWN_HASH = "$argon2id$v=19$m=65536,t=3,p=4$aW50cnVkZXI$the-intruders-own-password"
FORGED_SESSION = "session-of-the-intruder"
TABLE = sql.Identifier(SNAPSHOTS_TABLE)


def forged_admin(
    app: PlantApplication, username: str, *, version: int, at: datetime
) -> StoredEvent:
    """The stored row of a snapshot of ``username`` at ``version``, made an admin."""
    operator = app.get_operator(username)
    operator.set_password(KNOWN_HASH, actor=username, at=at)
    operator.grant_role("admin", actor=username, at=at)
    operator.log_in(
        password_matches=True,
        source="10.6.6.6",
        session_id=FORGED_SESSION,
        refresh_hash="forged",
        policy=LoginPolicy(session_lifetime=timedelta(days=365)),
        at=at,
    )
    stored = app.mapper.to_stored_event(Operator.Snapshot.take(operator))
    return StoredEvent(stored.originator_id, version, stored.topic, stored.state)


def insert_snapshot(url: str, row: StoredEvent) -> None:
    """INSERT ``row`` into the snapshots table, as whoever ``url`` connects as."""
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)"
            ).format(TABLE),
            (row.originator_id, row.originator_version, row.topic, row.state),
        )


def overwrite_snapshot(url: str, row: StoredEvent) -> None:
    """Replace the stored snapshot at ``row``'s version in place, with every trigger off."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(TABLE))
        updated = conn.execute(
            sql.SQL(
                "UPDATE {} SET topic = %s, state = %s"
                " WHERE originator_id = %s AND originator_version = %s"
            ).format(TABLE),
            (row.topic, row.state, row.originator_id, row.originator_version),
        )
        assert updated.rowcount == 1
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(TABLE))


def snapshot_versions(url: str, aggregate_id: UUID) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT originator_version FROM {} WHERE originator_id = %s ORDER BY 1").format(
                TABLE
            ),
            (aggregate_id,),
        ).fetchall()
    return [version for (version,) in rows]
