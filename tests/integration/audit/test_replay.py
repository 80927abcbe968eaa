"""Reading the record back on the real PostgreSQL (and Redis): replays, read models, timelines.

Each test has a database of its own (``own_database``): an event store, live
alarm read models and a live Redis hash that no other test touches.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import redis.asyncio as aioredis
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from audit.read_models import SCRATCH_KEY_PREFIX, Difference, format_report, rebuild_and_compare
from audit.replay import (
    REDACTED,
    AggregateNotFound,
    AuditRecord,
    EventFilter,
    NotYetRecorded,
    aggregate_at,
    select_events,
)
from domain.alarm import alarm_id
from domain.alarm_flood import flood_id
from domain.application import PlantApplication
from domain.command import ControlCommand
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from domain.operator import Operator, operator_id
from domain.operator_directory import directory_id
from domain.plant_configuration import configuration_id
from domain.plant_mode import Mode, plant_mode_id
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.tracking import TrackedPosition
from plantcore.audit_inspect import add_inspect_commands, run_inspect_command
from plantcore.open_application import open_application
from plantcore.settings import Settings
from projections.alarm_views import AlarmViews, ensure_alarm_schema
from tests.conftest import TEST_REDIS_URL
from tests.support import eventually, unique
from tests.unit.domain.secured_plant import PEOPLE, secured_catalog

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$never-printed-hash"
SEALED = "sealed:never-printed-totp-secret"
REFRESH_HASH = "never-printed-refresh-hash"


def register_people(app: PlantApplication) -> None:
    """The secured plant's people (ana and carl on pump1, bob everywhere, …), at ``T0``."""
    for username, full_name, role, scope in PEOPLE:
        app.register_operator(
            username=username, full_name=full_name, roles=[role], password_hash=PASSWORD_HASH,
            totp_secret_sealed=SEALED, actor="admin", at=T0,
        )  # fmt: skip
        app.grant_permission(username=username, scope=scope, actor="admin", at=T0)


@pytest.fixture
def app(own_database: str) -> Iterator[PlantApplication]:
    application = open_application(own_database, secured_catalog(), plant_id="north-plant")
    try:
        register_people(application)
        yield application
    finally:
        application.close()


def state_of(
    app: PlantApplication, aggregate: UUID, at: datetime | None = None, version: int | None = None
) -> dict[str, Any]:
    state = aggregate_at(app, aggregate, at=at, version=version)
    assert json.loads(json.dumps(state)) == state  # plain JSON, as printed
    return dict(state)


# -- an aggregate at a time ----------------------------------------------------------------------


def test_a_command_replayed_mid_life_awaits_confirmation_and_at_the_end_succeeded(
    app: PlantApplication,
) -> None:
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=1500, at=T0)
    command = ticket.command_id
    app.confirm_command(actor="ana", command_id=command, totp_step=100, at=T0 + 10 * SECOND)
    app.record_dispatch(command, T0 + 11 * SECOND)
    app.record_write_succeeded(command, 1500, T0 + 12 * SECOND)

    waiting = state_of(app, command, at=T0 + 5 * SECOND)
    assert (waiting["aggregate_type"], waiting["version"]) == ("ControlCommand", 2)
    assert waiting["state"] == {
        **waiting["state"],
        "status": "awaiting_confirmation",
        "device": "pump1",
        "tag": "speed",
        "value": 1500,
        "requested_by": "ana",
        "read_back": None,
        "expires_at": (T0 + timedelta(seconds=30)).isoformat(),
        "is_terminal": False,
    }
    assert waiting["last_event"] == {
        **waiting["last_event"],
        "type": "ChallengeIssued",
        "version": 2,
        "actor": "ana",
        "at": T0.isoformat(),
    }

    done = state_of(app, command, at=T0 + 12 * SECOND)
    assert done["version"] == 5
    assert done["state"]["status"] == "succeeded"
    assert done["state"]["read_back"] == 1500
    assert done["last_event"]["type"] == "WriteSucceeded"
    # Now is the end; a version cuts like a time does.
    assert state_of(app, command) == {**done, "as_of": None}
    assert state_of(app, command, version=3)["state"]["status"] == "confirmed"
    assert state_of(app, command, at=T0 + 60 * SECOND, version=2) == {
        **waiting,
        "as_of": (T0 + 60 * SECOND).isoformat(),
    }
    with pytest.raises(NotYetRecorded):
        aggregate_at(app, command, at=T0 - SECOND)
    with pytest.raises(AggregateNotFound):
        aggregate_at(app, uuid4())


