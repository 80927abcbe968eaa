"""Live state in Redis: the latest sample of every tag and the status of every device.

Keys (the contract :mod:`projections.live_reader` and integrators read):

- ``plant:live:<device>``: a hash, field = tag, value = JSON
  ``{"value", "quality", "unit", "ts"}``, and for a sample that is not good
  ``"reason"`` and ``"value_ts"`` (when the held value was read), as on the wire.
  A sample that is not good and has no value keeps the value stored before it,
  with its ``value_ts`` (see :attr:`~domain.messages.Sample.lost_its_value`).
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

from domain.messages import (
    DeviceStatus,
    MalformedMessage,
    Sample,
    TelemetryBatch,
    format_ts,
)
from projections.consumer import Feed
from projections.storable import check_status, check_telemetry
from projections.store_outage import REDIS_UNAVAILABLE
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
# A sample that keeps the stored value (Sample.lost_its_value) takes everything but
# its null from the sample: the value and when it was read come from the stored
# one. A supervisor restarted while its device is away has no value to hold, and
# it may not read this state to find one (ADR 0031); the stored value is the last
# known one, and an operator needs it most then. It is done here, in the same
# script, so that the value kept is the one the compare-and-set saw. Its JSON text
# is copied as stored: cjson would re-encode a number with 14 significant digits.
#
# KEYS[1]: the devices set; KEYS[2..]: hashes and status keys.
# ARGV: the number of devices, the devices, then one argument per write, its five parts
#       joined by the unit separator (byte 31): key index, hash field ('' for a status
#       key), ts, '1' if it keeps the stored value, and last the JSON payload, which may
#       hold anything. One argument, not five: the client's cost is per argument, and a
#       fetch of 256 batches is over 5,000 writes (ADR 0041). No field or ts holds the
#       separator: tag names are checked before (projections.storable), ts is format_ts's.
_COMPARE_AND_SET = """
local function readable(stored)
    if not stored then return nil end
    local ok, old = pcall(cjson.decode, stored)
    if ok and type(old) == 'table' and type(old.ts) == 'string' then return old end
    return nil
end
local function keeping(payload, stored, old, ts)
    if type(old.value) ~= 'number' and type(old.value) ~= 'boolean' then return payload end
    -- Outside a JSON string, '"value":' can only be the key.
    local value = string.match(stored, '"value":%s*([^,}%s]+)')
    if not value then return payload end
    local value_ts = old.ts
    if type(old.value_ts) == 'string' then value_ts = old.value_ts end
    payload = string.gsub(payload, '"value":null', '"value":' .. value, 1)
    if value_ts == ts then return payload end
    return string.sub(payload, 1, -2) .. ',"value_ts":' .. cjson.encode(value_ts) .. '}'
end
local devices = tonumber(ARGV[1])
for i = 2, devices + 1 do
    redis.call('SADD', KEYS[1], ARGV[i])
end
for i = devices + 2, #ARGV do
    local index, field, ts, keeps, payload =
        string.match(ARGV[i], '^(%d+)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031(.*)$')
    local key = KEYS[tonumber(index)]
    if field == '' then
        local old = readable(redis.call('GET', key))
        if not old or old.ts <= ts then redis.call('SET', key, payload) end
    else
        local stored = redis.call('HGET', key, field)
        local old = readable(stored)
        if not old or old.ts <= ts then
            if old and keeps == '1' then payload = keeping(payload, stored, old, ts) end
            redis.call('HSET', key, field, payload)
        end
    end
end
return 0
"""


def sample_json(sample: Sample) -> str:
    """A hash value: the sample as on the wire, without its tag, which is the field."""
    stored = sample.to_json()
    del stored["tag"]
    return json.dumps(stored, separators=(",", ":"))


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
        writes: list[str] = []

        def add(key: str, field: str, ts: str, payload: str, keeps: bool = False) -> None:
            if key not in key_index:
                keys.append(key)
                key_index[key] = len(keys)  # Lua counts from 1
            writes.append(
                f"{key_index[key]}\x1f{field}\x1f{ts}\x1f{'1' if keeps else ''}\x1f{payload}"
            )

        for message in messages:
            if isinstance(message, DeviceStatus):
                key = STATUS_KEY.format(device=message.device)
                add(key, "", format_ts(message.ts), message.encode().decode())
            else:
                key = LIVE_KEY.format(device=message.device)
                for sample in message.samples:
                    ts = format_ts(sample.ts)
                    add(key, sample.tag, ts, sample_json(sample), sample.lost_its_value)
        devices = sorted({m.device for m in messages})
        await self._script(keys=keys, args=[len(devices), *devices, *writes])


# From everything the stream retains, not from each subject's last message: a
# batch need not carry every tag of its device.
LIVE_STATE_FEED: Feed[LiveMessage] = Feed(
    stream="TELEMETRY",
    durable="live-state",
    filter_subject="plant.>",
    decode=decode_live,
    transient=REDIS_UNAVAILABLE,
    # Redis stores any bytes: only what cannot be encoded on the way is refused
    # (a value JSON or the client cannot encode).
    refused=(ValueError, OverflowError, redis.exceptions.DataError),
)
