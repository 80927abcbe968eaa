"""The approvals inbox: pendingApprovals as a query and a subscription, and who sees what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.graphql_client import GraphQLSocket
from tests.integration.api.access import (
    APPROVE,
    CONFIRM,
    REQUEST,
    codes,
    next_code,
    open_session,
)
from tests.integration.api.conftest import AREA, Plant, PlantFactory, other_device

pytestmark = pytest.mark.integration

PENDING = "{ pendingApprovals { requestedAt command { commandId device tag value requestedBy "
PENDING += "status expiresAt } } }"
PENDING_UPDATES = "subscription { pendingApprovals { command { commandId status } } }"


async def _awaiting_approval(plant: Plant, token: str, value: float, code: str) -> str:
    """A critical write requested and confirmed by its requester: it waits for a second person."""
    body = await plant.gql(REQUEST, token, d=plant.device, t="pressure_setpoint", v=value)
    command_id: str = body["data"]["requestCommand"]["commandId"]
    confirmed = await plant.gql(CONFIRM, token, id=command_id, code=code)
    assert confirmed["data"]["confirmCommand"]["status"] == "AWAITING_APPROVAL", confirmed
    return command_id


async def _pending(plant: Plant, token: str) -> list[str]:
    body = await plant.gql(PENDING, token)
    assert "errors" not in body, body
    return [entry["command"]["commandId"] for entry in body["data"]["pendingApprovals"]]


async def test_pending_approvals_are_the_others_requests_in_the_callers_scope(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = (await open_session(plant, plant.username)).access_token
    at = datetime.now(UTC)
    first = await _awaiting_approval(plant, token, 120, plant.totp.at(at))
    second = await _awaiting_approval(plant, token, 130, next_code(plant.totp, at))
    # Waiting for its requester's code, not for a second person: in nobody's inbox.
    await plant.gql(REQUEST, token, d=plant.device, t="pressure_setpoint", v=140)

    bea = await plant.add_operator(["operator"], [f"device:{plant.device}"])
    area_supervisor = await plant.add_operator(["supervisor"], [f"area:{AREA}"])
    outsider = await plant.add_operator(["supervisor"], [f"device:{other_device(plant.device)}"])
    viewer = await plant.add_operator(["viewer"], ["plant"])
    tokens = {
        person.username: (await open_session(plant, person.username)).access_token
        for person in (bea, area_supervisor, outsider, viewer)
    }

    body = await plant.gql(PENDING, tokens[bea.username])
    entries = body["data"]["pendingApprovals"]
    assert [e["command"]["commandId"] for e in entries] == [first, second]  # first to lapse first
    assert entries[0]["command"] | {"commandId": None, "expiresAt": None} == {
        "commandId": None,
        "device": plant.device,
        "tag": "pressure_setpoint",
        "value": 120,
        "requestedBy": plant.username,
        "status": "AWAITING_APPROVAL",
        "expiresAt": None,
    }
    assert await _pending(plant, tokens[area_supervisor.username]) == [first, second]
    assert await _pending(plant, tokens[outsider.username]) == []
    assert await _pending(plant, token) == []  # the requester's own: the two-person rule
    assert codes(await plant.gql(PENDING, tokens[viewer.username])) == ["forbidden"]

    approved = await plant.gql(APPROVE, tokens[bea.username], id=first, code=bea.totp.now())
    assert approved["data"]["approveCommand"]["status"] == "CONFIRMED", approved
    assert await _pending(plant, tokens[area_supervisor.username]) == [second]


async def _next_inbox(socket: GraphQLSocket) -> list[tuple[str, str]]:
    message = await socket.receive()
    assert "errors" not in message["payload"], message
    entries: list[dict[str, Any]] = message["payload"]["data"]["pendingApprovals"]
    return [(e["command"]["commandId"], e["command"]["status"]) for e in entries]


async def test_the_inbox_follows_requests_approvals_and_lapses(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False, approval_window=timedelta(seconds=2))
    token = (await open_session(plant, plant.username)).access_token
    bea = await plant.add_operator(["operator"], [f"device:{plant.device}"])
    bea_token = (await open_session(plant, bea.username)).access_token
    at = datetime.now(UTC)
    socket = await GraphQLSocket.open(plant.ws_url, bea_token)
    try:
        await socket.subscribe(PENDING_UPDATES)
        empty = await _next_inbox(socket)
        approved = await _awaiting_approval(plant, token, 120, plant.totp.at(at))
        asked = await _next_inbox(socket)
        answer = await plant.gql(APPROVE, bea_token, id=approved, code=bea.totp.now())
        assert "errors" not in answer, answer
        after_approval = await _next_inbox(socket)
        lapsing = await _awaiting_approval(plant, token, 130, next_code(plant.totp, at))
        asked_again = await _next_inbox(socket)
        lapsed = await _next_inbox(socket)
    finally:
        await socket.close()
    assert [empty, asked, after_approval, asked_again, lapsed] == [
        [],
        [(approved, "AWAITING_APPROVAL")],
        [],
        [(lapsing, "AWAITING_APPROVAL")],
        [],
    ]


async def test_a_viewer_may_not_subscribe_to_the_inbox(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    viewer = await plant.add_operator(["viewer"], ["plant"])
    socket = await GraphQLSocket.open(
        plant.ws_url, (await open_session(plant, viewer.username)).access_token
    )
    try:
        await socket.subscribe(PENDING_UPDATES)
        refused = await socket.receive_error()
    finally:
        await socket.close()
    payload = refused["payload"]
    errors = payload["errors"] if isinstance(payload, dict) else payload
    assert [error["extensions"]["code"] for error in errors] == ["forbidden"]