def test_an_operator_before_a_role_was_granted_lacks_it_and_secrets_never_show(
    app: PlantApplication,
) -> None:
    granted_at = T0 + timedelta(hours=1)
    app.grant_role(username="ana", role="supervisor", actor="admin", at=granted_at)
    app.log_in(
        username="ana", password_matches=True, source="10.0.0.7", session_id="s-1",
        refresh_hash=REFRESH_HASH, at=granted_at + timedelta(minutes=5),
    )  # fmt: skip
    ana = operator_id("ana")

    before = state_of(app, ana, at=granted_at - SECOND)
    after = state_of(app, ana, at=granted_at)
    logged_in = state_of(app, ana)

    assert before["state"]["roles"] == ["operator"]
    assert after["state"]["roles"] == ["operator", "supervisor"]
    assert after["last_event"]["type"] == "RoleGranted"
    assert after["last_event"]["actor"] == "admin"
    assert logged_in["last_event"]["type"] == "LoginSucceeded"
    for state in (before, after, logged_in):
        inner = state["state"]
        assert isinstance(inner, dict)
        assert (inner["password_hash"], inner["totp_secret_sealed"]) == (REDACTED, REDACTED)
        assert inner["full_name"] == "Ana Gil"
        printed = json.dumps(state)
        for secret in (PASSWORD_HASH, SEALED, REFRESH_HASH):
            assert secret not in printed
    assert logged_in["last_event"]["payload"]["refresh_hash"] == REDACTED
    assert logged_in["last_event"]["payload"]["source"] == "10.0.0.7"


def test_upcast_events_of_the_first_release_replay_too(app: PlantApplication) -> None:
    clear_secret = "JBSWY3DPEHPK3PXP"
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=operator_id("olga"),
                originator_version=1,
                topic=get_topic(Operator.Registered),
                state=app.mapper.transcoder.encode(
                    {
                        "timestamp": T0, "originator_topic": get_topic(Operator),
                        "username": "olga", "full_name": "Olga Vidal", "role": "supervisor",
                        "password_hash": PASSWORD_HASH, "totp_secret": clear_secret,
                        "actor": "admin", "at": T0,
                    }
                ),
            )
        ]
    )  # fmt: skip
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=10, at=T0)
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=ticket.command_id,
                originator_version=3,
                topic=get_topic(ControlCommand.Confirmed),
                state=app.mapper.transcoder.encode(
                    {"timestamp": T0, "method": "totp", "actor": "ana", "at": T0 + SECOND}
                ),
            )
        ]
    )

    olga = state_of(app, operator_id("olga"), at=T0)
    confirmed = state_of(app, ticket.command_id, at=T0 + SECOND)

    assert olga["state"]["roles"] == ["supervisor"]
    assert olga["state"]["totp_secret_sealed"] == REDACTED
    assert clear_secret not in json.dumps(olga)
    assert confirmed["state"]["status"] == "confirmed"
    payload = confirmed["last_event"]["payload"]
    assert (payload["meaning"], payload["signer_name"], payload["emergency"]) == (
        "execution",
        "",
        False,
    )


