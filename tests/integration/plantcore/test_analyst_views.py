"""The analyst's SQL: the views ``plantcore db init`` makes, and nothing else to read.

Each test runs ``db init`` on a database of its own (``plant_roles``), writes
as the runtime does (samples, the alarm journal, commands through the
aggregate), then connects as the analyst role: the views show what was written,
with each command's status as the aggregate has it, and every table, the event
store's first, is refused, as is any write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from domain.catalog import TagCatalog
from domain.command import (
    MAX_CONFIRMATION_ATTEMPTS,
    CommandStatus,
    ConfirmationFailure,
    ControlCommand,
    RejectionReason,
)
from plantcore.db_init import RUNTIME_TABLES, InitialisedDatabase
from plantcore.open_application import open_application
from projections.history_views import RAW_COLUMNS, ROLLUP_COLUMNS

ANALYST_VIEWS = ("history_raw", "history_1m", "history_1h", "alarm_events", "command_list")

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=1)


def _requested(value: object = 900) -> ControlCommand:
    return ControlCommand.request(
        device="press-1", tag="speed_setpoint", value=value, actor="ana", at=T0
    )


def _challenged() -> ControlCommand:
    command = _requested()
    command.issue_challenge(expires_at=T0 + timedelta(seconds=30), actor="ana", at=T0)
    return command


def _confirmed(*, approval: bool = False) -> ControlCommand:
    command = _challenged()
    until = T0 + timedelta(minutes=5) if approval else None
    command.confirm(signer_name="Ana", approval_until=until, actor="ana", at=T0)
    return command


def _rejected() -> ControlCommand:
    command = _requested()
    command.reject(reason=RejectionReason.NOT_WRITABLE, detail="read-only", actor="ana", at=T0)
    return command


def _failed_once() -> ControlCommand:
    command = _challenged()
    command.fail_confirmation(reason=ConfirmationFailure.WRONG_CODE, actor="ana", at=T0)
    return command


def _failed_finally() -> ControlCommand:
    command = _challenged()
    for _ in range(MAX_CONFIRMATION_ATTEMPTS):
        command.fail_confirmation(reason=ConfirmationFailure.WRONG_CODE, actor="ana", at=T0)
    return command


def _approval_refused() -> ControlCommand:
    command = _confirmed(approval=True)
    command.refuse_approval(reason="requester", actor="ana", at=T0)
    return command


def _succeeded_after_approval() -> ControlCommand:
    command = _confirmed(approval=True)
    command.approve(signer_name="Bo", actor="bo", at=T0)
    command.dispatch(actor="dispatcher", at=T0)
    command.write_succeeded(read_back=900, actor="dispatcher", at=LATER)
    return command


def _declined() -> ControlCommand:
    command = _confirmed(approval=True)
    command.decline(reason="not now", actor="bo", at=T0)
    return command


def _cancelled() -> ControlCommand:
    command = _confirmed()
    command.cancel(actor="ana", at=T0)
    return command


def _write_failed() -> ControlCommand:
    command = _confirmed()
    command.dispatch(actor="dispatcher", at=T0)
    command.write_failed(reason="timeout", actor="dispatcher", at=LATER)
    return command


def _expired() -> ControlCommand:
    command = _challenged()
    command.expire(actor="system", at=T0 + timedelta(minutes=1))
    return command


PATHS: list[Callable[[], ControlCommand]] = [
    _requested,
    _challenged,
    _rejected,
    _failed_once,
    _failed_finally,
    _approval_refused,
    _succeeded_after_approval,
    _declined,
    _cancelled,
    _write_failed,
    _expired,
]


def _analyst_rows(plant_roles: InitialisedDatabase, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(plant_roles.analyst_url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def test_the_command_list_shows_each_command_with_the_status_its_aggregate_has(
    plant_roles: InitialisedDatabase,
) -> None:
    commands = [path() for path in PATHS]
    app = open_application(plant_roles.runtime_url, TagCatalog([]))
    try:
        app.save(*commands)
    finally:
        app.close()
    # Every path ends in a status of its own, so a wrong mapping cannot hide behind another.
    assert len({command.status for command in commands}) >= len(CommandStatus) - 2

    rows = _analyst_rows(
        plant_roles,
        "SELECT command_id, status, device, tag, value, requested_by, requested_at,"
        " reason, read_back, approved_by FROM command_list",
    )

    listed = {row[0]: row[1:] for row in rows}
    assert listed == {
        command.id: (
            command.status.value,
            "press-1",
            "speed_setpoint",
            900,
            "ana",
            T0,
            command.reason,
            command.read_back,
            command.approved_by,
        )
        for command in commands
    }


def test_history_and_the_alarm_journal_read_as_written(
    plant_roles: InitialisedDatabase,
) -> None:
    alarm_id = uuid.uuid4()
    with psycopg.connect(plant_roles.runtime_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO samples (time, device, tag, value, quality)"
            " VALUES (%s, 'press-1', 'speed', 1200.5, 'good')",
            (T0,),
        )
        conn.execute(
            "INSERT INTO alarm_journal (position, alarm_id, device, condition, area, priority,"
            " event, actor, at, detail) VALUES (7, %s, 'press-1', 'overspeed', 'hall-a', 'high',"
            " 'Raised', 'system', %s, %s)",
            (alarm_id, T0, json.dumps({"value": 1300})),
        )

    assert _analyst_rows(
        plant_roles, "SELECT time, device, tag, value, quality FROM history_raw"
    ) == [(T0, "press-1", "speed", 1200.5, "good")]
    assert _analyst_rows(
        plant_roles,
        "SELECT position, at, device, area, condition, priority, event, actor, alarm_id, detail"
        " FROM alarm_events",
    ) == [
        (
            7,
            T0,
            "press-1",
            "hall-a",
            "overspeed",
            "high",
            "Raised",
            "system",
            alarm_id,
            {"value": 1300},
        )
    ]


def test_the_analyst_reads_no_table_and_writes_nothing(plant_roles: InitialisedDatabase) -> None:
    with psycopg.connect(plant_roles.analyst_url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
            )
        ]
        views = [
            name
            for (name,) in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'"
            )
        ]
        # PostgreSQL would write through a view of one table: the privileges are what stops it.
        updatable = [
            name
            for (name,) in conn.execute(
                "SELECT table_name::text FROM information_schema.views"
                " WHERE table_schema = 'public' AND is_updatable = 'YES'"
            )
        ]
        writable = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace"
            " AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER')"
        ).fetchall()
    assert writable == []
    # Every table of the plant, partitions too, and each view the analyst is given.
    assert set(RUNTIME_TABLES) <= set(tables)
    assert set(ANALYST_VIEWS) <= set(views)
    assert {"history_raw", "alarm_events"} <= set(updatable)

    refused = [
        *(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.SQL(table)) for table in tables),
        *(
            sql.SQL(statement).format(sql.SQL(view))
            for view in updatable
            for statement in ("DELETE FROM {}", "UPDATE {} SET device = device")
        ),
        sql.SQL(
            "INSERT INTO history_raw (time, device, tag, value, quality)"
            " VALUES (now(), 'd', 't', 1, 'good')"
        ),
        sql.SQL("CREATE TABLE analyst_notes (note text)"),
        sql.SQL("CREATE VIEW analyst_samples AS SELECT 1"),
    ]
    allowed = []
    with psycopg.connect(plant_roles.analyst_url, autocommit=True) as conn:
        for statement in refused:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            allowed.append(statement.as_string(conn))
    assert allowed == []


def test_the_history_views_have_the_documented_columns(plant_roles: InitialisedDatabase) -> None:
    with psycopg.connect(plant_roles.analyst_url, autocommit=True) as conn:
        columns = {
            view: tuple(
                column.name
                for column in conn.execute(
                    sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(view))
                ).description
                or ()
            )
            for view in ("history_raw", "history_1m", "history_1h")
        }
    assert columns == {
        "history_raw": RAW_COLUMNS,
        "history_1m": ROLLUP_COLUMNS,
        "history_1h": ROLLUP_COLUMNS,
    }
