"""tagUpdates and commandStatus over graphql-transport-ws; the dispatcher after a restart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
import redis.asyncio as aioredis

from api.credentials import issue_token
from domain.command import CommandStatus
from domain.messages import (
    TELEMETRY_SUBJECT,
    Quality,
    QualityReason,
    Sample,
    TelemetryBatch,
    WriteReply,
    WriteRequest,
)
from projections.live_state import LIVE_KEY, sample_json
from tests.graphql_client import GraphQLSocket
from tests.integration.api.conftest import PASSWORD, TOKENS, PlantFactory, Responder
from tests.support import eventually

pytestmark = pytest.mark.integration

TAG_UPDATES = """subscription($d: String!) {
    tagUpdates(device: $d) {
        device tag value boolValue quality qualityReason unit valueTimestamp snapshot } }"""
STATUS = """subscription($id: ID!) { commandStatus(commandId: $id) { step status } }"""


async def test_tag_updates_send_a_snapshot_then_live_samples(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    then = datetime.now(UTC) - timedelta(seconds=5)
    key = LIVE_KEY.format(device=plant.device)
    await redis_client.hset(
        key, "speed", sample_json(Sample("speed", 1000, Quality.GOOD, "rpm", then))
    )
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(TAG_UPDATES, d=plant.device)
        snapshot = await socket.receive()
        assert snapshot["payload"]["data"]["tagUpdates"] == {
            "device": plant.device,
            "tag": "speed",
            "value": 1000.0,
            "boolValue": None,
            "quality": "GOOD",
            "qualityReason": None,
            "unit": "rpm",
            "valueTimestamp": on_the_wire(then).isoformat(),
            "snapshot": True,
        }
        now = datetime.now(UTC)
        batch = TelemetryBatch(
            plant.device,
            now,
            (
                Sample("speed", 1000, Quality.GOOD, "rpm", then),  # already sent: dropped
                Sample("speed", 1184.5, Quality.UNCERTAIN, "rpm", now),
                # The device went away: its last known value, held since ``then``.
                Sample("running", False, Quality.BAD, "", now, QualityReason.COMM_LOSS, then),
            ),
        )
        await plant.nc.publish(TELEMETRY_SUBJECT.format(device=plant.device), batch.encode())
        live = [(await socket.receive())["payload"]["data"]["tagUpdates"] for _ in range(2)]
    finally:
        await socket.close()
        await redis_client.delete(key)
    assert [(u["tag"], u["value"], u["boolValue"], u["quality"], u["snapshot"]) for u in live] == [
        ("speed", 1184.5, None, "UNCERTAIN", False),
        ("running", 0.0, False, "BAD", False),
    ]
    assert [(u["qualityReason"], u["valueTimestamp"]) for u in live] == [
        (None, on_the_wire(now).isoformat()),
        ("comm_loss", on_the_wire(then).isoformat()),
    ]


async def test_a_tag_update_that_lost_its_value_holds_the_one_sent_before(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    """A supervisor restarted while its device is away no longer knows the last value."""
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    then = datetime.now(UTC) - timedelta(seconds=5)
    key = LIVE_KEY.format(device=plant.device)
    await redis_client.hset(
        key, "speed", sample_json(Sample("speed", 1184, Quality.GOOD, "rpm", then))
    )
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(TAG_UPDATES, d=plant.device)
        await socket.receive()  # the snapshot
        now = datetime.now(UTC)
        lost = Sample("speed", None, Quality.BAD, "rpm", now, QualityReason.COMM_LOSS)
        batch = TelemetryBatch(plant.device, now, (lost,))
        await plant.nc.publish(TELEMETRY_SUBJECT.format(device=plant.device), batch.encode())
        update = (await socket.receive())["payload"]["data"]["tagUpdates"]
    finally:
        await socket.close()
        await redis_client.delete(key)
    assert (update["value"], update["quality"], update["qualityReason"]) == (
        1184.0,
        "BAD",
        "comm_loss",
    )
    assert update["valueTimestamp"] == on_the_wire(then).isoformat()


def on_the_wire(ts: datetime) -> datetime:
    """``ts`` at the millisecond resolution of NATS payloads."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