def test_every_kind_of_aggregate_replays(app: PlantApplication) -> None:
    later = T0 + timedelta(minutes=1)
    app.record_alarm_transitions(
        [alarm_transition("press", f"c{i}", active=True, area="hall", ts=later) for i in range(11)],
        later,
    )
    ticket = app.request_command(actor="ana", device="pump1", tag="running", value=False, at=later)
    app.set_plant_mode(mode=Mode.READ_ONLY, reason="audit", actor="bob", at=later)
    app.record_plant_configuration(
        plant_id="north-plant", devices={"pump1": "f1"}, source="plant.yaml", problems=[],
        actor="plantcore", at=later,
    )  # fmt: skip
    ids = {
        "Alarm": alarm_id("press", "c0"),
        "AlarmFlood": flood_id("hall"),
        "ControlCommand": ticket.command_id,
        "Operator": operator_id("bob"),
        "OperatorDirectory": directory_id("north-plant"),
        "PlantConfiguration": configuration_id("north-plant"),
        "PlantMode": plant_mode_id("north-plant"),
    }

    states = {kind: state_of(app, aggregate) for kind, aggregate in ids.items()}

    assert {kind: state["aggregate_type"] for kind, state in states.items()} == {
        kind: kind for kind in ids
    }
    assert states["Alarm"]["state"]["state"] == "unack_active"
    assert states["AlarmFlood"]["state"]["flooding"] is True
    assert states["PlantMode"]["state"]["mode"] == "read_only"
    assert states["PlantConfiguration"]["state"]["devices"] == {"pump1": "f1"}
    assert "ana" in states["OperatorDirectory"]["state"]["usernames"]
    assert states["ControlCommand"]["state"]["emergency"] is True


# -- events by filter ------------------------------------------------------------------------------


def test_the_sql_filters_select_what_the_in_memory_store_selects(app: PlantApplication) -> None:
    """The same story on PostgreSQL (filtered in SQL) and in memory (filtered in Python)."""
    memory = PlantApplication(secured_catalog(), plant_id="north-plant")
    register_people(memory)
    for application in (app, memory):
        ticket = application.request_command(
            actor="ana", device="pump1", tag="speed", value=5, at=T0 + SECOND
        )
        application.confirm_command(
            actor="ana", command_id=ticket.command_id, totp_step=9, at=T0 + 2 * SECOND
        )
        application.grant_role(username="ana", role="supervisor", actor="bob", at=T0 + 3 * SECOND)
    filters = [
        EventFilter(actor="ana"),
        EventFilter(actor="bob", since=T0 + SECOND),
        EventFilter(event_type="Confirmed"),
        EventFilter(event_type="Operator.RoleGranted"),
        EventFilter(since=T0 + 2 * SECOND, until=T0 + 3 * SECOND),
        EventFilter(aggregate_id=operator_id("ana"), until=T0 + SECOND),
    ]

    def without_timestamp(record: AuditRecord) -> str:
        """The fields as recorded, but the library's timestamp: when each store wrote it."""
        return json.dumps({k: v for k, v in record.payload.items() if k != "timestamp"})

    def selected(application: PlantApplication, where: EventFilter) -> list[tuple[object, ...]]:
        return [
            (r.aggregate_type, r.event_type, r.version, r.actor, r.at, without_timestamp(r))
            for r in select_events(application, where, limit=100)
            if r.event_type != "Requested"  # its device/value are the same; ids are not
        ]

    for where in filters:
        found = selected(app, where)
        assert found, where
        assert found == selected(memory, where), where
    # A page starts after a position and stops at its limit.
    first, second = select_events(app, EventFilter(actor="ana"), limit=2)
    assert [
        r.position
        for r in select_events(app, EventFilter(actor="ana"), after=first.position, limit=1)
    ] == [second.position]


# -- the read models rebuilt -----------------------------------------------------------------------


def alarm_transition(
    device: str,
    condition: str,
    *,
    active: bool,
    ts: datetime,
    area: str = "press-line",
    latch: bool = False,
) -> AlarmTransition:
    return AlarmTransition(
        transition_id=uuid4().hex, device=device, condition=condition, kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH, area=area, tag="motor_temperature", active=active,
        suppressed=False, latch=latch, value=51.5 if active else 46.0, limit=48.0,
        message="motor temperature high", ts=ts,
    )  # fmt: skip


@dataclass
class LivePlant:
    app: PlantApplication
    store_executor: StoreExecutor
    pool: asyncpg.Pool
    redis: aioredis.Redis
    database_url: str
    active_key: str


