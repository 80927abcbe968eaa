"""An auditor's database role reads the record and changes nothing, and is enough for audit.

The role is granted ``SELECT`` and nothing else; ``plantcore audit verify``,
``replay`` and ``timeline`` all work with it, and it cannot append an event.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError
from psycopg import sql

from domain.catalog import TagCatalog, TagLimits, ValueKind
from plantcore.open_application import open_application, open_reader
from tests.support import unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CATALOG = TagCatalog(
    [TagLimits("press-1", "speed_setpoint", "rpm", True, ValueKind.NUMBER, 0, 1800)]
)


@pytest.fixture
def auditor_url(own_database: str) -> Iterator[str]:
    """The URL of a fresh role that may log in, and nothing more until granted."""
    role = unique("auditor").replace("-", "_")
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    parts = urlsplit(own_database)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def audit(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantcore", "audit", *args],
        env={**os.environ, "PLANTCORE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_select_only_role_verifies_replays_and_reads_timelines(
    own_database: str, auditor_url: str
) -> None:
    app = open_application(own_database, CATALOG)
    try:
        app.register_operator(
            username="ana", full_name="Ana Operator", roles=["operator"],
            password_hash="h", totp_secret_sealed="s", actor="admin", at=T0,
        )  # fmt: skip
        app.grant_permission(username="ana", scope="plant", actor="admin", at=T0)
        ticket = app.request_command(
            actor="ana", device="press-1", tag="speed_setpoint", value=900, at=T0
        )
        app.confirm_command(
            actor="ana", command_id=ticket.command_id, totp_step=1, at=T0 + timedelta(seconds=5)
        )
    finally:
        app.close()
    # What the plant's DBA gives an auditor: SELECT on the tables, nothing else.
    with psycopg.connect(own_database, autocommit=True) as conn:
        role = urlsplit(auditor_url).username
        assert role is not None
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )

    verified = audit("verify", database_url=auditor_url)
    mid_life = (T0 + timedelta(seconds=1)).isoformat()
    replayed = audit(
        "replay", "--aggregate", str(ticket.command_id), "--at", mid_life,
        database_url=auditor_url,
    )  # fmt: skip
    timeline = audit("timeline", str(ticket.command_id), database_url=auditor_url)

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert "awaiting_confirmation" in replayed.stdout
    assert timeline.returncode == 0, timeline.stderr
    assert "Ana Operator" in timeline.stdout
    # The reader cannot write, whatever it asks of the application.
    reader = open_reader(auditor_url, CATALOG)
    try:
        # The refusal is "permission denied", or, when psycopg's pipeline reports the
        # statement after the refused one first, "pipeline aborted": either way refused.
        with pytest.raises(PersistenceError, match=r"permission denied|pipeline aborted"):
            reader.register_operator(
                username="mallory", full_name="M", roles=["admin"],
                password_hash="h", totp_secret_sealed="s", actor="mallory", at=T0,
            )  # fmt: skip
    finally:
        reader.close()
    with psycopg.connect(own_database) as conn:
        written = conn.execute(
            "SELECT count(*) FROM plantapplication_events"
            " WHERE convert_from(state, 'UTF8') LIKE '%mallory%'"
        ).fetchone()
    assert written == (0,)
