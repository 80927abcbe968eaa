"""A row written into the snapshots table cannot change who an operator is.

The attack: whoever may write the snapshots table (the runtime's role may
INSERT; the owner or a superuser may switch the guard off and UPDATE) plants a
snapshot of a viewer that holds the admin role, a password hash the intruder
knows and a session of theirs. The plant core authorises with the operator it
loads (``authenticate`` is what the API asks on every request), so that load
must reach the state of the events alone, before and after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.errors import SessionInvalid
from domain.operator import Operator, operator_id
from domain.permissions import Action
from plantcore.db_init import InitialisedDatabase
from plantcore.open_application import SNAPSHOTS_TABLE, EventStoreNotPrepared, open_application
from tests.integration.eventstore.forged_snapshots import (
    FORGED_SESSION,
    KNOWN_HASH,
    forged_admin,
    insert_snapshot,
    overwrite_snapshot,
    snapshot_versions,
)
from tests.support import unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SOON = T0 + timedelta(minutes=5)
HONEST_HASH = "$argon2id$v=19$m=65536,t=3,p=4$dmljdG9y$the-viewers-own-password"
SNAPSHOT_INTERVAL = PlantApplication.snapshotting_intervals[Operator]


@pytest.fixture
def runtime_app(plant_roles: InitialisedDatabase) -> Iterator[PlantApplication]:
    """The application as the plant core runs it: as the runtime role of ``db init``."""
    app = open_application(plant_roles.runtime_url, TagCatalog([]))
    yield app
    app.close()


def register_viewer(app: PlantApplication) -> None:
    app.register_operator(
        username="vic", full_name="Vic Viewer", roles=["viewer"], password_hash=HONEST_HASH,
        totp_secret_sealed="sealed", actor="admin", at=T0,
    )  # fmt: skip
    app.log_in(
        username="vic", password_matches=True, source="10.0.0.7", session_id="vic-session",
        refresh_hash="r", at=T0,
    )  # fmt: skip


def assert_still_the_viewer(app: PlantApplication) -> None:
    """What the API authorises with is what the events say, and only that."""
    operator = app.authenticate(username="vic", session_id="vic-session", at=SOON)
    assert operator.roles == ("viewer",)
    assert operator.password_hash == HONEST_HASH
    assert not app.is_operator_allowed("vic", Action.MANAGE_OPERATORS)
    with pytest.raises(SessionInvalid):
        app.authenticate(username="vic", session_id=FORGED_SESSION, at=SOON)
    assert operator.version == len(list(app.events.get(operator_id("vic"))))


def count_event_reads(app: PlantApplication) -> list[int]:
    """How many events each read of the event store yields, from now on."""
    reads: list[int] = []
    original = app.events.get

    def counting_get(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events = list(original(*args, **kwargs))
        reads.append(len(events))
        return iter(events)

    app.events.get = counting_get  # type: ignore[method-assign]
    return reads


@pytest.mark.parametrize(
    ("writer", "where"),
    [
        ("runtime", "at its version"),
        ("runtime", "past its last event"),
        ("superuser", "over an honest snapshot"),
    ],
)
def test_a_forged_snapshot_never_changes_who_an_operator_is(
    runtime_app: PlantApplication,
    plant_roles: InitialisedDatabase,
    own_database: str,
    caplog: pytest.LogCaptureFixture,
    writer: str,
    where: str,
) -> None:
    register_viewer(runtime_app)
    vic = runtime_app.get_operator("vic")
    if where == "over an honest snapshot":
        runtime_app.take_snapshot(vic.id)
    assert_still_the_viewer(runtime_app)  # loaded once: whatever it trusted, it trusted now
    version = 1000 if where == "past its last event" else vic.version
    forged = forged_admin(runtime_app, "vic", version=version, at=T0)
    url = plant_roles.runtime_url if writer == "runtime" else own_database
    if where == "over an honest snapshot":
        overwrite_snapshot(url, forged)
    else:
        insert_snapshot(url, forged)

    with caplog.at_level(logging.WARNING):
        assert_still_the_viewer(runtime_app)
    assert f"snapshot of {vic.id} at version {version}" in caplog.text
    restarted = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        assert_still_the_viewer(restarted)
        assert restarted.log_out(username="vic", session_id="vic-session", at=SOON)
        assert_still_the_viewer_logged_out(restarted)
    finally:
        restarted.close()


def assert_still_the_viewer_logged_out(app: PlantApplication) -> None:
    operator = app.get_operator("vic")
    assert (operator.roles, operator.password_hash) == (("viewer",), HONEST_HASH)
    assert operator.version == len(list(app.events.get(operator_id("vic"))))
    with pytest.raises(SessionInvalid):
        app.authenticate(username="vic", session_id="vic-session", at=SOON)


def test_a_snapshot_of_an_operator_who_never_existed_is_no_one(
    runtime_app: PlantApplication, plant_roles: InitialisedDatabase
) -> None:
    register_viewer(runtime_app)
    mallory = Operator.register(
        username="mallory", full_name="Mallory", roles=["admin"], password_hash=KNOWN_HASH,
        totp_secret_sealed="sealed", actor="admin", at=T0,
    )  # fmt: skip
    insert_snapshot(plant_roles.runtime_url, runtime_app.mapper.to_stored_event(
        Operator.Snapshot.take(mallory)
    ))  # fmt: skip

    assert runtime_app.find_operator("mallory") is None
    assert not runtime_app.is_operator_allowed("mallory", Action.MANAGE_OPERATORS)
    assert [op.username for op in runtime_app.list_operators()] == ["vic"]


def test_a_snapshot_planted_ahead_neither_blocks_the_operator_nor_replaces_the_honest_one(
    runtime_app: PlantApplication, plant_roles: InitialisedDatabase
) -> None:
    register_viewer(runtime_app)
    vic = operator_id("vic")
    forged = forged_admin(runtime_app, "vic", version=SNAPSHOT_INTERVAL, at=T0)
    insert_snapshot(plant_roles.runtime_url, forged)

    # Each refusal is an event of vic's: past the version the forged row claims.
    for _ in range(SNAPSHOT_INTERVAL):
        runtime_app.record_access_denied(
            username="vic", action="operators.manage", target="", source="10.0.0.7", at=T0
        )

    assert_still_the_viewer(runtime_app)
    assert snapshot_versions(plant_roles.runtime_url, vic) == [SNAPSHOT_INTERVAL]


def test_an_honest_snapshot_is_loaded_from(
    runtime_app: PlantApplication,
    plant_roles: InitialisedDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_viewer(runtime_app)
    for _ in range(SNAPSHOT_INTERVAL + 2):
        runtime_app.record_access_denied(
            username="vic", action="operators.manage", target="", source="10.0.0.7", at=T0
        )
    version = runtime_app.get_operator("vic").version
    assert snapshot_versions(plant_roles.runtime_url, operator_id("vic")) == [SNAPSHOT_INTERVAL]

    restarted = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        with caplog.at_level(logging.WARNING):
            assert_still_the_viewer(restarted)  # the first load checks the snapshot
        reads = count_event_reads(restarted)
        assert restarted.get_operator("vic").version == version
        assert reads == [version - SNAPSHOT_INTERVAL]  # the second one trusts it
    finally:
        restarted.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


# -- the table itself ------------------------------------------------------------------------------

CHANGES = ["UPDATE {} SET state = state", "DELETE FROM {}", "TRUNCATE {}"]


@pytest.fixture
def granted_all(own_database: str, plant_roles: InitialisedDatabase) -> Iterator[str]:
    """A role of this test's own, granted every privilege on the snapshots table."""
    role = unique("snapshot_writer").replace("-", "_")
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT ALL ON {} TO {}").format(
                sql.Identifier(SNAPSHOTS_TABLE), sql.Identifier(role)
            )
        )
    yield role
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def stored_snapshots(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(SNAPSHOTS_TABLE))
        ).fetchall()