@pytest.fixture
async def live(own_database: str, redis_client: aioredis.Redis) -> AsyncIterator[LivePlant]:
    store_executor = StoreExecutor()
    app = await store_executor.call(
        partial(open_application, own_database, secured_catalog(), plant_id="north-plant")
    )
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=4)
    key = unique("audit-test:alarms:active")
    try:
        await store_executor.call(register_people, app)
        yield LivePlant(app, store_executor, pool, redis_client, own_database, key)
    finally:
        await redis_client.delete(key)
        await pool.close()
        app.close()
        store_executor.shutdown()


async def script_alarms(plant: LivePlant) -> dict[str, UUID]:
    """A shift of alarms, with commands and logins between them, through the recorder's use case."""
    app, call = plant.app, plant.store_executor.call
    t = T0 + timedelta(minutes=1)
    cooled, standing, latching = (alarm_id("press-1", c) for c in ("hot", "cold", "stuck"))

    async def record(*transitions: AlarmTransition) -> None:
        await call(app.record_alarm_transitions, list(transitions), t)

    await record(
        alarm_transition("press-1", "hot", active=True, ts=t),
        alarm_transition("press-1", "cold", active=True, ts=t),
        alarm_transition("press-1", "stuck", active=True, ts=t, latch=True),
    )
    await call(
        partial(app.request_command, actor="ana", device="pump1", tag="speed", value=9, at=t)
    )
    t += timedelta(minutes=1)
    await call(partial(app.acknowledge_alarm, alarm_id=cooled, actor="ana", comment="fan on", at=t))
    await record(
        alarm_transition("press-1", "hot", active=False, ts=t),
        alarm_transition("press-1", "stuck", active=False, ts=t, latch=True),
    )
    shelve = partial(app.shelve_alarm, duration=timedelta(hours=1), at=t)
    await call(shelve, alarm_id=standing, actor="bob", reason="sensor swap")
    # A flood in the hall: eleven alarms at once, then its end once they are quiet.
    t += timedelta(minutes=1)
    await record(
        *(alarm_transition("hall-1", f"h{i}", active=True, ts=t, area="hall") for i in range(11))
    )
    await call(app.end_alarm_flood_if_over, "hall", t + timedelta(minutes=30))
    return {"cooled": cooled, "standing": standing, "latching": latching}


async def follow_live(plant: LivePlant) -> None:
    """Run the live alarm views, as the plant core does, until they applied the whole log."""
    await ensure_alarm_schema(plant.pool)
    tracking = await plant.store_executor.call(plant.app.factory.tracking_recorder)
    views = AlarmViews(
        plant.app, plant.store_executor, plant.pool, plant.redis,
        TrackedPosition(tracking, plant.store_executor, "alarm-views"), active_key=plant.active_key,
    )  # fmt: skip
    tail = LogTail(plant.app, plant.store_executor, followers=[views], poll_interval=0.05)
    last_alarm_event: int = await plant.pool.fetchval(
        "SELECT max(notification_id) FROM plantapplication_events"
        " WHERE topic LIKE 'domain.alarm:Alarm.%'"
        " OR topic LIKE 'domain.alarm_flood:AlarmFlood.Flood%'"
    )
    tasks = [asyncio.create_task(tail.run()), asyncio.create_task(views.run())]
    try:

        async def caught_up() -> None:
            assert views.applied >= last_alarm_event

        await eventually(caught_up)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_rebuilt_read_models_equal_the_live_ones_and_a_corruption_shows(
    live: LivePlant,
) -> None:
    alarms = await script_alarms(live)
    await follow_live(live)
    compare = partial(
        rebuild_and_compare,
        live.app,
        live.database_url,
        live.redis,
        store_executor=live.store_executor,
        live_active_key=live.active_key,
    )

    report = await compare()

    assert report.equal, format_report(report)
    counts = {m.model: (m.live_rows, m.rebuilt_rows) for m in report.models}
    assert counts["alarm_current"] == (14, 14)
    journal = await live.pool.fetchval("SELECT count(*) FROM alarm_journal")
    assert counts["alarm_journal"] == (journal, journal)
    # Not normal: the standing one (shelved), the latched one, the eleven of the hall.
    assert counts[f"redis {live.active_key}"] == (13, 13)
    assert "EQUAL" in format_report(report)
    # The scratch space is gone.
    scratch = await live.pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'audit\\_rebuild\\_%'"
    )
    assert scratch == 0
    assert [k async for k in live.redis.scan_iter(SCRATCH_KEY_PREFIX + "*")] == []

    # Someone edits the live views by hand: each edit is reported.
    standing = str(alarms["standing"])
    await live.pool.execute(
        "UPDATE alarm_current SET state = 'normal' WHERE alarm_id = $1", alarms["standing"]
    )
    acknowledged = await live.pool.fetchval(
        "DELETE FROM alarm_journal WHERE event = 'Acknowledged' RETURNING position"
    )
    cached = json.loads(await live.redis.hget(live.active_key, str(alarms["latching"])) or "{}")
    await live.redis.hset(
        live.active_key, str(alarms["latching"]), json.dumps({**cached, "state": "normal"})
    )

    corrupted = await compare()

    assert not corrupted.equal
    found = {(d.model, d.key, d.column): d for d in corrupted.differences}
    assert found[("alarm_current", standing, "state")] == Difference(
        "alarm_current", standing, "state", "normal", "shelved"
    )
    missing = found[("alarm_journal", str(acknowledged), "(row)")]
    assert missing.live is None
    assert isinstance(missing.rebuilt, dict)
    assert (missing.rebuilt["event"], missing.rebuilt["actor"]) == ("Acknowledged", "ana")
    redis_model = f"redis {live.active_key}"
    assert found[(redis_model, str(alarms["latching"]), "state")].live == "normal"
    assert found[(redis_model, str(alarms["latching"]), "state")].rebuilt == "latched"
    assert {m.model: m.differing_rows for m in corrupted.models} == {
        "alarm_current": 1,
        "alarm_journal": 1,
        redis_model: 1,
    }
    text = format_report(corrupted)
    assert "DIFFERENT" in text
    assert f'alarm_current [{standing}] state: live "normal" | rebuilt "shelved"' in text


