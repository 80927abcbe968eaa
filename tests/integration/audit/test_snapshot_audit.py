"""What an auditor reads is the events' word, and a snapshot that says otherwise is reported.

``plantcore audit replay`` rebuilds an aggregate from its events alone, so a
forged snapshot cannot change what it shows; ``plantcore audit verify`` replays
every snapshotted aggregate and names each snapshot that disagrees with its
events (``snapshot_mismatch``, with the position of the event it claims to
stand at), while honest snapshots verify.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.operator import Operator, operator_id
from plantcore.audit_inspect import add_inspect_commands, run_inspect_command
from plantcore.cli import main
from plantcore.open_application import EVENTS_TABLE, open_application
from plantcore.settings import Settings
from tests.integration.eventstore.forged_snapshots import (
    forged_admin,
    insert_snapshot,
    overwrite_snapshot,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SNAPSHOT_INTERVAL = PlantApplication.snapshotting_intervals[Operator]


@pytest.fixture
def app(own_database: str) -> Iterator[PlantApplication]:
    application = open_application(own_database, TagCatalog([]))
    application.register_operator(
        username="vic", full_name="Vic Viewer", roles=["viewer"], password_hash="h",
        totp_secret_sealed="s", actor="admin", at=T0,
    )  # fmt: skip
    application.log_in(
        username="vic", password_matches=True, source="10.0.0.7", session_id="s1",
        refresh_hash="r", at=T0,
    )  # fmt: skip
    yield application
    application.close()


def position_of(url: str, aggregate_id: UUID, version: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT notification_id FROM {}"
                " WHERE originator_id = %s AND originator_version = %s"
            ).format(sql.Identifier(EVENTS_TABLE)),
            (aggregate_id, version),
        ).fetchone()
    assert row is not None
    return int(row[0])


def replayed(url: str, *argv: str) -> dict[str, object]:
    out, err = io.StringIO(), io.StringIO()
    parser = argparse.ArgumentParser(prog="plantcore audit")
    add_inspect_commands(parser.add_subparsers(dest="audit_command", required=True))
    args = parser.parse_args(["replay", *argv, "--json"])
    assert run_inspect_command(args, Settings(database_url=url), out=out, err=err) == 0, err
    state: dict[str, object] = json.loads(out.getvalue())
    return state


def verified(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str]]:
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", url)
    status = main(["audit", "verify", "--quiet"])
    return status, capsys.readouterr().out.splitlines()


def test_replay_shows_the_operator_its_events_make(
    app: PlantApplication, own_database: str
) -> None:
    vic = operator_id("vic")
    version = app.get_operator("vic").version
    insert_snapshot(own_database, forged_admin(app, "vic", version=version, at=T0))

    for asked in ((), ("--version", str(version))):
        state = replayed(own_database, "--aggregate", str(vic), *asked)
        assert state["version"] == version
        assert state["state"]["roles"] == ["viewer"]  # type: ignore[index]


@pytest.mark.parametrize("where", ["at its version", "past its last event", "in place"])
def test_verify_names_a_snapshot_that_disagrees_with_its_events(
    app: PlantApplication,
    own_database: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    vic = operator_id("vic")
    version = app.get_operator("vic").version
    app.take_snapshot(vic, version=1)  # an honest one, below: it verifies
    if where == "in place":
        app.take_snapshot(vic)
        overwrite_snapshot(own_database, forged_admin(app, "vic", version=version, at=T0))
    else:
        claimed = version if where == "at its version" else 1000
        insert_snapshot(own_database, forged_admin(app, "vic", version=claimed, at=T0))
    position = position_of(own_database, vic, version)  # the forged one's, or vic's last event

    status, lines = verified(own_database, capsys, monkeypatch)

    assert status == 1
    assert lines[0].startswith(f"TAMPERED: first bad position {position}: snapshot_mismatch:")
    assert str(vic) in lines[0]
    assert "1 of 2 snapshots agree with their events" in lines[1]
    assert [line for line in lines[2:] if "snapshot_mismatch" in line] == [lines[2]]


def test_honest_snapshots_verify(
    app: PlantApplication,
    own_database: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(SNAPSHOT_INTERVAL + 2):  # one snapshot taken by the application itself
        app.record_access_denied(
            username="vic", action="operators.manage", target="", source="10.0.0.7", at=T0
        )
    app.take_snapshot(operator_id("vic"), version=2)

    status, lines = verified(own_database, capsys, monkeypatch)

    assert status == 0, lines
    assert lines[0].startswith("intact: ")
    assert "; 2 of 2 snapshots agree with their events;" in lines[0]