@pytest.mark.parametrize("change", CHANGES)
def test_the_snapshots_table_refuses_every_change_from_every_role(
    runtime_app: PlantApplication,
    plant_roles: InitialisedDatabase,
    own_database: str,
    granted_all: str,
    change: str,
) -> None:
    register_viewer(runtime_app)
    runtime_app.take_snapshot(operator_id("vic"))
    before = stored_snapshots(own_database)
    assert before

    for role in (None, granted_all, plant_roles.roles.runtime):  # None: the superuser
        with psycopg.connect(own_database) as conn:
            if role is not None:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(sql.SQL(change).format(sql.Identifier(SNAPSHOTS_TABLE)))
        if role != plant_roles.roles.runtime:  # which holds no such privilege to begin with
            assert f"plantcore: {SNAPSHOTS_TABLE} is append-only" in str(refused.value)

    assert stored_snapshots(own_database) == before
    runtime_app.take_snapshot(operator_id("vic"), version=1)  # appending still works
    assert len(stored_snapshots(own_database)) == len(before) + 1


def test_the_runtime_role_will_not_run_on_snapshots_whose_guard_is_off(
    plant_roles: InitialisedDatabase, own_database: str
) -> None:
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER plantcore_append_only_truncate").format(
                sql.Identifier(SNAPSHOTS_TABLE)
            )
        )

    with pytest.raises(
        EventStoreNotPrepared,
        match=f"disabled: plantcore_append_only_truncate on {SNAPSHOTS_TABLE}",
    ):
        open_application(plant_roles.runtime_url, TagCatalog([]))
