"""Telemetry or status the live state cannot store goes to the dead-letter stream; it goes on.

Each kind of bad message is published between two good ones, before the
consumer runs, so that all three arrive in one batch: the good ones must be
applied, the bad one dead-lettered with its reason and counted, and a later
good one applied too. Real JetStream and Redis. Redis itself refuses nothing
the checks let through, so there is no case of a refusal by the store here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from domain.messages import (
    ConnectionState,
    DeviceStatus,
    Quality,
    Sample,
    TelemetryBatch,
    format_ts,
)
from projections.dead_letter import DeadLetters
from projections.live_reader import read_device, read_status
from projections.live_state import LIVE_STATE_FEED, LiveState
from tests.integration.projections.conftest import STREAM, Consumers, wait_consumed
from tests.integration.projections.dead_letter_checks import Refused, assert_dead_lettered
from tests.support import unique

pytestmark = pytest.mark.integration

BadMessage = Callable[[str, datetime], Refused]
GoodMessage = Callable[[datetime, int], bytes]
# Asserts that the good message of that time and number is what the live state shows.
Shows = Callable[[datetime, int], Awaitable[None]]


def now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def telemetry(device: str, at: datetime, **sample: object) -> bytes:
    """A batch of one sample, written by hand: the encoder would refuse some of these."""
    fields = {"tag": "torque", "value": 1, "quality": "good", "unit": "Nm", "ts": format_ts(at)}
    return json.dumps(
        {"schema": 1, "device": device, "ts": format_ts(at), "samples": [fields | sample]}
    ).encode()


def status(device: str, at: datetime, **fields: object) -> bytes:
    base = {
        "schema": 1, "device": device, "state": "disconnected", "ts": format_ts(at),
        "detail": "connection refused", "reconnects": 1,
    }  # fmt: skip
    return json.dumps(base | fields).encode()


TELEMETRY_CASES = [
    pytest.param(lambda device, at: Refused(b"{not json", "malformed", "not JSON"), id="not-json"),
    pytest.param(
        lambda device, at: Refused(
            telemetry(device, at, unit="N\x00m"), "control_character", "U+0000"
        ),
        id="nul-in-unit",
    ),
    pytest.param(
        lambda device, at: Refused(
            telemetry(device, at, unit="N\ud800m"), "control_character", "not valid Unicode"
        ),
        id="lone-surrogate-in-unit",
    ),
    pytest.param(
        lambda device, at: Refused(
            telemetry(device, at, tag="torque Nm"), "unknown_name", "'torque Nm'"
        ),
        id="tag-no-plant-file-can-name",
    ),
    pytest.param(
        # Stored, it would win every compare-and-set of the tag until the year 9999.
        lambda device, at: Refused(
            telemetry(device, at, tag="speed", ts="9999-12-31T23:59:59.000Z"),
            "timestamp_out_of_range",
            "9999-12-31T23:59:59.000Z is more than",
        ),
        id="year-9999",
    ),
    pytest.param(
        lambda device, at: Refused(
            telemetry(device, at, value=10**400), "number_out_of_range", "not a finite double"
        ),
        id="integer-beyond-a-double",
    ),
]

STATUS_CASES = [
    pytest.param(
        lambda device, at: Refused(
            status(device, at, detail="refused\x00"), "control_character", "U+0000"
        ),
        id="nul-in-detail",
    ),
    pytest.param(
        lambda device, at: Refused(
            status(device, at, ts="1969-07-20T20:17:40.000Z"),
            "timestamp_out_of_range",
            "is before 1970",
        ),
        id="before-1970",
    ),
    pytest.param(
        # The API serves it as a GraphQL Int, a signed 32-bit integer.
        lambda device, at: Refused(
            status(device, at, reconnects=2**31), "number_out_of_range", "is not a count"
        ),
        id="reconnects-beyond-32-bits",
    ),
]


@pytest.fixture
async def device(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    name = unique("press")
    yield name
    await redis_client.delete(f"plant:live:{name}", f"plant:status:{name}")
    await redis_client.srem("plant:devices", name)


async def refuse_between_good_ones(
    js: JetStreamContext,
    consumers: Consumers,
    dead_letters: DeadLetters,
    redis_client: aioredis.Redis,
    subject: str,
    good: GoodMessage,
    shows: Shows,
    bad: BadMessage,
) -> None:
    """Good at t0, bad, good at t0 + 2 s in one batch; then good at t0 + 3 s once through."""
    t0 = now_ms()
    durable = unique("live")
    consumer = LIVE_STATE_FEED.consumer(
        js,
        LiveState(redis_client).apply,
        dead_letters=dead_letters,
        durable=durable,
        filter_subject=subject,
    )
    await consumer.ensure()
    refused = bad(subject.rsplit(".", 1)[1], t0 + timedelta(seconds=1))
    await js.publish(subject, good(t0, 1))
    refused_seq = (await js.publish(subject, refused.payload)).seq
    second = await js.publish(subject, good(t0 + timedelta(seconds=2), 2))

    await consumers.start(consumer)

    await assert_dead_lettered(
        js, dead_letters, durable=durable, stream=STREAM, subject=subject,
        sequence=refused_seq, refused=refused,
    )  # fmt: skip
    await wait_consumed(js, durable, second.seq)
    await shows(t0 + timedelta(seconds=2), 2)
    later = await js.publish(subject, good(t0 + timedelta(seconds=3), 3))
    await wait_consumed(js, durable, later.seq)
    await shows(t0 + timedelta(seconds=3), 3)
    info = await js.consumer_info(STREAM, durable)
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)


@pytest.mark.parametrize("bad", TELEMETRY_CASES)
async def test_telemetry_live_state_cannot_store_is_dead_lettered_and_it_goes_on(
    js: JetStreamContext,
    redis_client: aioredis.Redis,
    device: str,
    consumers: Consumers,
    dead_letters: DeadLetters,
    bad: BadMessage,
) -> None:
    def good(at: datetime, speed: int) -> bytes:
        return TelemetryBatch(
            device, at, (Sample("speed", speed, Quality.GOOD, "rpm", at),)
        ).encode()

    async def shows(at: datetime, speed: int) -> None:
        # Nothing of the refused batch: no torque, and speed not from the year 9999.
        assert await read_device(redis_client, device) == [
            Sample("speed", speed, Quality.GOOD, "rpm", at)
        ]

    await refuse_between_good_ones(
        js, consumers, dead_letters, redis_client, f"plant.telemetry.{device}", good, shows, bad
    )


@pytest.mark.parametrize("bad", STATUS_CASES)
async def test_a_status_live_state_cannot_store_is_dead_lettered_and_it_goes_on(
    js: JetStreamContext,
    redis_client: aioredis.Redis,
    device: str,
    consumers: Consumers,
    dead_letters: DeadLetters,
    bad: BadMessage,
) -> None:
    def connected(at: datetime, reconnects: int) -> DeviceStatus:
        return DeviceStatus(device, ConnectionState.CONNECTED, at, reconnects=reconnects)

    def good(at: datetime, reconnects: int) -> bytes:
        return connected(at, reconnects).encode()

    async def shows(at: datetime, reconnects: int) -> None:
        assert await read_status(redis_client, device) == connected(at, reconnects)

    await refuse_between_good_ones(
        js, consumers, dead_letters, redis_client, f"plant.status.{device}", good, shows, bad
    )
