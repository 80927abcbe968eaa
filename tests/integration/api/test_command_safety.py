"""The command safety chain through GraphQL, each refusal checked on the record.

Codes: a person answers at most twice per test, with this step's code and
the next one's (the verifier accepts one step either side, and each step
once), both taken from one instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pyotp
import pytest

from domain.command import CommandStatus
from domain.messages import WriteRequest
from tests.integration.api.access import (
    APPROVE,
    CONFIRM,
    DECLINE,
    REQUEST,
    codes,
    command_events,
    field,
    named,
    names,
    next_code,
    open_session,
    refusal,
)
from tests.integration.api.conftest import Plant, PlantFactory, Responder, other_device
from tests.support import eventually

pytestmark = pytest.mark.integration

SET_MODE = """mutation($m: PlantModeName!, $why: String!) {
    setPlantMode(mode: $m, reason: $why) { mode reason changedBy } }"""
PLANT_MODE = "{ plantMode { mode reason changedBy } }"
TIMELINE = """query($id: ID!) { commandTimeline(commandId: $id) {
    step status actor signature { username fullName meaning method at emergency } } }"""


def wrong_code(totp: pyotp.TOTP, at: datetime) -> str:
    """A code of none of the steps the verifier accepts around ``at``."""
    step = totp.timecode(at)
    valid = {totp.generate_otp(s) for s in range(step - 2, step + 3)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


async def ask(
    plant: Plant, token: str, value: Any, tag: str = "speed_setpoint", device: str | None = None
) -> dict[str, Any]:
    return await plant.gql(REQUEST, token, d=device or plant.device, t=tag, v=value)


async def ticket(plant: Plant, token: str, value: Any, tag: str = "speed_setpoint") -> str:
    body = await ask(plant, token, value, tag)
    assert "errors" not in body, body
    command_id: str = body["data"]["requestCommand"]["commandId"]
    return command_id


async def rejected(plant: Plant, body: dict[str, Any], reason: str) -> None:
    """``body`` refuses a request with ``reason``, recorded as the command's ``Rejected``."""
    error = refusal(body)
    assert error["extensions"]["code"] == reason, error
    events = await command_events(plant, error["extensions"]["commandId"])
    assert names(events) == ["Requested", "Rejected"]
    assert field(events[-1], "reason") == reason


async def status_of(plant: Plant, command_id: str) -> CommandStatus:
    command = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
    return command.status


