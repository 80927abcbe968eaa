"""Commands through GraphQL: request, TOTP confirmation, dispatch over NATS, and refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pyotp
import pytest

from domain.command import CommandStatus
from domain.messages import WriteErrorKind, WriteReply, WriteRequest
from tests.graphql_client import GraphQLSocket
from tests.integration.api.conftest import Plant, PlantFactory, Responder
from tests.support import eventually

pytestmark = pytest.mark.integration

REQUEST = """mutation($d: String!, $t: String!, $v: JSON) {
    requestCommand(device: $d, tag: $t, value: $v) { commandId challenge expiresAt } }"""
CONFIRM = """mutation($id: ID!, $code: String!) {
    confirmCommand(commandId: $id, code: $code) { commandId status value requestedBy } }"""
CANCEL = """mutation($id: ID!) { cancelCommand(commandId: $id) { commandId status } }"""
STATUS = """subscription($id: ID!) {
    commandStatus(commandId: $id) { commandId version step status actor detail at } }"""


def wrong_code(totp: pyotp.TOTP) -> str:
    """A code that matches none of the steps the API accepts right now."""
    step = totp.timecode(datetime.now(UTC))
    valid = {totp.generate_otp(s) for s in range(step - 2, step + 3)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


async def request(plant: Plant, token: str, value: Any, tag: str = "speed_setpoint") -> Any:
    return await plant.gql(REQUEST, token, d=plant.device, t=tag, v=value)


async def requested(plant: Plant, token: str, value: Any) -> str:
    body = await request(plant, token, value)
    assert "errors" not in body, body
    command_id: str = body["data"]["requestCommand"]["commandId"]
    return command_id


async def status_of(plant: Plant, command_id: str) -> CommandStatus:
    command = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
    return command.status


async def test_a_confirmed_command_is_written_and_streamed_step_by_step(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant()
    responder = await Responder().start(plant.nc, plant.device)
    token = await plant.login()
    ticket = (await request(plant, token, 1500))["data"]["requestCommand"]
    assert ticket["challenge"] == "totp"
    command_id = ticket["commandId"]

    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(STATUS, id=command_id)
        first = await socket.receive()
        body = await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())
        assert "errors" not in body, body
        assert body["data"]["confirmCommand"]["status"] in ("CONFIRMED", "DISPATCHED", "SUCCEEDED")
        messages = [first]
        while messages[-1]["type"] == "next":
            messages.append(await socket.receive())
    finally:
        await socket.close()
        await responder.stop()

    assert messages[-1]["type"] == "complete"
    steps = [m["payload"]["data"]["commandStatus"] for m in messages[:-1]]
    assert [(s["step"], s["status"]) for s in steps] == [
        ("Requested", "REQUESTED"),
        ("ChallengeIssued", "AWAITING_CONFIRMATION"),
        ("Confirmed", "CONFIRMED"),
        ("WriteDispatched", "DISPATCHED"),
        ("WriteSucceeded", "SUCCEEDED"),
    ]
    assert [s["version"] for s in steps] == [1, 2, 3, 4, 5]
    assert [s["actor"] for s in steps] == [plant.username] * 3 + ["dispatcher"] * 2
    assert "read back 1500" in steps[-1]["detail"]
    [sent] = responder.requests
    assert replace(sent, deadline=None) == WriteRequest(
        tag="speed_setpoint",
        command_id=command_id,
        op="write",
        value=1500,
        expires_in_ms=500,  # the plant's dispatcher waits 0.5 s for a reply
    )
    # Refused from the end of that wait less the 0.1 s of clock skew the plant allows.
    dispatched = datetime.fromisoformat(steps[3]["at"])
    assert sent.deadline is not None
    assert timedelta(seconds=0.4) <= sent.deadline - dispatched < timedelta(seconds=0.5)


async def test_refused_requests_are_recorded_and_never_written(make_plant: PlantFactory) -> None:
    plant = await make_plant()
    responder = await Responder().start(plant.nc, plant.device)
    token = await plant.login()
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"v": "abc"}, "not_a_number"),
        ({"v": None}, "not_a_number"),
        ({"v": 1801}, "out_of_limits"),
        ({"v": -1}, "out_of_limits"),
        ({"t": "no_such_tag", "v": 1}, "unknown_tag"),
        ({"t": "speed", "v": 1}, "not_writable"),
        # Permission is checked first: a device outside the caller's scope is refused as
        # such, so that a refusal does not tell which devices exist.
        ({"d": "no-such-" + plant.device, "v": 1}, "forbidden"),
    ]
    for variables, code in refusals:
        body = await plant.gql(
            REQUEST, token, **{"d": plant.device, "t": "speed_setpoint", **variables}
        )
        assert body["data"] is None
        [error] = body["errors"]
        assert error["extensions"]["code"] == code, (variables, error)
        command_id = error["extensions"]["commandId"]
        assert await plant.events(command_id) == ["Requested", "Rejected"]
        assert await status_of(plant, command_id) is CommandStatus.REJECTED

    # Wrong code: recorded, attempts counted down.
    wrong = await requested(plant, token, 100)
    body = await plant.gql(CONFIRM, token, id=wrong, code=wrong_code(plant.totp))
    assert "errors" in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "wrong_code"
    assert error["extensions"]["attemptsLeft"] == 2
    assert await plant.events(wrong) == ["Requested", "ChallengeIssued", "ConfirmationFailed"]

    # A code already used once is refused on a second command.
    code = plant.totp.now()
    first = await requested(plant, token, 200)
    second = await requested(plant, token, 300)
    assert "errors" not in await plant.gql(CONFIRM, token, id=first, code=code)
    body = await plant.gql(CONFIRM, token, id=second, code=code)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "code_reused"
    assert await plant.events(second) == ["Requested", "ChallengeIssued", "ConfirmationFailed"]

    # Everything above reached the dispatcher before the one good command's write did.
    async def only_the_good_write() -> None:
        assert await status_of(plant, first) is CommandStatus.SUCCEEDED
        assert [(r.command_id, r.value) for r in responder.requests] == [(first, 200)]

    await eventually(only_the_good_write)
    await responder.stop()


async def test_confirmation_errors_name_their_cause(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    missing = await plant.gql(CONFIRM, token, id=str(UUID(int=7)), code="123456")
    assert missing["errors"][0]["extensions"]["code"] == "not_found"
    garbage = await plant.gql(CONFIRM, token, id="not-a-uuid", code="123456")
    assert garbage["errors"][0]["extensions"]["code"] == "not_found"

    command_id = await requested(plant, token, 10)
    for _ in range(2):
        await plant.gql(CONFIRM, token, id=command_id, code=wrong_code(plant.totp))
    third = await plant.gql(CONFIRM, token, id=command_id, code=wrong_code(plant.totp))
    assert third["errors"][0]["extensions"]["attemptsLeft"] == 0
    closed = await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())
    assert closed["errors"][0]["extensions"]["code"] == "closed"
    assert await status_of(plant, command_id) is CommandStatus.CONFIRMATION_FAILED


async def test_a_command_can_be_cancelled_before_confirmation(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    command_id = await requested(plant, token, 10)
    body = await plant.gql(CANCEL, token, id=command_id)
    assert body["data"]["cancelCommand"] == {"commandId": command_id, "status": "CANCELLED"}
    again = await plant.gql(CANCEL, token, id=command_id)
    assert again["errors"][0]["extensions"]["code"] == "closed"


async def test_an_unanswered_command_expires(make_plant: PlantFactory) -> None:
    plant = await make_plant(confirm_window=timedelta(milliseconds=200), dispatcher=False)
    token = await plant.login()
    command_id = await requested(plant, token, 10)

    async def expired() -> None:
        assert await status_of(plant, command_id) is CommandStatus.EXPIRED

    await eventually(expired)
    assert await plant.events(command_id) == ["Requested", "ChallengeIssued", "Expired"]
    late = await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())
    assert late["errors"][0]["extensions"]["code"] == "closed"


async def test_without_a_supervisor_the_write_fails(make_plant: PlantFactory) -> None:
    plant = await make_plant()
    token = await plant.login()
    command_id = await requested(plant, token, 10)
    await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())

    async def failed() -> None:
        command = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
        assert command.status is CommandStatus.WRITE_FAILED
        assert command.reason == "device supervisor not reachable"

    await eventually(failed)


@pytest.mark.parametrize(
    ("read_back", "outcome"),
    [(42.0, CommandStatus.SUCCEEDED), (7.0, CommandStatus.WRITE_FAILED)],
)
async def test_a_write_without_reply_is_settled_by_reading_back(
    make_plant: PlantFactory, read_back: float, outcome: CommandStatus
) -> None:
    plant = await make_plant()

    def silent_on_writes(request: WriteRequest) -> WriteReply | None:
        if request.op == "write":
            return None
        return WriteReply(ok=True, tag=request.tag, read_back=read_back)

    responder = await Responder(silent_on_writes).start(plant.nc, plant.device)
    token = await plant.login()
    command_id = await requested(plant, token, 42)
    await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())

    async def settled() -> None:
        assert await status_of(plant, command_id) is outcome

    await eventually(settled)
    await responder.stop()
    assert [(r.op, r.value) for r in responder.requests] == [("write", 42), ("read", None)]
    command = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
    if outcome is CommandStatus.WRITE_FAILED:
        assert command.reason == "no reply to the write; read back 7.0 instead of 42"
    else:
        assert command.read_back == 42.0


async def test_a_write_of_unknown_outcome_is_settled_by_reading_back(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant()

    def dropped_mid_write(request: WriteRequest) -> WriteReply:
        if request.op == "write":
            return WriteReply.failure(
                request.tag, WriteErrorKind.OUTCOME_UNKNOWN, "connection lost: reset by peer"
            )
        return WriteReply(ok=True, tag=request.tag, read_back=42)

    responder = await Responder(dropped_mid_write).start(plant.nc, plant.device)
    token = await plant.login()
    command_id = await requested(plant, token, 42)
    await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())

    async def settled() -> None:
        assert await status_of(plant, command_id) is CommandStatus.SUCCEEDED

    await eventually(settled)
    await responder.stop()
    write, read = responder.requests
    assert (write.op, write.value, read.op) == ("write", 42, "read")
    # The dispatcher waits 0.5 s for the reply; the write must not outlive that wait.
    assert write.expires_in_ms == 500
    command = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
    assert command.read_back == 42