async def test_a_plant_that_moved_on_is_compared_where_its_views_stand(live: LivePlant) -> None:
    alarms = await script_alarms(live)
    await follow_live(live)
    compare = partial(
        rebuild_and_compare,
        live.app,
        live.database_url,
        live.redis,
        store_executor=live.store_executor,
        live_active_key=live.active_key,
    )
    applied = (await compare()).position
    later = T0 + timedelta(hours=2)
    cleared = alarm_transition("press-1", "cold", active=False, ts=later)
    await live.store_executor.call(live.app.record_alarm_transitions, [cleared], later)

    # Recorded, not yet applied by the live views: compared where they stand, equal.
    behind = await compare()
    assert (behind.equal, behind.position) == (True, applied)
    assert behind.log_end > applied

    # Applied by the live views, whose tracking a comparison read just before.
    await follow_live(live)
    ahead = await compare(position=applied)
    assert ahead.equal, format_report(ahead)
    skipped = {m.model: m.skipped for m in ahead.models}
    assert skipped == {"alarm_current": 1, "alarm_journal": 0, f"redis {live.active_key}": 1}
    # The shelve had run out by then: both are after the position compared.
    moved = await live.pool.fetch(
        "SELECT event FROM alarm_journal WHERE position > $1 AND alarm_id = $2 ORDER BY position",
        applied,
        alarms["standing"],
    )
    assert [row["event"] for row in moved] == ["Unshelved", "Cleared"]


async def test_a_live_projection_that_never_ran_is_all_differences(live: LivePlant) -> None:
    await script_alarms(live)

    report = await rebuild_and_compare(
        live.app,
        live.database_url,
        live.redis,
        store_executor=live.store_executor,
        live_active_key=live.active_key,
    )

    assert not report.equal
    assert {m.model: (m.live_rows, m.rebuilt_rows > 0) for m in report.models} == {
        "alarm_current": (0, True),
        "alarm_journal": (0, True),
        f"redis {live.active_key}": (0, True),
    }


