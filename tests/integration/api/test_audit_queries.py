"""``auditEvents``: the stored events by aggregate, user, type and time, a page at a time.

The event table is shared by every API test, so each query here is narrowed
to what this test wrote: its own aggregates, its own users, or a time window
in 2071 that only this test's events fall in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.errors import CommandRefused
from domain.operator import operator_id
from domain.permissions import Role
from tests.integration.api.access import codes, open_session, refusal
from tests.integration.api.conftest import PASSWORD_HASH, Plant, PlantFactory

pytestmark = pytest.mark.integration

AUDIT = """query($a: ID, $u: String, $t: String, $s: DateTime, $e: DateTime, $n: Int!,
    $c: String) {
  auditEvents(aggregateId: $a, user: $u, type: $t, since: $s, until: $e, first: $n, after: $c) {
    events { position aggregateId aggregateType version type at actor payload }
    endCursor hasNextPage
  }
}"""
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Record:
    """What the test wrote, at times of its own."""

    command_id: UUID
    start: datetime


async def query(
    plant: Plant,
    token: str | None,
    *,
    aggregate: UUID | str | None = None,
    user: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    first: int = 100,
    after: str | None = None,
) -> dict[str, Any]:
    return await plant.gql(
        AUDIT, token, a=None if aggregate is None else str(aggregate), u=user, t=event_type,
        s=since.isoformat() if since else None, e=until.isoformat() if until else None,
        n=first, c=after,
    )  # fmt: skip


async def events(plant: Plant, token: str, **filters: Any) -> list[dict[str, Any]]:
    body = await query(plant, token, **filters)
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["auditEvents"]
    assert not page["hasNextPage"]
    found: list[dict[str, Any]] = page["events"]
    return found


async def auditor_token(plant: Plant) -> str:
    auditor = await plant.add_operator(["auditor"], full_name="Alba Auditor")
    return (await open_session(plant, auditor.username)).access_token


async def write_record(plant: Plant) -> Record:
    """Three requests of the plant's operator, one confirmed, written and read back."""
    start = datetime(2071, 5, 17, 3, 14, 15, tzinfo=UTC) + timedelta(
        seconds=random.randrange(10**6), microseconds=random.randrange(10**6)
    )
    call, app, user = plant.store_executor.call, plant.app, plant.username
    tickets = [
        await call(
            app.request_command,
            actor=user,
            device=plant.device,
            tag="speed_setpoint",
            value=100 + i,
            at=start + i * timedelta(minutes=1),
        )
        for i in range(3)
    ]
    command = tickets[0].command_id
    await call(app.confirm_command, actor=user, command_id=command, totp_step=7, at=start + SECOND)
    await call(app.record_dispatch, command, start + 2 * SECOND)
    await call(app.record_write_succeeded, command, 100, start + 3 * SECOND)
    return Record(command, start)


