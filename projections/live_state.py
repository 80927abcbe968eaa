"""Live state in Redis: the latest sample of every tag and the status of every device.

Keys (the contract :mod:`projections.live_reader` and integrators read):

- ``plant:live:<device>``: a hash, field = tag, value = JSON
  ``{"value", "quality", "unit", "ts"}``.
- ``plant:status:<device>``: the device's :class:`~domain.messages.DeviceStatus`
  as it travels on NATS.
- ``plant:devices``: the set of devices seen.

Nothing here is the only copy of anything: the stream and the history table
hold every sample, and this projection can be rebuilt by replaying the stream.
A message that cannot be stored (:mod:`projections.storable`) is dead-lettered,
not written: a sample stamped far in the future would otherwise win the
compare-and-set below until that time comes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis.asyncio as aioredis
import redis.exceptions

from domain.messages import DeviceStatus, MalformedMessage, Sample, TelemetryBatch, format_ts
from projections.consumer import Feed
from projections.storable import check_status, check_telemetry
from support.clock import utc_now

LIVE_KEY = "plant:live:{device}"
STATUS_KEY = "plant:status:{device}"
DEVICES_KEY = "plant:devices"

LiveMessage = TelemetryBatch | DeviceStatus

# One round trip per batch, and atomic: a value replaces the stored one only if
# the stored one is older or equal, so a redelivered or late message never wins
# over a newer one. Timestamps are compared as strings: format_ts writes every
# one as fixed-width UTC ISO 8601 with milliseconds, which sorts chronologically.
# A stored value that cannot be read is replaced rather than halting the projection.
#
# KEYS[1]: the devices set; KEYS[2..]: hashes and status keys.
# ARGV: the number of devices, the devices, then groups of four:
#       key index, hash field ('' for a status key), ts, JSON payload.
_COMPARE_AND_SET = """
local function replaceable(stored, ts)
    if not stored then return true end
    local ok, old = pcall(cjson.decode, stored)
    if not ok or type(old) ~= 'table' or type(old.ts) ~= 'string' then return true end
    return old.ts <= ts
end
local devices = tonumber(ARGV[1])
for i = 2, devices + 1 do
    redis.call('SADD', KEYS[1], ARGV[i])
end
for i = devices + 2, #ARGV, 4 do
    local key, field, ts, payload = KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if field == '' then
        if replaceable(redis.call('GET', key), ts) then redis.call('SET', key, payload) end
    elseif replaceable(redis.call('HGET', key, field), ts) then
        redis.call('HSET', key, field, payload)
    end
end
return 0
"""


def sample_json(sample: Sample) -> str:
    """A hash value: the sample without its tag, which is the field."""
    return json.dumps(
        {
            "value": sample.value,
            "quality": sample.quality.value,
            "unit": sample.unit,
            "ts": format_ts(sample.ts),
        },
        separators=(",", ":"),
    )


def decode_live(subject: str, data: bytes) -> LiveMessage | None:
    """Telemetry and status are stored; any other subject is none of our business."""
    message: LiveMessage
    if subject.startswith("plant.telemetry."):
        message = TelemetryBatch.decode(data)
    elif subject.startswith("plant.status."):
        message = DeviceStatus.decode(data)
    else:
        return None
    if subject.rsplit(".", 1)[1] != message.device:
        raise MalformedMessage(f"device {message.device!r} does not match the subject")
    if isinstance(message, DeviceStatus):
        return check_status(message, utc_now())
    return check_telemetry(message, utc_now())


class LiveState:
    """Writes batches of telemetry and status messages into Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_COMPARE_AND_SET)

    async def apply(self, messages: Sequence[LiveMessage]) -> None:
        keys: list[str] = [DEVICES_KEY]
        key_index: dict[str, int] = {}
        writes: list[str | int] = []

        def add(key: str, field: str, ts: str, payload: str) -> None:
            if key not in key_index:
                keys.append(key)
                key_index[key] = len(keys)  # Lua counts from 1
            writes.extend((key_index[key], field, ts, payload))

        for message in messages:
            if isinstance(message, DeviceStatus):
                key = STATUS_KEY.format(device=message.device)
                add(key, "", format_ts(message.ts), message.encode().decode())
            else:
                key = LIVE_KEY.format(device=message.device)
                for sample in message.samples:
                    add(key, sample.tag, format_ts(sample.ts), sample_json(sample))
        devices = sorted({m.device for m in messages})
        await self._script(keys=keys, args=[len(devices), *devices, *writes])


# From everything the stream retains, not from each subject's last message: a
# batch need not carry every tag of its device.
LIVE_STATE_FEED: Feed[LiveMessage] = Feed(
    stream="TELEMETRY",
    durable="live-state",
    filter_subject="plant.>",
    decode=decode_live,
    transient=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
    # Redis stores any bytes: only what cannot be encoded on the way is refused
    # (a value JSON or the client cannot encode).
    refused=(ValueError, OverflowError, redis.exceptions.DataError),
)
