"""A superuser switches the guard off and tampers with the log; the verifier says where and how.

Each attack is what someone who owns the database can do: ``ALTER TABLE …
DISABLE TRIGGER USER`` (the guard and the chain trigger both off), change
rows, switch the triggers back on.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from audit.chain_check import Kind
from audit.checkpoints import CheckpointWriter, generate_signing_key, sign_head
from eventstore.chain import ZERO_HASH, link_hash, row_hash
from plantcore.open_application import EVENTS_TABLE
from tests.integration.audit.conftest import TABLE, PlantLog

pytestmark = pytest.mark.integration


def located(log: PlantLog, **options: object) -> list[tuple[str, int]]:
    report = log.verify(**options)  # type: ignore[arg-type]
    return [(finding.kind, finding.position) for finding in report.findings]


def test_a_changed_payload_is_located(plant_log: PlantLog) -> None:
    plant_log.write(40)
    plant_log.tamper(
        "UPDATE {table} SET state = convert_to('{{\"name\": \"nothing happened\"}}', 'UTF8')"
        " WHERE notification_id = 123"
    )
    report = plant_log.verify()
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.CHANGED, 123)]
    assert "payload, topic, version or aggregate was changed" in report.findings[0].explanation


def test_a_deleted_row_is_located(plant_log: PlantLog) -> None:
    plant_log.write(40)
    plant_log.tamper("DELETE FROM {table} WHERE notification_id = 77")
    assert located(plant_log) == [(Kind.MISSING, 77)]


def _forged_row_at(log: PlantLog, position: int) -> tuple[object, ...]:
    """An event at ``position`` with the chain fields an attacker would compute."""
    with psycopg.connect(log.url) as conn:
        before = conn.execute(
            sql.SQL(
                "SELECT notification_id, chain_hash, originator_id FROM {}"
                " WHERE notification_id < %s ORDER BY notification_id DESC LIMIT 1"
            ).format(TABLE),
            (position,),
        ).fetchone()
    assert before is not None
    prev_position, prev_hash, originator = before
    topic, state = "tests:Tank.Renamed", b'{"name": "forged"}'
    forged_hash = link_hash(bytes(prev_hash), position, originator, 99, topic, state)
    return (position, originator, 99, topic, state, prev_position, forged_hash)


_INSERT_FORGED = (
    "INSERT INTO {table} (notification_id, originator_id, originator_version, topic, state,"
    " chain_prev, chain_hash) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def test_a_row_forged_into_a_gap_is_located(plant_log: PlantLog) -> None:
    plant_log.write(20)  # positions 1-100
    plant_log.leave_a_gap()  # 101: a rolled-back insert, not tampering
    plant_log.write(20)  # 102-201
    assert plant_log.verify().intact

    plant_log.tamper(_INSERT_FORGED, _forged_row_at(plant_log, 101))
    report = plant_log.verify()
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.INSERTED, 101)]
    assert "the event at position 102 links to position 100" in report.findings[0].explanation


def test_the_chain_trigger_left_on_moves_a_forged_row_to_the_head(plant_log: PlantLog) -> None:
    plant_log.write(20)
    plant_log.leave_a_gap()  # 101
    plant_log.write(20)  # 102-201
    position, originator, version, topic, state, *_ = _forged_row_at(plant_log, 101)

    # Only the guard off: the chain trigger sees the row and will not chain it mid-log.
    plant_log.tamper(
        "INSERT INTO {table} (notification_id, originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s, %s)",
        (position, originator, version, topic, state),
        chain_trigger_on=True,
    )
    rows = plant_log.rows()
    assert [row.position for row in rows if row.version == 99] == [rows[-1].position]
    assert rows[-1].position > 201
    assert rows[-1].chain_prev == 201
    # Appended and chained like any event: the chain proves order and integrity,
    # not who wrote a row (that is the database's privileges).
    assert plant_log.verify().intact


def test_two_swapped_rows_are_located_by_both_positions(plant_log: PlantLog) -> None:
    plant_log.write(40)
    # Exchange the positions of 50 and 53 (by way of a free one: notification_id is unique).
    plant_log.tamper(
        "UPDATE {table} SET notification_id = CASE notification_id"
        " WHEN 50 THEN -1 WHEN 53 THEN 50 END WHERE notification_id IN (50, 53)"
    )
    plant_log.tamper("UPDATE {table} SET notification_id = 53 WHERE notification_id = -1")
    # And the events (aggregate, version, topic, state) of 120 and 121, chain columns left.
    plant_log.tamper(
        "UPDATE {table} SET originator_version = -originator_version"
        " WHERE notification_id IN (120, 121)"
    )
    plant_log.tamper(
        "UPDATE {table} AS x SET originator_id = y.originator_id,"
        " originator_version = -y.originator_version, topic = y.topic, state = y.state"
        " FROM {table} AS y"
        " WHERE (x.notification_id, y.notification_id) IN ((120, 121), (121, 120))"
    )

    report = plant_log.verify()
    assert [(f.kind, f.positions) for f in report.findings] == [
        (Kind.REORDERED, (50, 53)),
        (Kind.REORDERED, (120, 121)),
    ]
    assert "swapped" in report.findings[0].explanation


def _rewrite_from(log: PlantLog, position: int) -> None:
    """Change the event at ``position`` and recompute every hash after it: a consistent chain."""
    log.tamper(
        "UPDATE {table} SET state = convert_to('{{\"name\": \"rewritten\"}}', 'UTF8')"
        " WHERE notification_id = %s",
        (position,),
    )
    rows = log.rows()
    start = next(index for index, row in enumerate(rows) if row.position == position)
    prev_hash = rows[start - 1].chain_hash or ZERO_HASH
    with psycopg.connect(log.url) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(TABLE))
        for row in rows[start:]:
            prev_hash = row_hash(prev_hash, row)
            conn.execute(
                sql.SQL("UPDATE {} SET chain_hash = %s WHERE notification_id = %s").format(TABLE),
                (prev_hash, row.position),
            )
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(TABLE))


async def test_a_consistently_rewritten_chain_is_caught_by_a_signed_checkpoint(
    plant_log: PlantLog, tmp_path: Path
) -> None:
    key = generate_signing_key()
    writer = CheckpointWriter(tmp_path / "checkpoints.jsonl")
    plant_log.write(20)  # 1-100
    first = await sign_head(plant_log.url, EVENTS_TABLE, key, writer)
    plant_log.write(20)  # 101-200
    second = await sign_head(plant_log.url, EVENTS_TABLE, key, writer)
    assert first is not None
    assert second is not None
    assert (first.position, second.position) == (100, 200)

    _rewrite_from(plant_log, 150)

    assert plant_log.verify().intact  # the chain alone cannot tell
    expected = [first.as_expected(), second.as_expected()]
    report = plant_log.verify(expected=expected)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.CHECKPOINT_MISMATCH, 200)]
    assert "rewritten after position 100" in report.findings[0].explanation


async def test_an_append_after_the_last_checkpoint_is_beyond_its_reach(
    plant_log: PlantLog, tmp_path: Path
) -> None:
    """The honest limit: a well-formed row appended after the last checkpoint verifies."""
    key = generate_signing_key()
    plant_log.write(10)  # 1-50
    checkpoint = await sign_head(
        plant_log.url, EVENTS_TABLE, key, CheckpointWriter(tmp_path / "c.jsonl")
    )
    assert checkpoint is not None
    plant_log.tamper(_INSERT_FORGED, _forged_row_at(plant_log, 51))

    assert plant_log.verify(expected=[checkpoint.as_expected()]).intact
    # Removing rows checkpointed before is caught, though.
    plant_log.tamper("DELETE FROM {table} WHERE notification_id >= 50")
    assert located(plant_log, expected=[checkpoint.as_expected()]) == [(Kind.MISSING, 50)]