async def test_the_command_line_compares_and_says_different(live: LivePlant) -> None:
    await script_alarms(live)
    await follow_live(live)
    await live.pool.execute("DELETE FROM alarm_current")  # the live views lost their rows
    out = io.StringIO()
    settings = Settings(database_url=live.database_url, redis_url=TEST_REDIS_URL)

    # A command runs its own event loop: off this one, on a thread the store stops.
    status = await live.store_executor.call(
        run_inspect_command, parse("replay", "--read-models"), settings, out=out
    )

    assert status == 1
    assert "DIFFERENT" in out.getvalue()
    assert "alarm_current [" in out.getvalue()


# -- the command line ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plantcore audit")
    add_inspect_commands(parser.add_subparsers(dest="audit_command", required=True))
    return parser.parse_args(argv)


def inspect(own_database: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_inspect_command(
        parse(*argv), Settings(database_url=own_database), out=out, err=err
    )
    return status, out.getvalue(), err.getvalue()


def critical_write(app: PlantApplication) -> UUID:
    """Ana's write to the critical valve, approved by Bob, written and read back."""
    ticket = app.request_command(actor="ana", device="valve1", tag="position", value=40, at=T0)
    command = ticket.command_id
    app.confirm_command(actor="ana", command_id=command, totp_step=100, at=T0 + SECOND)
    app.approve_command(actor="bob", command_id=command, totp_step=200, at=T0 + 30 * SECOND)
    app.record_dispatch(command, T0 + 31 * SECOND)
    app.record_write_succeeded(command, 40, T0 + 32 * SECOND)
    return command


def test_the_timeline_command_shows_both_signatures(
    app: PlantApplication, own_database: str
) -> None:
    command = critical_write(app)

    status, text, _ = inspect(own_database, "timeline", str(command))

    assert status == 0
    assert "valve1/position = 40" in text
    assert "Ana Gil (request, totp)" in text
    assert "Bob Ruiz (approval, totp)" in text
    assert "succeeded (read back 40)" in text
    assert f"request   Ana Gil (ana), totp, {(T0 + SECOND).isoformat()}" in text
    assert f"approval  Bob Ruiz (bob), totp, {(T0 + 30 * SECOND).isoformat()}" in text

    status, printed, _ = inspect(own_database, "timeline", str(command), "--json")
    as_json = json.loads(printed)
    signatures = [step["signature"] for step in as_json["steps"] if step["signature"]]
    assert [(s["full_name"], s["meaning"], s["method"]) for s in signatures] == [
        ("Ana Gil", "request", "totp"),
        ("Bob Ruiz", "approval", "totp"),
    ]
    assert as_json["steps"][-1]["read_back"] == 40

    assert inspect(own_database, "timeline", str(uuid4()))[0] == 1
    # An operator is not a command.
    assert inspect(own_database, "timeline", str(operator_id("ana")))[0] == 1


def test_plantcore_audit_timeline_runs_as_an_administrator_runs_it(
    app: PlantApplication, own_database: str
) -> None:
    command = critical_write(app)

    done = subprocess.run(
        [sys.executable, "-m", "plantcore", "audit", "timeline", str(command)],
        env={**os.environ, "PLANTCORE_DATABASE_URL": own_database},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "Ana Gil (request, totp)" in done.stdout
    assert "Bob Ruiz (approval, totp)" in done.stdout


def test_the_replay_command_prints_an_aggregate_at_a_time_without_secrets(
    app: PlantApplication, own_database: str
) -> None:
    command = critical_write(app)
    ana = str(operator_id("ana"))

    status, text, _ = inspect(
        own_database, "replay", "--aggregate", str(command), "--at", (T0 + 10 * SECOND).isoformat()
    )
    assert status == 0
    assert "ControlCommand" in text
    assert '"awaiting_approval"' in text

    status, printed, _ = inspect(own_database, "replay", "--aggregate", ana, "--json")
    assert status == 0
    assert json.loads(printed)["state"]["username"] == "ana"
    assert PASSWORD_HASH not in printed
    assert SEALED not in printed

    status, _, err = inspect(
        own_database, "replay", "--aggregate", ana, "--at", (T0 - SECOND).isoformat()
    )
    assert (status, "did not exist yet" in err) == (1, True)
    with pytest.raises(SystemExit):  # a time without its offset is ambiguous: refused
        parse("replay", "--aggregate", ana, "--at", "2026-03-02T06:00:00")
