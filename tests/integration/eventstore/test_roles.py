"""``plantcore db init``'s roles: the runtime appends to the record and cannot change it.

Each test runs ``db init`` on a database of its own (the ``plant_roles``
fixture), then acts as the role it is about: the runtime role tries every way
to rewrite or unguard the log and is refused by PostgreSQL itself; it still
records events, moves its followers' positions, writes the read models and
makes a new day's history partition; the auditor only reads. A database made
before the roles is taken over, and a second run changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest
from eventsourcing.persistence import Tracking
from psycopg import sql

from audit.chain_check import verify_database
from domain.catalog import TagCatalog
from domain.messages import Quality, Sample, TelemetryBatch
from eventstore.roles import PlantRoles
from plantcore.db_init import RUNTIME_TABLES, InitialisedDatabase, initialise_database
from plantcore.open_application import (
    EVENTS_TABLE,
    SNAPSHOTS_TABLE,
    EventStoreNotPrepared,
    open_application,
)
from projections.alarm_views import ensure_alarm_schema
from projections.history import HistoryWriter
from projections.history_schema import ensure_history_schema, open_history, partition_name
from projections.rollup_refresher import RollupRefresher
from tests.support import drop_roles, unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

# Every way a role could rewrite the record, or switch off what guards it.
TAMPERING = [
    "ALTER TABLE {events} DISABLE TRIGGER ALL",
    "ALTER TABLE {events} DISABLE TRIGGER plantcore_append_only_rows",
    "DROP TRIGGER plantcore_append_only_rows ON {events}",
    "DROP TRIGGER plantcore_append_only_truncate ON {events}",
    "DROP TRIGGER zz_plantcore_chain ON {events}",
    "TRUNCATE {events}",
    "UPDATE {events} SET state = state",
    "DELETE FROM {events}",
    "ALTER TABLE {events} ADD COLUMN note text",
    "ALTER TABLE {events} OWNER TO CURRENT_USER",
    "DROP TABLE {events}",
    "CREATE OR REPLACE FUNCTION plantcore_refuse_change() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "UPDATE {snapshots} SET state = state",
    "DELETE FROM {snapshots}",
    "TRUNCATE {snapshots}",
    "ALTER TABLE {snapshots} DISABLE TRIGGER ALL",
    "SET ROLE {owner}",
    "GRANT {owner} TO CURRENT_USER",
    "CREATE TABLE plantapplication_events_copy (LIKE {events})",
]


@pytest.fixture
def recorded(plant_roles: InitialisedDatabase) -> int:
    """A few events, recorded through the application as the runtime role."""
    app = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        app.register_operator(
            username="ana", full_name="Ana Operator", roles=["operator"],
            password_hash="h", totp_secret_sealed="s", actor="admin", at=T0,
        )  # fmt: skip
        position = app.recorder.max_notification_id()
    finally:
        app.close()
    assert position is not None
    return position


def statement(template: str, roles: PlantRoles) -> sql.Composed:
    return sql.SQL(template).format(
        events=sql.Identifier(EVENTS_TABLE),
        snapshots=sql.Identifier(SNAPSHOTS_TABLE),
        owner=sql.Identifier(roles.owner),
    )


@pytest.mark.parametrize("template", TAMPERING)
def test_the_runtime_role_can_neither_rewrite_nor_unguard_the_record(
    plant_roles: InitialisedDatabase, own_database: str, recorded: int, template: str
) -> None:
    with (
        psycopg.connect(plant_roles.runtime_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement(template, plant_roles.roles))

    with psycopg.connect(own_database) as conn:
        enabled = conn.execute(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = %s::regclass"
            " AND tgenabled <> 'D' ORDER BY 1",
            (EVENTS_TABLE,),
        ).fetchall()
    assert enabled == [
        ("plantcore_append_only_rows",),
        ("plantcore_append_only_truncate",),
        ("zz_plantcore_chain",),
    ]
    report = verify_database(plant_roles.auditor_url, EVENTS_TABLE, expected=[])
    assert (report.first, report.last_position) == (None, recorded)


def test_the_runtime_role_will_not_write_to_a_log_whose_guard_is_off(
    plant_roles: InitialisedDatabase, own_database: str
) -> None:
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER plantcore_append_only_rows").format(
                sql.Identifier(EVENTS_TABLE)
            )
        )

    with pytest.raises(EventStoreNotPrepared, match="disabled: plantcore_append_only_rows"):
        open_application(plant_roles.runtime_url, TagCatalog([]))


def test_the_runtime_role_is_nothing_more_than_a_login(
    plant_roles: InitialisedDatabase, own_database: str
) -> None:
    roles = plant_roles.roles
    with psycopg.connect(own_database) as conn:
        attributes = conn.execute(
            "SELECT rolname::text, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin,"
            " (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)"
            " FROM pg_roles r WHERE rolname = ANY(%s) ORDER BY rolname",
            ([roles.owner, *roles.logins],),
        ).fetchall()
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
    # The analyst's is a fourth login, as bare as the others (it reads the views alone).
    assert attributes == sorted(
        [
            (roles.analyst, False, False, False, True, 0),
            (roles.auditor, False, False, False, True, 0),
            (roles.owner, False, False, False, False, 0),
            (roles.runtime, False, False, False, True, 0),
        ]
    )
    assert owners == [(roles.owner,)]


def test_the_runtime_role_records_snapshots_and_followers_positions(
    plant_roles: InitialisedDatabase, recorded: int
) -> None:
    app = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        operator = app.find_operator("ana")
        assert operator is not None
        app.take_snapshot(operator.id)
        tracking = app.factory.tracking_recorder()
        tracking.insert_tracking(Tracking("a-follower", recorded))
        tracking.insert_tracking(Tracking("a-follower", recorded + 1))  # moved on
        assert tracking.max_tracking_id("a-follower") == recorded + 1
        assert app.snapshots is not None
        assert [s.originator_version for s in app.snapshots.get(operator.id)] == [operator.version]
    finally:
        app.close()


async def test_the_runtime_role_writes_the_read_models_and_a_new_days_partition(
    plant_roles: InitialisedDatabase, own_database: str
) -> None:
    pool = await asyncpg.create_pool(plant_roles.runtime_url, min_size=1, max_size=2)
    try:
        partitions = await open_history(pool)
        assert partitions is not None
        ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=6)
        device = unique("press")
        batch = TelemetryBatch(
            device, ahead, (Sample("speed", 1200.0, Quality.GOOD, "rpm", ahead),)
        )
        assert await HistoryWriter(pool, partitions).write([batch]) == 1
        # Its rollups too, in their monthly and yearly partitions, by the refresher, here
        # past the sample's hour as the clock would be.
        refresher = RollupRefresher(pool)
        await refresher.advance(to=ahead + timedelta(hours=1))
        await refresher.catch_up()
        assert await pool.fetchval("SELECT count FROM samples_1m WHERE device = $1", device) == 1
        assert await pool.fetchval("SELECT count FROM samples_1h WHERE device = $1", device) == 1
        await pool.execute(
            "INSERT INTO alarm_journal (position, device, condition, area, priority, event,"
            " actor, at, detail) VALUES (1, $1, 'hi', 'a', 'high', 'Raised', 'x', now(), '{}')",
            device,
        )
        await pool.execute(
            "INSERT INTO alarm_current VALUES ($1, $2, 'hi', 'hi', 'high', 'a', 'speed',"
            " 'unack', true, false, true, false, NULL, now(), '{}', 1, now())"
            " ON CONFLICT (alarm_id) DO UPDATE SET version = excluded.version",
            uuid.uuid4(),
            device,
        )
        for refused in (
            "DELETE FROM alarm_journal",
            "DELETE FROM samples_1m",
            "TRUNCATE alarm_current",
            "DROP TABLE samples",
            f"ALTER TABLE samples DETACH PARTITION {partition_name('samples', ahead.date())}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute(refused)
        with pytest.raises(asyncpg.RaiseError, match="not a partitioned table"):
            await pool.execute(
                "SELECT plantcore_add_partition($1::regclass, 'day', current_date)", EVENTS_TABLE
            )
    finally:
        await pool.close()

    with psycopg.connect(own_database) as conn:
        made = conn.execute(
            "SELECT pg_get_userbyid(c.relowner)::text FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'samples'::regclass AND c.relname = %s",
            (partition_name("samples", ahead.date()),),
        ).fetchall()
        stored = conn.execute(
            "SELECT tableoid::regclass::text FROM samples WHERE device = %s", (device,)
        ).fetchall()
    assert made == [(plant_roles.roles.owner,)]
    assert stored == [(partition_name("samples", ahead.date()),)]


def test_the_auditor_role_reads_everything_and_writes_nothing(
    plant_roles: InitialisedDatabase, recorded: int
) -> None:
    with psycopg.connect(plant_roles.auditor_url, autocommit=True) as conn:
        for table in RUNTIME_TABLES:
            conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(table)))
        for refused in (
            "INSERT INTO plantapplication_events (originator_id, originator_version, topic, state)"
            " VALUES (gen_random_uuid(), 1, 'forged', '')",
            "INSERT INTO plantapplication_tracking VALUES ('a-follower', 1)",
            "UPDATE alarm_current SET version = version",
            "SELECT plantcore_lock_plantapplication_events()",
            "SELECT plantcore_add_partition('samples'::regclass, 'day', current_date)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
    assert verify_database(plant_roles.auditor_url, EVENTS_TABLE, expected=[]).rows == recorded


@pytest.fixture
def prefix_roles(own_database: str) -> Iterator[PlantRoles]:
    roles = PlantRoles.named(unique("legacy").replace("-", "_"))
    yield roles
    drop_roles(own_database, roles)


def _privileges(database_url: str) -> list[tuple[str, str, str | None]]:
    """Every object of the schema with its owner and its grants."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner)::text, c.relacl::text"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " UNION ALL SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)::text,"
            " p.proacl::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " ORDER BY 1"
        ).fetchall()


