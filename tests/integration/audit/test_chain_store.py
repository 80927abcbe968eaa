"""The chain trigger on the real events table: same hashes as Python, one chain under
concurrency, a backfill for logs from before the chain, and installs that change nothing."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg import sql

from domain.application import PlantApplication
from domain.catalog import TagCatalog
from eventstore.chain import ZERO_HASH, install_hash_chain, row_hash
from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env
from plantcore.open_application import EVENTS_TABLE, open_application
from tests.integration.audit.conftest import TABLE, PlantLog

pytestmark = pytest.mark.integration


def assert_one_chain(log: PlantLog, count: int) -> None:
    """Every row links to the row before it, with the hash Python computes."""
    rows = log.rows()
    assert len(rows) == count
    prev_position, prev_hash = None, ZERO_HASH
    for row in rows:
        assert row.chain_prev == prev_position, row.position
        assert row.chain_hash == row_hash(prev_hash, row), row.position
        prev_position, prev_hash = row.position, row.chain_hash


def test_the_trigger_hashes_like_the_python_twin(plant_log: PlantLog) -> None:
    plant_log.write(60, events_per_save=5)  # 60 multi-row inserts of 5 events
    # Rows the library never writes: a non-ASCII topic and NULL topic and state.
    with psycopg.connect(plant_log.url) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state)"
                " VALUES (%s, 1, 'Prüfstand:Kessel.Geändert', 'ü'::bytea), (%s, 1, NULL, NULL)"
            ).format(TABLE),
            (uuid.uuid4(), uuid.uuid4()),
        )

    assert_one_chain(plant_log, 302)
    assert plant_log.verify().intact


def test_concurrent_writers_keep_one_chain(plant_log: PlantLog) -> None:
    apps = [open_application(plant_log.url, TagCatalog([])) for _ in range(3)]
    errors: list[BaseException] = []

    def library_writer(app: PlantApplication) -> None:
        try:
            PlantLog(plant_log.url, app).write(20, events_per_save=3)
        except BaseException as exc:
            errors.append(exc)
            raise

    def raw_writer() -> None:
        # No table lock: the trigger's advisory lock is all that orders these.
        try:
            with psycopg.connect(plant_log.url) as conn:
                for _ in range(30):
                    with conn.transaction():
                        conn.execute(
                            sql.SQL(
                                "INSERT INTO {} (originator_id, originator_version, topic, state)"
                                " SELECT gen_random_uuid(), 1, 'raw', 'x'::bytea"
                                " FROM generate_series(1, 2)"
                            ).format(TABLE)
                        )
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=library_writer, args=(app,)) for app in apps]
    threads += [threading.Thread(target=raw_writer) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for app in apps:
            app.close()

    assert not errors
    assert_one_chain(plant_log, 3 * 20 * 3 + 2 * 30 * 2)
    assert plant_log.verify().intact


def test_a_log_from_before_the_chain_is_hashed_once_at_install(own_database: str) -> None:
    # A log written before the chain existed, append-only already.
    old = PlantApplication(TagCatalog([]), env=event_store_env(own_database))
    try:
        PlantLog(own_database, old).write(10, events_per_save=5)
    finally:
        old.close()
    install_append_only_guard(own_database, EVENTS_TABLE)

    app = open_application(own_database, TagCatalog([]))  # installs the chain: backfill
    log = PlantLog(own_database, app)
    try:
        assert_one_chain(log, 50)
        log.write(5, events_per_save=2)
        assert_one_chain(log, 60)
        assert log.verify().intact
    finally:
        app.close()
    # The guard is back on after the backfill.
    with (
        psycopg.connect(own_database) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(sql.SQL("UPDATE {} SET state = state").format(TABLE))


def _chain_state(url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT notification_id, chain_prev, chain_hash, state FROM {}"
                " ORDER BY notification_id"
            ).format(TABLE)
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname, tgenabled, tgtype FROM pg_trigger"
            " WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname",
            (EVENTS_TABLE,),
        ).fetchall()
    return rows, triggers


def test_installing_again_changes_nothing_and_hides_nothing(plant_log: PlantLog) -> None:
    plant_log.write(10)
    # A row slipped in with the triggers off has no hash; a restart must not give it one.
    plant_log.tamper(
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " VALUES (gen_random_uuid(), 1, 'forged', 'x'::bytea)"
    )
    before = _chain_state(plant_log.url)

    install_hash_chain(plant_log.url, EVENTS_TABLE)
    open_application(plant_log.url, TagCatalog([])).close()

    assert _chain_state(plant_log.url) == before
    report = plant_log.verify()
    assert [(f.kind, f.position) for f in report.findings] == [("unchained", 51)]
