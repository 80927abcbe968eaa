"""The HMI's live views over graphql-transport-ws: deviceStatus, tagUpdates of many devices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from domain.messages import (
    STATUS_SUBJECT,
    TELEMETRY_SUBJECT,
    ConnectionState,
    DeviceStatus,
    Quality,
    QualityReason,
    Sample,
    TelemetryBatch,
)
from projections.live_state import LIVE_KEY, STATUS_KEY, sample_json
from tests.graphql_client import GraphQLSocket
from tests.integration.api.conftest import OTHER_AREA, Plant, PlantFactory, other_device
from tests.support import eventually

pytestmark = pytest.mark.integration

DEVICE_STATUS = """subscription($devices: [String!], $area: String) {
    deviceStatus(devices: $devices, area: $area) {
        device state ts detail reconnects lastPollAt snapshot } }"""


def _iso(ts: datetime) -> str:
    """``ts`` as it comes back: at the millisecond resolution of the wire."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000).isoformat()


async def _next(socket: GraphQLSocket, field: str) -> dict[str, Any]:
    message = await socket.receive()
    assert "errors" not in message["payload"], message
    update: dict[str, Any] = message["payload"]["data"][field]
    return update


async def test_device_status_sends_the_stored_state_then_every_newer_change(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    now = datetime.now(UTC).replace(microsecond=0)
    read_at, polled_at = now - timedelta(seconds=40), now - timedelta(seconds=10)
    live_key, status_key = (
        LIVE_KEY.format(device=plant.device),
        STATUS_KEY.format(device=plant.device),
    )
    await redis_client.hset(
        live_key,
        mapping={
            "speed": sample_json(Sample("speed", 1184, Quality.GOOD, "rpm", polled_at)),
            "running": sample_json(
                Sample("running", True, Quality.BAD, "", now, QualityReason.COMM_LOSS, read_at)
            ),
        },
    )
    connected = DeviceStatus(plant.device, ConnectionState.CONNECTED, now - timedelta(minutes=1))
    await redis_client.set(status_key, connected.encode())
    lost = DeviceStatus(
        plant.device, ConnectionState.DISCONNECTED, now, detail="connection refused", reconnects=3
    )
    other = DeviceStatus(other_device(plant.device), ConnectionState.CONNECTING, now)
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(DEVICE_STATUS, devices=[plant.device, other_device(plant.device)])
        snapshot = await _next(socket, "deviceStatus")
        heartbeat = replace(connected, ts=now - timedelta(seconds=30))  # no change: dropped
        for status in (connected, heartbeat, lost, other):  # the first is the snapshot's
            await plant.nc.publish(STATUS_SUBJECT.format(device=status.device), status.encode())
        # Each device's changes in order; between devices, in whatever order they come.
        live = sorted(
            [await _next(socket, "deviceStatus") for _ in range(2)], key=lambda u: u["device"]
        )
    finally:
        await socket.close()
        await redis_client.delete(live_key, status_key)
    assert snapshot == {
        "device": plant.device,
        "state": "CONNECTED",
        "ts": _iso(connected.ts),
        "detail": "",
        "reconnects": 0,
        # The newest good read of any tag, not the newest sample (``running`` is held).
        "lastPollAt": _iso(polled_at),
        "snapshot": True,
    }
    assert live == [
        {
            "device": plant.device,
            "state": "DISCONNECTED",
            "ts": _iso(now),
            "detail": "connection refused",
            "reconnects": 3,
            "lastPollAt": _iso(polled_at),
            "snapshot": False,
        },
        {
            "device": other.device,
            "state": "CONNECTING",
            "ts": _iso(now),
            "detail": "",
            "reconnects": 0,
            "lastPollAt": None,
            "snapshot": False,
        },
    ]


async def test_device_status_of_an_area_follows_only_its_devices(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    now = datetime.now(UTC)
    inside = other_device(plant.device)
    status_key = STATUS_KEY.format(device=inside)
    stored = DeviceStatus(inside, ConnectionState.CONNECTING, now - timedelta(seconds=1))
    await redis_client.set(status_key, stored.encode())
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(DEVICE_STATUS, area=OTHER_AREA)
        snapshot = await _next(socket, "deviceStatus")
        for status in (
            DeviceStatus(plant.device, ConnectionState.STOPPED, now),
            DeviceStatus(inside, ConnectionState.CONNECTED, now),
        ):
            await plant.nc.publish(STATUS_SUBJECT.format(device=status.device), status.encode())
        update = await _next(socket, "deviceStatus")
    finally:
        await socket.close()
        await redis_client.delete(status_key)
    assert [(u["device"], u["state"]) for u in (snapshot, update)] == [
        (inside, "CONNECTING"),
        (inside, "CONNECTED"),
    ]


async def test_device_status_refuses_unknown_devices_areas_and_an_empty_list(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    socket = await GraphQLSocket.open(plant.ws_url, token)
    asked: list[dict[str, Any]] = [
        {"devices": [plant.device, "no-such-" + plant.device]},
        {"area": "no-such-area"},
        {"devices": []},
        {"devices": [plant.device], "area": OTHER_AREA},
    ]
    try:
        for variables in asked:
            await socket.subscribe(DEVICE_STATUS, **variables)
        answers = [_error(await socket.receive_error()) for _ in asked]
    finally:
        await socket.close()
    assert sorted((e["extensions"]["code"], e["extensions"]["argument"]) for e in answers) == [
        ("invalid_argument", "devices"),
        ("unknown_area", "area"),
        ("unknown_device", "devices"),
        ("unknown_device", "devices"),
    ]
    messages = {e["message"] for e in answers}
    assert f"unknown device 'no-such-{plant.device}'" in messages
    assert f"device {plant.device!r} is not in area {OTHER_AREA!r}" in messages


def _error(message: dict[str, Any]) -> dict[str, Any]:
    """The one error of an ``error`` message (a list) or of a ``next`` one (``errors``)."""
    payload = message["payload"]
    [error] = payload["errors"] if isinstance(payload, dict) else payload
    assert isinstance(error, dict)
    return error


TAG_UPDATES = """subscription($device: String, $devices: [String!], $area: String) {
    tagUpdates(device: $device, devices: $devices, area: $area) {
        device tag value quality snapshot } }"""


async def _two_devices_seen(
    make_plant: PlantFactory, redis_client: aioredis.Redis, speeds: tuple[int, int]
) -> tuple[Plant, str, list[str]]:
    """A plant whose two devices have a speed in the live state; a token, their keys."""
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    first, second = plant.device, other_device(plant.device)
    then = datetime.now(UTC) - timedelta(seconds=5)
    keys = [LIVE_KEY.format(device=device) for device in (first, second)]
    for key, value in zip(keys, speeds, strict=True):
        await redis_client.hset(
            key, "speed", sample_json(Sample("speed", value, Quality.GOOD, "rpm", then))
        )
    return plant, token, keys


async def test_tag_updates_follow_several_devices_in_one_subscription(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant, token, keys = await _two_devices_seen(make_plant, redis_client, (1000, 2000))
    first, second = plant.device, other_device(plant.device)
    now = datetime.now(UTC)
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(TAG_UPDATES, devices=[first, second])
        snapshot = [await _next(socket, "tagUpdates") for _ in range(2)]
        for device, value in ((second, 2001), (first, 1001)):
            await _publish(plant, device, Sample("speed", value, Quality.GOOD, "rpm", now))
        live = sorted(
            [await _next(socket, "tagUpdates") for _ in range(2)], key=lambda u: u["device"]
        )
    finally:
        await socket.close()
        await redis_client.delete(*keys)
    assert [(u["device"], u["value"], u["snapshot"]) for u in snapshot] == [
        (first, 1000.0, True),
        (second, 2000.0, True),
    ]
    assert [(u["device"], u["value"], u["snapshot"]) for u in live] == [
        (first, 1001.0, False),
        (second, 2001.0, False),
    ]


async def test_tag_updates_of_an_area_leave_its_other_devices_out(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    inside = other_device(plant.device)
    key = LIVE_KEY.format(device=inside)
    then = datetime.now(UTC) - timedelta(seconds=5)
    await redis_client.hset(
        key, "speed", sample_json(Sample("speed", 2000, Quality.GOOD, "rpm", then))
    )
    now = datetime.now(UTC)
    socket = await GraphQLSocket.open(plant.ws_url, token)
    try:
        await socket.subscribe(TAG_UPDATES, area=OTHER_AREA)
        snapshot = await _next(socket, "tagUpdates")
        await _publish(plant, plant.device, Sample("speed", 1, Quality.GOOD, "rpm", now))
        await _publish(plant, inside, Sample("speed", 2001, Quality.GOOD, "rpm", now))
        update = await _next(socket, "tagUpdates")
    finally:
        await socket.close()
        await redis_client.delete(key)
    assert [(u["device"], u["value"]) for u in (snapshot, update)] == [
        (inside, 2000.0),
        (inside, 2001.0),
    ]


async def test_subscribers_of_a_device_share_one_nats_subscription_and_get_only_their_own(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant, token, keys = await _two_devices_seen(make_plant, redis_client, (1000, 1000))
    first, second = plant.device, other_device(plant.device)
    hub = plant.services.hub
    followed = [first, first, first, second]
    sockets = [await GraphQLSocket.open(plant.ws_url, token) for _ in followed]
    try:
        for socket, device in zip(sockets, followed, strict=True):
            await socket.subscribe(TAG_UPDATES, device=device)
            await _next(socket, "tagUpdates")  # its snapshot: it follows its device now
        assert hub.subscriptions() == 2  # one per device, not one per subscriber
        assert [hub.followers(TELEMETRY_SUBJECT.format(device=d)) for d in (first, second)] == [
            3,
            1,
        ]
        now = datetime.now(UTC)
        await _publish(plant, first, Sample("speed", 1001, Quality.GOOD, "rpm", now))
        await _publish(plant, second, Sample("speed", 2001, Quality.GOOD, "rpm", now))
        live = [await _next(socket, "tagUpdates") for socket in sockets]
    finally:
        for socket in sockets:
            await socket.close()
        await redis_client.delete(*keys)
    assert [(u["device"], u["value"], u["snapshot"]) for u in live] == [
        (first, 1001.0, False),
        (first, 1001.0, False),
        (first, 1001.0, False),
        (second, 2001.0, False),  # the first device's sample never reached it
    ]

    async def closed() -> None:
        assert hub.subscriptions() == 0  # the last subscriber of each device closed it

    await eventually(closed)


async def test_tag_updates_refuse_a_selection_that_names_nothing_or_too_much(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await plant.login()
    socket = await GraphQLSocket.open(plant.ws_url, token)
    asked: list[dict[str, Any]] = [
        {},
        {"device": plant.device, "devices": [plant.device]},
        {"devices": ["no-such-" + plant.device]},
        {"area": "no-such-area"},
    ]
    try:
        for variables in asked:
            await socket.subscribe(TAG_UPDATES, **variables)
        answers = [_error(await socket.receive_error()) for _ in asked]
    finally:
        await socket.close()
    assert sorted((e["extensions"]["code"], e["extensions"]["argument"]) for e in answers) == [
        ("invalid_argument", "device"),
        ("invalid_argument", "device"),
        ("unknown_area", "area"),
        ("unknown_device", "devices"),
    ]


async def _publish(plant: Plant, device: str, sample: Sample) -> None:
    batch = TelemetryBatch(device, sample.ts, (sample,))
    await plant.nc.publish(TELEMETRY_SUBJECT.format(device=device), batch.encode())