async def test_init_takes_over_a_database_made_before_the_roles_and_changes_nothing_again(
    own_database: str, prefix_roles: PlantRoles
) -> None:
    # The store as plantcore made it before the roles: everything the superuser's.
    app = open_application(own_database, TagCatalog([]))
    try:
        app.register_operator(
            username="ana", full_name="Ana Operator", roles=["operator"],
            password_hash="h", totp_secret_sealed="s", actor="admin", at=T0,
        )  # fmt: skip
        app.factory.tracking_recorder()
    finally:
        app.close()
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=1)
    try:
        await ensure_history_schema(pool)
        await ensure_alarm_schema(pool)
    finally:
        await pool.close()
    # And a hand-made "runtime" role with far too much.
    with psycopg.connect(own_database, autocommit=True) as conn:
        runtime = sql.Identifier(prefix_roles.runtime)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(runtime))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(runtime))
        conn.execute(sql.SQL("GRANT pg_write_all_data TO {}").format(runtime))

    first = await initialise_database(own_database, prefix_roles)
    taken_over = _privileges(own_database)
    await initialise_database(own_database, prefix_roles)

    assert _privileges(own_database) == taken_over
    assert {owner for _, owner, _ in taken_over} == {prefix_roles.owner}
    with psycopg.connect(own_database) as conn:
        held = conn.execute(
            "SELECT r.rolcreaterole, pg_has_role(r.oid, 'pg_write_all_data', 'MEMBER'),"
            " has_table_privilege(r.oid, %s, 'UPDATE'),"
            " has_table_privilege(r.oid, 'samples_default', 'DELETE'),"
            " has_table_privilege(r.oid, %s, 'INSERT')"
            " FROM pg_roles r WHERE r.rolname = %s",
            (EVENTS_TABLE, EVENTS_TABLE, prefix_roles.runtime),
        ).fetchone()
    assert held == (False, False, False, False, True)
    report = verify_database(first.auditor_url, EVENTS_TABLE, expected=[])
    assert report.first is None
    assert report.rows == 3  # the operator's Registered, the directory's Opened and Listed
