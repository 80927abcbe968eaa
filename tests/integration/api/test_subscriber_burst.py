"""Hundreds of HMIs subscribing at once, as they do after a restart: none is dropped.

Each subscription reads its snapshot from the live state in Redis as it
starts; a burst of them once found the connection pool exhausted and ended
with an error instead of a snapshot. Every subscriber here connects at the
same moment and must receive its snapshot, for ``tagUpdates`` and
``deviceStatus`` alike.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from domain.messages import ConnectionState, DeviceStatus, Quality, Sample
from projections.live_state import LIVE_KEY, STATUS_KEY, sample_json
from tests.graphql_client import GraphQLSocket
from tests.integration.api.conftest import PlantFactory

pytestmark = pytest.mark.integration

SUBSCRIBERS = 200
TAG_UPDATES = "subscription($d: String!) { tagUpdates(device: $d) { tag value snapshot } }"
DEVICE_STATUS = "subscription($d: [String!]) { deviceStatus(devices: $d) { state snapshot } }"


async def first_message(url: str, token: str, query: str, device: str) -> dict[str, Any]:
    """Connect, subscribe and return the subscription's first message."""
    socket = await GraphQLSocket.open(url, token)
    try:
        await socket.subscribe(query, d=device)
        return await socket.receive()
    finally:
        await socket.close()


async def test_a_burst_of_subscribers_each_gets_its_snapshot(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    now = datetime.now(UTC)
    live, status = LIVE_KEY.format(device=plant.device), STATUS_KEY.format(device=plant.device)
    speed = Sample("speed", 1000, Quality.GOOD, "", now)
    await redis_client.hset(live, "speed", sample_json(speed))
    up = DeviceStatus(plant.device, ConnectionState.CONNECTED, now, "", 0)
    await redis_client.set(status, up.encode())
    queries = [TAG_UPDATES, DEVICE_STATUS] * (SUBSCRIBERS // 2)
    try:
        firsts = await asyncio.gather(
            *(first_message(plant.ws_url, token, query, plant.device) for query in queries)
        )
    finally:
        await redis_client.delete(live, status)
    errors = [message for message in firsts if "errors" in message.get("payload", {})]
    assert errors == [], f"{len(errors)} of {SUBSCRIBERS} dropped, the first: {errors[0]}"
    assert [m["type"] for m in firsts] == ["next"] * SUBSCRIBERS
    assert [m["payload"]["data"] for m in firsts] == [
        {"tagUpdates": {"tag": "speed", "value": 1000.0, "snapshot": True}},
        {"deviceStatus": {"state": "CONNECTED", "snapshot": True}},
    ] * (SUBSCRIBERS // 2)
