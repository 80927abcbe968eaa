"""What the API reads of the live state that :mod:`projections.live_state` writes.

Works with a Redis client with or without ``decode_responses``.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from domain.messages import DeviceStatus, Sample
from projections.live_state import DEVICES_KEY, LIVE_KEY, STATUS_KEY


async def read_device(redis: aioredis.Redis, device: str) -> list[Sample]:
    """The latest sample of every tag of ``device``, sorted by tag; empty if unknown."""
    stored: dict[str | bytes, str | bytes] = await redis.hgetall(LIVE_KEY.format(device=device))
    samples = [
        Sample.from_json({**json.loads(value), "tag": _text(tag)}) for tag, value in stored.items()
    ]
    return sorted(samples, key=lambda sample: sample.tag)


async def read_status(redis: aioredis.Redis, device: str) -> DeviceStatus | None:
    stored: str | bytes | None = await redis.get(STATUS_KEY.format(device=device))
    return None if stored is None else DeviceStatus.decode(_bytes(stored))


async def known_devices(redis: aioredis.Redis) -> list[str]:
    """Every device whose telemetry or status was ever seen, sorted."""
    members: set[str | bytes] = await redis.smembers(DEVICES_KEY)
    return sorted(_text(member) for member in members)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
