"""The count of every device's polls, as the history and the live state hold them.

Each press answers the next number at every read of its ``read_sequence``
(:data:`simulators.modbus_server.READ_SEQUENCE`), from 1. So in the history,
per device, the good samples of that tag must hold each number from 1 up to
the latest exactly once: a repeat is a sample stored twice, a gap one lost.
The one loss no software can prevent is a poll answered by the device in the
instant before the plant core was killed (its answer dies with the process):
such a gap, of one number exactly at a kill, is excused and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import nats
import nats.errors
from nats.js.api import ConsumerConfig, DeliverPolicy

from domain.messages import TelemetryBatch
from projections.live_state import LIVE_KEY
from simulators.modbus_server import READ_SEQUENCE
from tests.drills.stack import DRILL_TAGS, DrillStack

SEQUENCE_TAG = READ_SEQUENCE.tag.name
TELEMETRY_STREAM = "TELEMETRY"
TELEMETRY_SUBJECTS = "plant.telemetry.>"
TAG_NAMES = frozenset(tag["name"] for tag in DRILL_TAGS)


@dataclass(frozen=True)
class DeviceSequence:
    """One device's good ``read_sequence`` samples in the history."""

    device: str
    stored: int
    distinct: int
    first: int
    last: int
    last_time: datetime

    @property
    def repeated(self) -> int:
        return self.stored - self.distinct

    @property
    def missing(self) -> int:
        return self.last - self.first + 1 - self.distinct


@dataclass(frozen=True)
class Gap:
    """Numbers missing from one device's history, between two samples stored."""

    device: str
    first_missing: int
    last_missing: int
    before: datetime  # the sample just before the gap
    after: datetime  # the sample just after it

    @property
    def width(self) -> int:
        return self.last_missing - self.first_missing + 1


@dataclass(frozen=True)
class Kill:
    """When the plant core was killed, and when it served again."""

    at: datetime
    restarted: datetime

    def excuses(self, gap: Gap) -> bool:
        """One number lost exactly at this kill: answered by the device, never published."""
        return gap.width == 1 and gap.before <= self.at and gap.after >= self.at


async def sequences(stack: DrillStack) -> dict[str, DeviceSequence]:
    rows = await stack.fetch(
        "SELECT device, count(*) AS stored, count(DISTINCT value) AS distinct_values,"
        " min(value)::bigint AS first, max(value)::bigint AS last, max(time) AS last_time"
        " FROM samples WHERE tag = $1 AND quality = 'good' GROUP BY device",
        SEQUENCE_TAG,
    )
    return {
        row["device"]: DeviceSequence(
            row["device"],
            row["stored"],
            row["distinct_values"],
            row["first"],
            row["last"],
            row["last_time"],
        )
        for row in rows
    }


async def gaps(stack: DrillStack) -> list[Gap]:
    rows = await stack.fetch(
        "SELECT device, value::bigint + 1 AS first_missing, next::bigint - 1 AS last_missing,"
        " time AS before, next_time AS after FROM ("
        "   SELECT device, value, time, lead(value) OVER w AS next, lead(time) OVER w AS next_time"
        "   FROM samples WHERE tag = $1 AND quality = 'good'"
        "   WINDOW w AS (PARTITION BY device ORDER BY value)"
        " ) numbered WHERE next > value + 1 ORDER BY device, value",
        SEQUENCE_TAG,
    )
    return [
        Gap(row["device"], row["first_missing"], row["last_missing"], row["before"], row["after"])
        for row in rows
    ]


async def stored_between(
    stack: DrillStack, since: dict[str, int], until: dict[str, int]
) -> dict[str, int]:
    """Per device, the distinct numbers stored in ``(since, until]``."""
    devices = sorted(until)
    rows = await stack.fetch(
        "SELECT b.device, count(DISTINCT s.value) AS stored"
        " FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS b(device, low, high)"
        " JOIN samples s ON s.device = b.device AND s.tag = $1 AND s.quality = 'good'"
        "  AND s.value > b.low AND s.value <= b.high"
        " GROUP BY b.device",
        SEQUENCE_TAG,
        devices,
        [since.get(device, 0) for device in devices],
        [until[device] for device in devices],
    )
    return {row["device"]: row["stored"] for row in rows}


def unexcused(found: Iterable[Gap], kills: Sequence[Kill]) -> tuple[list[Gap], list[Gap]]:
    """The gaps a kill excuses, and the others: samples lost."""
    excused, lost = [], []
    for gap in found:
        (excused if any(kill.excuses(gap) for kill in kills) else lost).append(gap)
    return excused, lost


@dataclass(frozen=True)
class LiveSample:
    value: object
    quality: str
    ts: str
    reason: str | None  # why a sample is not good: comm_loss, say


async def live_samples(stack: DrillStack, device: str) -> dict[str, LiveSample]:
    """The device's hash in Redis: each tag's latest sample, as the live state wrote it."""
    async with stack.live_state() as redis:
        fields = await redis.hgetall(LIVE_KEY.format(device=device))
    samples = {}
    for tag, payload in fields.items():
        entry = json.loads(payload)
        samples[tag] = LiveSample(
            entry["value"], entry["quality"], entry["ts"], entry.get("reason")
        )
    return samples


async def published_copies(stack: DrillStack, first: int, last: int) -> tuple[int, int]:
    """Telemetry messages the stream took in its sequence ``[first, last]``, and the distinct
    batches among them (a device's poll is one batch: its device and time)."""
    if last < first:
        return 0, 0
    nc = await nats.connect(stack.nats.url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            TELEMETRY_SUBJECTS,
            stream=TELEMETRY_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first
            ),
        )
        messages, batches = 0, set()
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except nats.errors.TimeoutError:
                break  # nothing more on these subjects
            if msg.metadata.sequence.stream > last:
                break
            batch = TelemetryBatch.decode(msg.data)
            messages += 1
            batches.add((batch.device, batch.ts))
        await sub.unsubscribe()
        return messages, len(batches)
    finally:
        await nc.close()
