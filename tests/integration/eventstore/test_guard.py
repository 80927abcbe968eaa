"""The events table refuses UPDATE, DELETE and TRUNCATE for every role; INSERT still works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env
from tests.support import unique

pytestmark = pytest.mark.integration

Row = tuple[uuid.UUID, int, str, bytes]


class Tank(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name


@dataclass
class Store:
    app: Application[uuid.UUID]
    table: str


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    # A throwaway Application class per test: the library names the table after it.
    name = unique("GuardTest").replace("-", "_")
    app_class = type(name, (Application,), {"name": name})
    app: Application[uuid.UUID] = app_class(env=event_store_env(database_url))
    table = f"{name.lower()}_events"
    yield Store(app, table)
    app.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.fixture
def granted_role(database_url: str, store: Store) -> Iterator[str]:
    """A fresh non-superuser role holding every privilege on the events table."""
    role = unique("guard_role").replace("-", "_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT ALL ON {} TO {}").format(
                sql.Identifier(store.table), sql.Identifier(role)
            )
        )
    yield role
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _rows(database_url: str, table: str) -> list[Row]:
    with psycopg.connect(database_url) as conn:
        query = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} "
            "ORDER BY originator_id, originator_version"
        ).format(sql.Identifier(table))
        return conn.execute(query).fetchall()


def _tampering(table: str) -> list[sql.Composed]:
    table_id = sql.Identifier(table)
    return [
        sql.SQL("UPDATE {} SET state = 'forged'::bytea").format(table_id),
        sql.SQL("DELETE FROM {}").format(table_id),
        sql.SQL("TRUNCATE {}").format(table_id),
    ]


def _assert_refused(database_url: str, table: str, role: str | None) -> None:
    for statement in _tampering(table):
        with psycopg.connect(database_url) as conn:
            if role is not None:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(statement)
            assert f"plantcore: {table} is append-only" in str(refused.value)


def test_event_store_env_persists_with_the_library(store: Store) -> None:
    tank = Tank(name="T-101")
    tank.rename("T-102")
    store.app.save(tank)

    assert store.app.repository.get(tank.id).name == "T-102"


def test_update_delete_truncate_are_refused_for_every_role(
    database_url: str, store: Store, granted_role: str
) -> None:
    tank = Tank(name="T-101")
    store.app.save(tank)
    install_append_only_guard(database_url, store.table)
    install_append_only_guard(database_url, store.table)  # idempotent
    before = _rows(database_url, store.table)

    _assert_refused(database_url, store.table, role=None)  # the superuser owner
    _assert_refused(database_url, store.table, role=granted_role)

    assert _rows(database_url, store.table) == before
    tank.rename("T-102")
    store.app.save(tank)  # appending still works through the library
    assert len(_rows(database_url, store.table)) == len(before) + 1
    assert store.app.repository.get(tank.id).name == "T-102"
