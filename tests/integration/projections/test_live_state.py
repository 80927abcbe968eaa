"""The live-state projection keeps the newest sample per tag and the status per device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from domain.messages import (
    ConnectionState,
    DeviceStatus,
    Quality,
    QualityReason,
    Sample,
    TagValue,
    TelemetryBatch,
)
from projections.dead_letter import DeadLetters
from projections.live_reader import known_devices, read_device, read_status
from projections.live_state import LIVE_STATE_FEED, LiveState
from tests.integration.projections.conftest import Consumers, wait_consumed
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)


def batch(device: str, ts: datetime, unit: str = "rpm", **values: TagValue) -> TelemetryBatch:
    samples = tuple(Sample(tag, v, Quality.GOOD, unit, ts) for tag, v in values.items())
    return TelemetryBatch(device=device, ts=ts, samples=samples)


@pytest.fixture
async def device(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    name = unique("press")
    yield name
    await redis_client.delete(f"plant:live:{name}", f"plant:status:{name}")
    await redis_client.srem("plant:devices", name)


async def test_telemetry_and_status_land_in_redis(
    js: JetStreamContext, redis_client: aioredis.Redis, device: str, consumers: Consumers
) -> None:
    live = LiveState(redis_client)
    # NATS 2.9 takes one filter subject per consumer: one for each of the device's subjects.
    for kind in ("telemetry", "status"):
        consumer = LIVE_STATE_FEED.consumer(
            js, live.apply, durable=unique("live"), filter_subject=f"plant.{kind}.{device}"
        )
        await consumers.start(consumer)

    await js.publish(
        f"plant.telemetry.{device}", batch(device, T0, speed=1184, running=True).encode()
    )
    later = T0 + timedelta(seconds=1)
    await js.publish(f"plant.telemetry.{device}", batch(device, later, speed=1190.5).encode())
    status = DeviceStatus(device, ConnectionState.DISCONNECTED, T0, detail="refused", reconnects=2)
    await js.publish(f"plant.status.{device}", status.encode())

    async def stored() -> None:
        assert await read_device(redis_client, device) == [
            Sample("running", True, Quality.GOOD, "rpm", T0),
            Sample("speed", 1190.5, Quality.GOOD, "rpm", later),
        ]
        assert await read_status(redis_client, device) == status

    await eventually(stored)
    assert device in await known_devices(redis_client)
    raw = await redis_client.hget(f"plant:live:{device}", "speed")
    assert raw is not None
    assert json.loads(raw) == {
        "value": 1190.5,
        "quality": "good",
        "unit": "rpm",
        "ts": "2026-11-23T09:15:03.120Z",
    }


async def test_an_unreachable_device_keeps_its_last_values_with_quality_bad(
    js: JetStreamContext, redis_client: aioredis.Redis, device: str, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{device}"
    durable = unique("live")
    await consumers.start(
        LIVE_STATE_FEED.consumer(
            js, LiveState(redis_client).apply, durable=durable, filter_subject=subject
        )
    )
    lost = T0 + timedelta(seconds=3)
    held = TelemetryBatch(
        device,
        lost,
        (
            Sample("speed", 1184, Quality.BAD, "rpm", lost, QualityReason.COMM_LOSS, T0),
            Sample("running", None, Quality.BAD, "", lost, QualityReason.COMM_LOSS),
        ),
    )

    await js.publish(subject, batch(device, T0, speed=1184).encode())
    ack = await js.publish(subject, held.encode())

    await wait_consumed(js, durable, ack.seq)
    assert await read_device(redis_client, device) == [
        Sample("running", None, Quality.BAD, "", lost, "comm_loss"),
        Sample("speed", 1184, Quality.BAD, "rpm", lost, "comm_loss", T0),
    ]
    raw = await redis_client.hget(f"plant:live:{device}", "speed")
    assert raw is not None
    assert json.loads(raw) == {
        "value": 1184,
        "quality": "bad",
        "unit": "rpm",
        "ts": "2026-11-23T09:15:05.120Z",
        "reason": "comm_loss",
        "value_ts": "2026-11-23T09:15:02.120Z",
    }


async def test_a_bad_sample_without_a_value_keeps_the_stored_value(
    redis_client: aioredis.Redis, device: str
) -> None:
    """A supervisor restarted while its device is away has no value to hold: the live state has."""
    live = LiveState(redis_client)
    held_since = T0 - timedelta(seconds=30)
    await live.apply(
        [
            TelemetryBatch(
                device,
                T0,
                (
                    Sample("speed", 1184, Quality.GOOD, "rpm", T0),
                    # Seventeen digits: copied as stored, not re-encoded with fewer.
                    Sample("ratio", 0.30000000000000004, Quality.GOOD, "", T0),
                    Sample("running", True, Quality.GOOD, "", T0),
                    Sample(
                        "level", 7.5, Quality.BAD, "m", T0, QualityReason.READ_FAILED, held_since
                    ),
                ),
            )
        ]
    )
    restarted = T0 + timedelta(minutes=5)
    units = {"speed": "rpm", "ratio": "", "running": "", "level": "m", "pressure": "bar"}
    unknown = TelemetryBatch(
        device,
        restarted,
        tuple(
            Sample(tag, None, Quality.BAD, unit, restarted, QualityReason.COMM_LOSS)
            for tag, unit in units.items()
        ),
    )

    await live.apply([unknown])
    await live.apply([unknown])  # redelivered

    assert await read_device(redis_client, device) == [
        Sample("level", 7.5, Quality.BAD, "m", restarted, "comm_loss", held_since),
        Sample("pressure", None, Quality.BAD, "bar", restarted, "comm_loss"),
        Sample("ratio", 0.30000000000000004, Quality.BAD, "", restarted, "comm_loss", T0),
        Sample("running", True, Quality.BAD, "", restarted, "comm_loss", T0),
        Sample("speed", 1184, Quality.BAD, "rpm", restarted, "comm_loss", T0),
    ]
    raw = await redis_client.hget(f"plant:live:{device}", "speed")
    assert raw is not None
    assert json.loads(raw) == {
        "value": 1184,
        "quality": "bad",
        "unit": "rpm",
        "ts": "2026-11-23T09:20:02.120Z",
        "reason": "comm_loss",
        "value_ts": "2026-11-23T09:15:02.120Z",
    }


async def test_a_kept_value_gives_way_to_newer_values_and_never_to_older_ones(
    redis_client: aioredis.Redis, device: str
) -> None:
    live = LiveState(redis_client)
    back, failed = T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)

    def unknown(ts: datetime) -> TelemetryBatch:
        sample = Sample("speed", None, Quality.BAD, "rpm", ts, QualityReason.COMM_LOSS)
        return TelemetryBatch(device, ts, (sample,))

    async def speed() -> Sample:
        [stored] = await read_device(redis_client, device)
        return stored

    await live.apply([batch(device, T0, speed=1184), unknown(T0)])  # the same time: no value_ts
    assert await speed() == Sample("speed", 1184, Quality.BAD, "rpm", T0, "comm_loss")

    await live.apply([batch(device, back, speed=1190)])
    assert await speed() == Sample("speed", 1190, Quality.GOOD, "rpm", back)
    raw = await redis_client.hget(f"plant:live:{device}", "speed")
    assert raw is not None
    assert set(json.loads(raw)) == {"value", "quality", "unit", "ts"}

    held = Sample("speed", 1195, Quality.BAD, "rpm", failed, QualityReason.READ_FAILED, back)
    await live.apply([TelemetryBatch(device, failed, (held,))])
    assert await speed() == held

    await live.apply([unknown(back), batch(device, T0, speed=1)])  # late
    assert await speed() == held


async def test_an_older_sample_never_overwrites_a_newer_one(
    js: JetStreamContext, redis_client: aioredis.Redis, device: str, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{device}"
    durable = unique("live")
    await consumers.start(
        LIVE_STATE_FEED.consumer(
            js, LiveState(redis_client).apply, durable=durable, filter_subject=subject
        )
    )
    newer = T0 + timedelta(seconds=5)

    await js.publish(subject, batch(device, newer, speed=2).encode())
    ack = await js.publish(subject, batch(device, T0, speed=1, level=7).encode())

    await wait_consumed(js, durable, ack.seq)
    assert await read_device(redis_client, device) == [
        Sample("level", 7, Quality.GOOD, "rpm", T0),
        Sample("speed", 2, Quality.GOOD, "rpm", newer),
    ]


async def test_equal_timestamps_replace_and_status_is_order_safe(
    redis_client: aioredis.Redis, device: str
) -> None:
    live = LiveState(redis_client)
    late = DeviceStatus(device, ConnectionState.CONNECTING, T0 - timedelta(seconds=1))
    connected = DeviceStatus(device, ConnectionState.CONNECTED, T0)

    await live.apply([batch(device, T0, speed=1), connected, late])
    await live.apply([batch(device, T0, unit="m/s", speed=1)])  # redelivered or corrected

    assert await read_device(redis_client, device) == [Sample("speed", 1, Quality.GOOD, "m/s", T0)]
    assert await read_status(redis_client, device) == connected


async def test_malformed_messages_are_dead_lettered_and_do_not_block(
    js: JetStreamContext,
    redis_client: aioredis.Redis,
    device: str,
    consumers: Consumers,
    dead_letters: DeadLetters,
) -> None:
    subject = f"plant.telemetry.{device}"
    durable = unique("live")
    await consumers.start(
        LIVE_STATE_FEED.consumer(
            js,
            LiveState(redis_client).apply,
            dead_letters=dead_letters,
            durable=durable,
            filter_subject=subject,
        )
    )

    await js.publish(subject, b"{not json")
    await js.publish(
        subject, batch(device, T0, ghost=1).encode().replace(b'"schema":1', b'"schema":2')
    )
    ack = await js.publish(subject, batch(device, T0, speed=3).encode())

    await wait_consumed(js, durable, ack.seq)
    assert await read_device(redis_client, device) == [Sample("speed", 3, Quality.GOOD, "rpm", T0)]
    assert dead_letters.counts() == {(durable, "malformed"): 2}


async def test_unknown_device_reads_empty(redis_client: aioredis.Redis) -> None:
    device = unique("nobody")
    assert await read_device(redis_client, device) == []
    assert await read_status(redis_client, device) is None
    assert device not in await known_devices(redis_client)


async def test_an_unreadable_stored_value_is_replaced(
    redis_client: aioredis.Redis, device: str
) -> None:
    await redis_client.hset(f"plant:live:{device}", "speed", "garbage")

    await LiveState(redis_client).apply([batch(device, T0, speed=4)])

    assert await read_device(redis_client, device) == [Sample("speed", 4, Quality.GOOD, "rpm", T0)]
