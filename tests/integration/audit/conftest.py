"""A plant's event log in a database of its own, and the means of a superuser to tamper with it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from audit.chain_check import ExpectedHead, Report, verify_database
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from eventstore.chain import ChainRow, iter_chain_rows
from plantcore.open_application import EVENTS_TABLE, open_application

TABLE = sql.Identifier(EVENTS_TABLE)


class Tank(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name


@dataclass
class PlantLog:
    url: str
    app: PlantApplication

    def write(self, saves: int, events_per_save: int = 5) -> None:
        """``saves`` transactions, each one multi-row insert of ``events_per_save`` events."""
        for n in range(saves):
            tank = Tank(f"T-{n}")
            for m in range(events_per_save - 1):
                tank.rename(f"T-{n}-{m} µ")
            self.app.save(tank)

    def rows(self) -> list[ChainRow]:
        with psycopg.connect(self.url) as conn:
            return list(iter_chain_rows(conn, EVENTS_TABLE))

    def verify(self, expected: list[ExpectedHead] | None = None) -> Report:
        return verify_database(self.url, EVENTS_TABLE, expected=expected or [])

    def tamper(self, statement: str, params: Any = None, *, chain_trigger_on: bool = False) -> None:
        """Run ``statement`` as the superuser, with the guard (and the chain trigger) off."""
        which = "plantcore_append_only_rows" if chain_trigger_on else "USER"
        toggle = sql.SQL(which) if which == "USER" else sql.Identifier(which)
        with psycopg.connect(self.url) as conn:
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(TABLE, toggle))
            conn.execute(sql.SQL(statement).format(table=TABLE), params)
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(TABLE, toggle))

    def leave_a_gap(self) -> None:
        """An insert that rolls back: its position is never used (not tampering)."""
        with psycopg.connect(self.url) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state)"
                    " VALUES (gen_random_uuid(), 1, 'rolled back', '{{}}')"
                ).format(TABLE)
            )
            conn.rollback()


@pytest.fixture
def plant_log(own_database: str) -> Iterator[PlantLog]:
    app = open_application(own_database, TagCatalog([]))
    yield PlantLog(own_database, app)
    app.close()
