"""The ``commands`` query: recent commands by device, status and time, paged and bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.command import CommandStatus
from tests.integration.api.conftest import Plant, PlantFactory, other_device
from tests.support import eventually

pytestmark = pytest.mark.integration

COMMANDS = """query($filter: CommandFilterInput, $first: Int! = 50, $after: String) {
    commands(filter: $filter, first: $first, after: $after) {
        commands { requestedAt changedAt
            command { commandId device tag value status requestedBy reason } }
        endCursor hasMore } }"""
REQUEST = """mutation($d: String!, $v: JSON) {
    requestCommand(device: $d, tag: "speed_setpoint", value: $v) { commandId } }"""
CONFIRM = """mutation($id: ID!, $code: String!) { confirmCommand(commandId: $id, code: $code) {
    status } }"""
CANCEL = """mutation($id: ID!) { cancelCommand(commandId: $id) { status } }"""


async def _request(plant: Plant, token: str, value: float, device: str | None = None) -> str:
    body = await plant.gql(REQUEST, token, d=device or plant.device, v=value)
    # A refusal is recorded too: the command exists, rejected.
    answer = body["errors"][0]["extensions"] if "errors" in body else body["data"]["requestCommand"]
    command_id: str = answer["commandId"]
    return command_id


async def _commands(plant: Plant, token: str, **variables: Any) -> dict[str, Any]:
    body = await plant.gql(COMMANDS, token, **variables)
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["commands"]
    return page


def _rows(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["command"]["commandId"], e["command"]["status"]) for e in page["commands"]]


async def test_commands_lists_a_devices_commands_newest_first_by_status_and_time(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant()  # a dispatcher, and no supervisor: a confirmed write fails
    token = await plant.login()
    failed = await _request(plant, token, 10)
    await plant.gql(CONFIRM, token, id=failed, code=plant.totp.now())

    async def write_failed() -> None:
        command = await plant.store_executor.call(plant.app.get_command, UUID(failed))
        assert command.status is CommandStatus.WRITE_FAILED

    await eventually(write_failed)
    rejected = await _request(plant, token, 5000)  # out of limits
    cancelled = await _request(plant, token, 20)
    await plant.gql(CANCEL, token, id=cancelled)
    waiting = await _request(plant, token, 30)
    elsewhere = await _request(plant, token, 40, device=other_device(plant.device))  # forbidden

    mine = await _commands(plant, token, filter={"device": plant.device})
    assert _rows(mine) == [
        (waiting, "AWAITING_CONFIRMATION"),
        (cancelled, "CANCELLED"),
        (rejected, "REJECTED"),
        (failed, "WRITE_FAILED"),
    ]
    assert (mine["hasMore"], mine["endCursor"]) == (False, None)
    oldest = mine["commands"][-1]
    assert oldest["command"] | {"commandId": None} == {
        "commandId": None,
        "device": plant.device,
        "tag": "speed_setpoint",
        "value": 10,
        "status": "WRITE_FAILED",
        "requestedBy": plant.username,
        "reason": "device supervisor not reachable",
    }
    assert oldest["requestedAt"] < oldest["changedAt"]
    other = await _commands(plant, token, filter={"device": other_device(plant.device)})
    assert _rows(other) == [(elsewhere, "REJECTED")]

    failures = await _commands(
        plant, token, filter={"device": plant.device, "status": ["WRITE_FAILED", "EXPIRED"]}
    )
    assert _rows(failures) == [(failed, "WRITE_FAILED")]

    since_cancelled = mine["commands"][1]["requestedAt"]
    recent = await _commands(plant, token, filter={"device": plant.device, "from": since_cancelled})
    assert _rows(recent) == _rows(mine)[:2]
    before = await _commands(plant, token, filter={"device": plant.device, "to": since_cancelled})
    assert _rows(before) == _rows(mine)[2:]


async def test_commands_come_a_page_at_a_time_without_repeats(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    requested = [await _request(plant, token, value) for value in (1, 2, 3, 4, 5)]
    where = {"device": plant.device}
    first = await _commands(plant, token, filter=where, first=2)
    second = await _commands(plant, token, filter=where, first=2, after=first["endCursor"])
    third = await _commands(plant, token, filter=where, first=2, after=second["endCursor"])
    pages = [first, second, third]
    assert [page["hasMore"] for page in pages] == [True, True, False]
    listed = [command_id for page in pages for command_id, _ in _rows(page)]
    assert listed == requested[::-1]


async def test_commands_refuses_what_it_cannot_answer_by_name(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    now = datetime.now(UTC)
    asked: list[tuple[dict[str, Any], str, str]] = [
        ({"filter": {"device": "no-such-" + plant.device}}, "unknown_device", "filter.device"),
        (
            {"filter": {"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}},
            "invalid_time_range",
            "filter.from",
        ),
        (
            {"filter": {"from": (now - timedelta(days=32)).isoformat(), "to": now.isoformat()}},
            "span_too_long",
            "filter.to",
        ),
        ({"first": 0}, "bad_page", "first"),
        ({"first": 201}, "bad_page", "first"),
    ]
    for variables, code, argument in asked:
        body = await plant.gql(COMMANDS, token, **variables)
        [error] = body["errors"]
        assert (error["extensions"]["code"], error["extensions"].get("argument")) == (
            code,
            argument,
        ), variables
    journal_cursor = "am91cm5hbDox"  # an alarmJournal cursor
    body = await plant.gql(COMMANDS, token, after=journal_cursor)
    assert body["errors"][0]["extensions"]["code"] == "bad_cursor"
    anonymous = await plant.gql(COMMANDS, None)
    assert anonymous["errors"][0]["extensions"]["code"] == "unauthenticated"


async def test_a_recorded_request_naming_a_nul_character_does_not_break_the_list(
    make_plant: PlantFactory,
) -> None:
    """JSON may escape a NUL that PostgreSQL's jsonb refuses; the record holds what was sent."""
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    since = datetime.now(UTC).isoformat()
    odd = await _request(plant, token, 1, device="press\u0000-1")  # unknown: rejected, recorded
    page = await _commands(plant, token, filter={"from": since}, first=200)
    assert (odd, "REJECTED") in _rows(page)
    assert (await _commands(plant, token, filter={"device": plant.device}))["commands"] == []
