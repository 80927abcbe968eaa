"""Login and the devices query against the real services (/health: test_api_exposure.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from api.credentials import TokenSettings, issue_token
from api.graphql.login import LOGIN_REFUSED
from domain.messages import ConnectionState, DeviceStatus, Quality, QualityReason, Sample
from projections.live_state import LIVE_KEY, STATUS_KEY, sample_json
from tests.integration.api.conftest import PASSWORD, TOKENS, PlantFactory

pytestmark = pytest.mark.integration

DEVICES = """{ devices { id status { state detail } tags {
  name value boolValue quality qualityReason valueTimestamp unit writable kind low high } } }"""


async def test_login_gives_a_token_and_refuses_bad_credentials_alike(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    login = """mutation($u: String!, $p: String!) {
        login(username: $u, password: $p) { accessToken expiresAt username roles scopes } }"""
    body = await plant.gql(login, u=plant.username, p=PASSWORD)
    result = body["data"]["login"]
    assert (result["username"], result["roles"]) == (plant.username, ["operator"])
    assert result["scopes"] == [f"device:{plant.device}"]
    expires = datetime.fromisoformat(result["expiresAt"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)

    wrong = await plant.gql(login, u=plant.username, p="wrong")
    unknown = await plant.gql(login, u="nobody-" + plant.username, p=PASSWORD)
    for refused in (wrong, unknown):
        assert refused["data"] is None
        [error] = refused["errors"]
        assert error["message"] == LOGIN_REFUSED
        assert error["extensions"]["code"] == "invalid_credentials"


async def test_devices_lists_the_catalogue_with_live_values_from_redis(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    now = datetime.now(UTC).replace(microsecond=0)
    read_at = now - timedelta(seconds=30)
    key = LIVE_KEY.format(device=plant.device)
    await redis_client.hset(
        key,
        mapping={
            "speed": sample_json(Sample("speed", 1184, Quality.GOOD, "rpm", now)),
            # The device went away: its last known value, held.
            "running": sample_json(
                Sample("running", True, Quality.BAD, "", now, QualityReason.COMM_LOSS, read_at)
            ),
        },
    )
    status = DeviceStatus(plant.device, ConnectionState.CONNECTED, now)
    await redis_client.set(STATUS_KEY.format(device=plant.device), status.encode())
    try:
        body = await plant.gql(DEVICES, token)
    finally:
        await redis_client.delete(key, STATUS_KEY.format(device=plant.device))
    assert "errors" not in body, body
    [device] = [d for d in body["data"]["devices"] if d["id"] == plant.device]
    assert device["status"] == {"state": "CONNECTED", "detail": ""}
    tags = {tag["name"]: tag for tag in device["tags"]}
    assert tags["speed"] == {
        "name": "speed",
        "value": 1184.0,
        "boolValue": None,
        "quality": "GOOD",
        "qualityReason": None,
        "valueTimestamp": now.isoformat(),
        "unit": "rpm",
        "writable": False,
        "kind": "number",
        "low": None,
        "high": None,
    }
    running = tags["running"]
    assert (running["value"], running["boolValue"], running["quality"]) == (1.0, True, "BAD")
    assert (running["qualityReason"], running["valueTimestamp"]) == (
        "comm_loss",
        read_at.isoformat(),
    )
    setpoint = tags["speed_setpoint"]
    assert (setpoint["value"], setpoint["quality"], setpoint["writable"]) == (None, None, True)
    assert (setpoint["qualityReason"], setpoint["valueTimestamp"]) == (None, None)
    assert (setpoint["low"], setpoint["high"]) == (0.0, 1800.0)


async def test_missing_expired_or_forged_tokens_are_unauthenticated(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    expired = issue_token(
        TOKENS,
        username=plant.username,
        session_id="s1",
        roles=("operator",),
        now=datetime.now(UTC) - timedelta(minutes=20),
    ).token
    forger = TokenSettings(secret="forger-" + "y" * 32, audience=TOKENS.audience)
    forged = issue_token(
        forger, username=plant.username, session_id="s1", roles=("admin",), now=datetime.now(UTC)
    ).token
    request = """mutation($d: String!) {
        requestCommand(device: $d, tag: "speed_setpoint", value: 100) { commandId } }"""
    for token, message in ((None, "missing"), (expired, "expired"), (forged, "invalid")):
        for query, variables in ((DEVICES, {}), (request, {"d": plant.device})):
            body = await plant.gql(query, token, **variables)
            assert body["data"] is None
            [error] = body["errors"]
            assert error["extensions"]["code"] == "unauthenticated", error
            assert message in error["message"]


@pytest.mark.parametrize(
    "mutation",
    [
        'acknowledgeAlarm(alarmId: $id, comment: "seen")',
        'shelveAlarm(alarmId: $id, reason: "noisy", minutes: 10)',
        "unshelveAlarm(alarmId: $id)",
        'removeAlarmFromService(alarmId: $id, reason: "sensor out")',
        "returnAlarmToService(alarmId: $id)",
        "resetAlarmLatch(alarmId: $id)",
    ],
)
async def test_a_viewer_may_read_alarms_but_not_act_on_them(
    make_plant: PlantFactory, mutation: str
) -> None:
    plant = await make_plant(dispatcher=False)
    vera = await plant.add_operator(["viewer"], ["plant"])
    viewer = await plant.login(vera.username)
    body = await plant.gql(
        f"mutation($id: ID!) {{ {mutation} {{ state }} }}", viewer, id=str(uuid4())
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "forbidden"
