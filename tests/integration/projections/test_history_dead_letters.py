"""A telemetry batch history cannot store goes to the dead-letter stream; history goes on.

Each kind of bad message is published between two good ones, before the
consumer runs, so that all three arrive in one batch: the good ones must be
written, the bad one dead-lettered with its reason and counted, and a later
good one written too. Real JetStream and PostgreSQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js import JetStreamContext

from domain.messages import Quality, Sample, TelemetryBatch, format_ts
from projections.dead_letter import DeadLetters
from projections.history import HISTORY_FEED, HistoryWriter, query_history
from tests.integration.projections.conftest import STREAM, Consumers, History, wait_consumed
from tests.integration.projections.dead_letter_checks import Refused, assert_dead_lettered
from tests.support import unique

pytestmark = pytest.mark.integration


def now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def good(device: str, ts: datetime, speed: int) -> bytes:
    return TelemetryBatch(device, ts, (Sample("speed", speed, Quality.GOOD, "rpm", ts),)).encode()


def telemetry(device: str, at: datetime, **sample: object) -> bytes:
    """A batch of one sample, written by hand: the encoder would refuse some of these."""
    fields = {"tag": "torque", "value": 1, "quality": "good", "unit": "Nm", "ts": format_ts(at)}
    return json.dumps(
        {"schema": 1, "device": device, "ts": format_ts(at), "samples": [fields | sample]}
    ).encode()


BadBatch = Callable[[str, datetime], Refused]

CASES = [
    pytest.param(
        lambda device, ts: Refused(b"\x00not json", "malformed", "not JSON"), id="not-json"
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, tag="tor\x00que"), "control_character", "U+0000"
        ),
        id="nul-in-tag",
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, tag="torque Nm"), "unknown_name", "'torque Nm'"
        ),
        id="tag-no-plant-file-can-name",
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, ts="9999-12-31T23:59:59.000Z"),
            "timestamp_out_of_range",
            "9999-12-31T23:59:59.000Z is more than",
        ),
        id="year-9999",
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, ts="1969-12-31T23:59:59.000Z"),
            "timestamp_out_of_range",
            "is before 1970",
        ),
        id="before-1970",
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, ts="0001-01-01T00:00:00+01:00"), "malformed", "OverflowError"
        ),
        id="time-before-year-1-in-utc",
    ),
    pytest.param(
        lambda device, ts: Refused(
            telemetry(device, ts, value=10**400), "number_out_of_range", "not a finite double"
        ),
        id="integer-beyond-a-double",
    ),
    pytest.param(
        # Valid characters, but too long for the unique index: only PostgreSQL can tell.
        lambda device, ts: Refused(
            telemetry(device, ts, tag=os.urandom(2000).hex()),
            "refused_by_store",
            "ProgramLimitExceededError: index row size",
        ),
        id="tag-too-long-for-the-index",
    ),
]


async def speeds(pool: asyncpg.Pool, history: History, device: str) -> list[float | None]:
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    points = await query_history(pool, device, "speed", start, end, table=history.table)
    return [point.value for point in points]


@pytest.mark.parametrize("bad", CASES)
async def test_a_batch_history_cannot_store_is_dead_lettered_and_history_goes_on(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    history: History,
    consumers: Consumers,
    dead_letters: DeadLetters,
    bad: BadBatch,
) -> None:
    device = unique("press")
    subject = f"plant.telemetry.{device}"
    durable = unique("history")
    writer = HistoryWriter(pool, history.partitions, table=history.table)
    consumer = HISTORY_FEED.consumer(
        js, writer.write, dead_letters=dead_letters, durable=durable, filter_subject=subject
    )
    await consumer.ensure()
    t0 = now_ms()
    refused = bad(device, t0 + timedelta(seconds=1))
    await js.publish(subject, good(device, t0, 1))
    refused_seq = (await js.publish(subject, refused.payload)).seq
    await js.publish(subject, good(device, t0 + timedelta(seconds=2), 2))

    await consumers.start(consumer)

    await assert_dead_lettered(
        js, dead_letters, durable=durable, stream=STREAM, subject=subject,
        sequence=refused_seq, refused=refused,
    )  # fmt: skip
    later = await js.publish(subject, good(device, t0 + timedelta(seconds=3), 3))
    await wait_consumed(js, durable, later.seq)
    assert await speeds(pool, history, device) == [1.0, 2.0, 3.0]
    rows = await pool.fetchval(f"SELECT count(*) FROM {history.table} WHERE device = $1", device)  # noqa: S608
    assert rows == 3  # nothing of the refused batch
    info = await js.consumer_info(STREAM, durable)
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