async def test_a_code_is_used_once_and_the_third_wrong_code_ends_the_command(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = (await open_session(plant, plant.username)).access_token
    first, second = await ticket(plant, token, 100), await ticket(plant, token, 200)
    at = datetime.now(UTC)
    code = plant.totp.at(at)
    assert "errors" not in await plant.gql(CONFIRM, token, id=first, code=code)

    replayed = refusal(await plant.gql(CONFIRM, token, id=second, code=code))
    assert (replayed["extensions"]["code"], replayed["extensions"]["attemptsLeft"]) == (
        "code_reused",
        2,
    )
    wrong = wrong_code(plant.totp, at)
    second_try = refusal(await plant.gql(CONFIRM, token, id=second, code=wrong))
    assert (second_try["extensions"]["code"], second_try["extensions"]["attemptsLeft"]) == (
        "wrong_code",
        1,
    )
    last = refusal(await plant.gql(CONFIRM, token, id=second, code=wrong))
    assert (last["extensions"]["code"], last["extensions"]["attemptsLeft"]) == ("wrong_code", 0)
    closed = refusal(await plant.gql(CONFIRM, token, id=second, code=next_code(plant.totp, at)))
    assert closed["extensions"]["code"] == "closed"

    events = await command_events(plant, second)
    assert names(events) == ["Requested", "ChallengeIssued", *["ConfirmationFailed"] * 3]
    assert [(field(e, "reason"), field(e, "attempt"), field(e, "final")) for e in events[2:]] == [
        ("code_reused", 1, False),
        ("wrong_code", 2, False),
        ("wrong_code", 3, True),
    ]
    assert await status_of(plant, second) is CommandStatus.CONFIRMATION_FAILED
    assert await status_of(plant, first) is CommandStatus.CONFIRMED


async def test_a_scope_reaches_its_device_or_area_and_nothing_else(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    elsewhere = other_device(plant.device)  # area "welding"
    device_token = (await open_session(plant, plant.username)).access_token
    stamping = await plant.add_operator(["operator"], ["area:stamping"])
    stamping_token = (await open_session(plant, stamping.username)).access_token
    welding = await plant.add_operator(["operator"], ["area:welding"])
    welding_token = (await open_session(plant, welding.username)).access_token

    await rejected(plant, await ask(plant, device_token, 100, device=elsewhere), "forbidden")
    assert "errors" not in await ask(plant, stamping_token, 100)
    await rejected(plant, await ask(plant, stamping_token, 100, device=elsewhere), "forbidden")
    assert "errors" not in await ask(plant, welding_token, 100, device=elsewhere)
    await rejected(plant, await ask(plant, welding_token, 100), "forbidden")


async def test_read_only_mode_refuses_every_command_until_normal_again(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    supervisor = await plant.add_operator(["supervisor"], full_name="Sam Supervisor")
    supervisor_token = (await open_session(plant, supervisor.username)).access_token
    token = (await open_session(plant, plant.username)).access_token
    waiting = await ticket(plant, token, 100)

    refused = refusal(await plant.gql(SET_MODE, token, m="READ_ONLY", why="I want to"))
    assert refused["extensions"]["code"] == "forbidden"
    no_reason = refusal(await plant.gql(SET_MODE, supervisor_token, m="READ_ONLY", why=" "))
    assert no_reason["extensions"]["code"] == "reason_required"
    changed = await plant.gql(SET_MODE, supervisor_token, m="READ_ONLY", why="intrusion alarm")
    assert changed["data"]["setPlantMode"] == {
        "mode": "READ_ONLY",
        "reason": "intrusion alarm",
        "changedBy": supervisor.username,
    }
    assert (await plant.gql(PLANT_MODE, token))["data"]["plantMode"]["mode"] == "READ_ONLY"

    await rejected(plant, await ask(plant, token, 200), "read_only")
    await rejected(plant, await ask(plant, token, False, tag="running"), "read_only")
    # A command asked before the switch is refused when it would be released.
    late = refusal(await plant.gql(CONFIRM, token, id=waiting, code=plant.totp.now()))
    assert late["extensions"]["code"] == "read_only"
    assert names(await command_events(plant, waiting))[-1] == "Rejected"

    back = await plant.gql(SET_MODE, supervisor_token, m="NORMAL", why="all clear")
    assert back["data"]["setPlantMode"]["mode"] == "NORMAL"
    assert "errors" not in await ask(plant, token, 300)

    changes = named(await plant.store_executor.call(_events_of_mode, plant), "ModeChanged")
    assert [
        (field(e, "previous"), field(e, "mode"), field(e, "reason"), field(e, "actor"))
        for e in changes
    ] == [
        ("normal", "read_only", "intrusion alarm", supervisor.username),
        ("read_only", "normal", "all clear", supervisor.username),
    ]


def _events_of_mode(plant: Plant) -> list[Any]:
    mode = plant.app.find_plant_mode()
    assert mode is not None
    return list(plant.app.events.get(mode.id))


async def test_the_rate_limit_refuses_the_sixth_command_but_not_an_emergency_stop(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(rate_limit=5, dispatcher=False)
    token = (await open_session(plant, plant.username)).access_token
    for value in range(5):
        assert "errors" not in await ask(plant, token, 100 + value)
    await rejected(plant, await ask(plant, token, 200), "rate_limited")
    stop = (await ask(plant, token, False, tag="running"))["data"]["requestCommand"]
    assert stop["challenge"] == "none"
    events = await command_events(plant, stop["commandId"])
    assert names(events) == ["Requested", "Confirmed"]
    assert field(events[-1], "emergency") is True


async def test_a_critical_write_needs_a_second_person_and_an_emergency_stop_no_code(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant()
    responder = await Responder().start(plant.nc, plant.device)
    token = (await open_session(plant, plant.username)).access_token
    second = await plant.add_operator(
        ["operator"], [f"device:{plant.device}"], full_name="Bea Second"
    )
    second_token = (await open_session(plant, second.username)).access_token
    outsider = await plant.add_operator(["supervisor"], [f"device:{other_device(plant.device)}"])
    outsider_token = (await open_session(plant, outsider.username)).access_token

    to_decline = await ticket(plant, token, 150, tag="pressure_setpoint")
    to_approve = await ticket(plant, token, 120, tag="pressure_setpoint")
    at = datetime.now(UTC)
    for command_id, code in (
        (to_decline, plant.totp.at(at)),
        (to_approve, next_code(plant.totp, at)),
    ):
        confirmed = await plant.gql(CONFIRM, token, id=command_id, code=code)
        assert confirmed["data"]["confirmCommand"]["status"] == "AWAITING_APPROVAL", confirmed

    own = refusal(await plant.gql(APPROVE, token, id=to_approve, code=plant.totp.now()))
    assert own["extensions"]["code"] == "second_person_required"
    elsewhere = await plant.gql(APPROVE, outsider_token, id=to_approve, code=outsider.totp.now())
    assert codes(elsewhere) == ["forbidden"]
    declined = await plant.gql(DECLINE, second_token, id=to_decline, reason="too high")
    assert declined["data"]["declineCommand"] == {
        "commandId": to_decline,
        "status": "DECLINED",
        "reason": "too high",
    }
    approved = await plant.gql(APPROVE, second_token, id=to_approve, code=second.totp.now())
    assert approved["data"]["approveCommand"]["approvedBy"] == second.username
    stop = (await ask(plant, token, False, tag="running"))["data"]["requestCommand"]
    assert stop["challenge"] == "none"

    async def written() -> None:
        assert await status_of(plant, to_approve) is CommandStatus.SUCCEEDED
        assert await status_of(plant, stop["commandId"]) is CommandStatus.SUCCEEDED

    await eventually(written)
    await responder.stop()
    # Once each, in the log's order; the declined write never left.
    assert [(r.command_id, r.tag, r.value) for r in responder.requests] == [
        (to_approve, "pressure_setpoint", 120),
        (stop["commandId"], "running", False),
    ]
    assert all(isinstance(r, WriteRequest) and r.op == "write" for r in responder.requests)

    events = await command_events(plant, to_approve)
    assert names(events) == [
        "Requested",
        "ChallengeIssued",
        "Confirmed",
        "ApprovalRequested",
        "ApprovalRefused",
        "ApprovalRefused",
        "Approved",
        "WriteDispatched",
        "WriteSucceeded",
    ]
    assert [(field(e, "actor"), field(e, "reason")) for e in named(events, "ApprovalRefused")] == [
        (plant.username, "requester"),
        (outsider.username, "forbidden"),
    ]
    assert names(await command_events(plant, to_decline))[-2:] == [
        "ApprovalRequested",
        "ApprovalDeclined",
    ]
    stop_events = await command_events(plant, stop["commandId"])
    assert names(stop_events) == ["Requested", "Confirmed", "WriteDispatched", "WriteSucceeded"]
    confirmed_stop = stop_events[1]
    assert (field(confirmed_stop, "emergency"), field(confirmed_stop, "method")) == (True, "none")

    timeline = (await plant.gql(TIMELINE, token, id=to_approve))["data"]["commandTimeline"]
    signatures = [(s["step"], s["signature"]) for s in timeline if s["signature"] is not None]
    assert [
        (step, s["username"], s["fullName"], s["meaning"], s["method"], s["emergency"])
        for step, s in signatures
    ] == [
        ("Confirmed", plant.username, "Ana Operator", "request", "totp", False),
        ("Approved", second.username, "Bea Second", "approval", "totp", False),
    ]
    for (_, signature), event in zip(
        signatures, [*named(events, "Confirmed"), *named(events, "Approved")], strict=True
    ):
        assert datetime.fromisoformat(signature["at"]) == field(event, "at")
    stop_line = (await plant.gql(TIMELINE, token, id=stop["commandId"]))["data"]["commandTimeline"]
    [(step, signature)] = [(s["step"], s["signature"]) for s in stop_line if s["signature"]]
    assert (step, signature["fullName"], signature["meaning"], signature["method"]) == (
        "Confirmed",
        "Ana Operator",
        "execution",
        "none",
    )
    assert signature["emergency"] is True