async def test_a_subscription_ends_when_its_token_expires(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    body = await plant.gql(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { sessionId } }",
        u=plant.username,
        p=PASSWORD,
    )
    short = issue_token(
        replace(TOKENS, ttl=timedelta(seconds=2)),
        username=plant.username,
        session_id=body["data"]["login"]["sessionId"],
        roles=("operator",),
        now=datetime.now(UTC),
    )
    socket = await GraphQLSocket.open(plant.ws_url, short.token)
    try:
        await socket.subscribe(TAG_UPDATES, d=plant.device)
        ended = await socket.receive_error()
        after = await socket.receive()
    finally:
        await socket.close()
    assert datetime.now(UTC) >= short.expires_at
    (error,) = ended["payload"]["errors"]
    assert error["extensions"]["code"] == "unauthenticated"
    assert "expired" in error["message"]
    assert after["type"] == "complete"


async def test_subscriptions_refuse_unknown_devices_commands_and_missing_tokens(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    socket = await GraphQLSocket.open(plant.ws_url, token)
    anonymous = await GraphQLSocket.open(plant.ws_url, None)
    try:
        await socket.subscribe(TAG_UPDATES, d="no-such-" + plant.device)
        await socket.subscribe(STATUS, id=str(UUID(int=3)))
        answers = [await socket.receive_error(), await socket.receive_error()]
        await anonymous.subscribe(TAG_UPDATES, d=plant.device)
        refused = await anonymous.receive_error()
    finally:
        await socket.close()
        await anonymous.close()
    codes = sorted(_error_code(message) for message in answers)
    assert codes == ["not_found", "unknown_device"]
    assert _error_code(refused) == "unauthenticated"


def _error_code(message: dict[str, object]) -> str:
    payload = message["payload"]
    errors = payload["errors"] if isinstance(payload, dict) else payload
    assert isinstance(errors, list)
    code: str = errors[0]["extensions"]["code"]
    return code


async def test_a_restarted_dispatcher_settles_a_write_left_dispatched_by_reading(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    app, now = plant.app, datetime.now(UTC)
    before = await plant.store_executor.call(app.recorder.max_notification_id) or 0
    # A previous dispatcher recorded the dispatch and died before the reply.
    ticket = await plant.store_executor.call(
        app.request_command,
        actor=plant.username,
        device=plant.device,
        tag="speed_setpoint",
        value=900,
        at=now,
    )
    command_id = ticket.command_id
    await plant.store_executor.call(
        app.confirm_command,
        actor=plant.username,
        command_id=command_id,
        totp_step=plant.totp.timecode(now),
        at=now,
    )
    await plant.store_executor.call(app.record_dispatch, command_id, now)

    def reads_900(request: WriteRequest) -> WriteReply:
        return WriteReply(ok=True, tag=request.tag, read_back=900)

    responder = await Responder(reads_900).start(plant.nc, plant.device)
    plant.follow(plant.dispatcher(initial=before))

    async def settled() -> None:
        command = await plant.store_executor.call(app.get_command, command_id)
        assert command.status is CommandStatus.SUCCEEDED
        assert command.read_back == 900

    await eventually(settled)
    await responder.stop()
    # Never written a second time: only read back.
    assert [(r.op, r.command_id) for r in responder.requests] == [("read", str(command_id))]


async def test_the_dispatcher_position_is_tracked_in_the_store(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    dispatcher = plant.dispatcher(initial=plant.start_position)
    plant.follow(dispatcher)
    token = await plant.login()
    after_login = await plant.store_executor.call(plant.app.recorder.max_notification_id)
    assert after_login is not None
    body = await plant.gql(
        """mutation($d: String!) { requestCommand(device: $d, tag: "speed", value: 1)
        { commandId } }""",
        token,
        d=plant.device,
    )
    assert body["errors"][0]["extensions"]["code"] == "not_writable"
    latest = await plant.store_executor.call(plant.app.recorder.max_notification_id)

    async def tracked() -> None:
        assert await dispatcher._position.load() == latest

    await eventually(tracked)