async def test_only_auditors_may_read_the_audit_trail(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    answers: dict[Role, list[str | None]] = {}
    for role in Role:
        person = await plant.add_operator([role.value], [f"device:{plant.device}"])
        token = (await open_session(plant, person.username)).access_token
        answers[role] = codes(await query(plant, token, user=person.username, first=1))

    assert answers == {role: [] if role is Role.AUDITOR else ["forbidden"] for role in Role}
    assert refusal(await query(plant, None, first=1))["extensions"]["code"] == "unauthenticated"


async def test_events_by_aggregate_user_type_and_time(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await auditor_token(plant)
    record = await write_record(plant)
    start, command = record.start, record.command_id

    by_command = await events(plant, token, aggregate=command)
    assert [(e["type"], e["version"], e["actor"]) for e in by_command] == [
        ("Requested", 1, plant.username),
        ("ChallengeIssued", 2, plant.username),
        ("Confirmed", 3, plant.username),
        ("WriteDispatched", 4, "dispatcher"),
        ("WriteSucceeded", 5, "dispatcher"),
    ]
    assert {(e["aggregateId"], e["aggregateType"]) for e in by_command} == {
        (str(command), "ControlCommand")
    }
    positions = [e["position"] for e in by_command]
    assert positions == sorted(positions)
    assert by_command[0]["at"] == start.isoformat()
    confirmed = by_command[2]["payload"]
    assert (confirmed["signer_name"], confirmed["meaning"], confirmed["method"]) == (
        "Ana Operator",
        "execution",
        "totp",
    )
    assert by_command[4]["payload"]["read_back"] == 100

    by_user = await events(plant, token, user=plant.username, since=start)
    assert {e["actor"] for e in by_user} == {plant.username}
    types = [e["type"] for e in by_user]
    assert types[:6] == ["Requested", "ChallengeIssued"] * 3
    # The confirmation and the code it spent are saved together, in one transaction.
    assert sorted(types[6:]) == ["Confirmed", "TotpStepUsed"]
    spent = next(e for e in by_user if e["type"] == "TotpStepUsed")
    assert (spent["aggregateId"], spent["aggregateType"]) == (
        str(operator_id(plant.username)),
        "Operator",
    )

    only_confirmed = await events(plant, token, aggregate=command, event_type="Confirmed")
    assert [e["position"] for e in only_confirmed] == [by_command[2]["position"]]
    qualified = await events(
        plant, token, user=plant.username, event_type="ControlCommand.Confirmed"
    )
    assert [e["position"] for e in qualified] == [by_command[2]["position"]]
    assert await events(plant, token, aggregate=command, event_type="Command.Confirmed") == []

    # [since, until): the confirmation (and its spent code) and the dispatch, not the outcome.
    window = await events(plant, token, since=start + SECOND, until=start + 3 * SECOND)
    in_window = [e["type"] for e in window]
    assert sorted(in_window[:2]) == ["Confirmed", "TotpStepUsed"]
    assert in_window[2:] == ["WriteDispatched"]
    later = await events(plant, token, aggregate=command, since=start + 3 * SECOND)
    assert [e["type"] for e in later] == ["WriteSucceeded"]


async def test_pages_follow_the_log_without_gaps_or_repeats(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await auditor_token(plant)
    await write_record(plant)
    everything = [e["position"] for e in await events(plant, token, user=plant.username)]
    assert len(everything) == 8  # three requests and their challenges, a confirmation, a code

    walked: list[int] = []
    after: str | None = None
    pages = 0
    while True:
        body = await query(plant, token, user=plant.username, first=2, after=after)
        assert "errors" not in body, body
        page = body["data"]["auditEvents"]
        walked += [e["position"] for e in page["events"]]
        pages += 1
        after = page["endCursor"]
        if not page["hasNextPage"]:
            break
    assert walked == everything
    assert pages == -(-len(everything) // 2)
    # Past the end: an empty page that keeps the cursor.
    end = await query(plant, token, user=plant.username, first=2, after=after)
    assert end["data"]["auditEvents"] == {"events": [], "endCursor": after, "hasNextPage": False}


async def test_credentials_never_leave_the_audit_trail(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await auditor_token(plant)
    session = await open_session(plant, plant.username)
    body = await query(plant, token, aggregate=operator_id(plant.username))

    found = body["data"]["auditEvents"]["events"]
    registered = found[0]["payload"]
    assert found[0]["type"] == "Registered"
    assert (registered["password_hash"], registered["totp_secret_sealed"]) == (
        "[redacted]",
        "[redacted]",
    )
    assert registered["full_name"] == "Ana Operator"
    logins = [e for e in found if e["type"] == "LoginSucceeded"]
    assert logins
    assert {e["payload"]["refresh_hash"] for e in logins} == {"[redacted]"}
    text = str(body)
    assert PASSWORD_HASH not in text
    assert session.refresh_token not in text


async def test_unusable_pages_and_ids_are_refused(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await auditor_token(plant)

    def code(body: dict[str, Any]) -> str:
        return str(refusal(body)["extensions"]["code"])

    assert code(await query(plant, token, first=0)) == "bad_page"
    assert code(await query(plant, token, first=501)) == "bad_page"
    assert code(await query(plant, token, after="bm90IGEgY3Vyc29y")) == "bad_cursor"
    journal_cursor = "am91cm5hbDox"  # an alarmJournal cursor is not an audit cursor
    assert code(await query(plant, token, after=journal_cursor)) == "bad_cursor"
    assert code(await query(plant, token, aggregate="not-a-uuid")) == "not_found"
    assert await events(plant, token, aggregate="00000000-0000-4000-8000-000000000000") == []


async def test_an_event_holding_a_nul_character_is_listed_by_time(
    make_plant: PlantFactory,
) -> None:
    """JSON may escape a NUL that PostgreSQL's jsonb refuses: the time filter still answers."""
    plant = await make_plant(dispatcher=False)
    token = await auditor_token(plant)
    at = datetime(2071, 9, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**6))
    with pytest.raises(CommandRefused) as refused:  # rejected, and recorded as sent
        await plant.store_executor.call(
            plant.app.request_command,
            actor=plant.username,
            device="press\u0000-1",
            tag="speed_setpoint",
            value=1,
            at=at,
        )
    found = await events(plant, token, since=at, until=at + SECOND)
    command_id = str(refused.value.command_id)
    assert [(e["aggregateId"], e["type"]) for e in found] == [
        (command_id, "Requested"),
        (command_id, "Rejected"),
    ]
