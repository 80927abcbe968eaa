"""The per-user command rate counter on the machine's real Redis.

Every request time is given explicitly: nothing here waits or reads the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from api.rate_limit import CommandRateCounter
from tests.support import unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=1)


@pytest.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = unique("plant:command_rate:test") + ":"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
def counter(redis_client: aioredis.Redis, prefix: str) -> CommandRateCounter:
    return CommandRateCounter(redis_client, window=WINDOW, prefix=prefix)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_requests_within_the_window_are_counted_one_by_one(
    counter: CommandRateCounter,
) -> None:
    user = unique("op")
    counts = [await counter.hit(user, at(5 * i)) for i in range(6)]
    assert counts == [1, 2, 3, 4, 5, 6]


async def test_requests_older_than_the_window_drop_out(
    counter: CommandRateCounter, redis_client: aioredis.Redis
) -> None:
    user = unique("op")
    assert await counter.hit(user, at(0)) == 1
    assert await counter.hit(user, at(10)) == 2
    assert await counter.hit(user, at(30)) == 3
    # The window ending at 60 s is (0 s, 60 s]: the request at 0 s is out.
    assert await counter.hit(user, at(60)) == 3
    # (35 s, 95 s]: only the requests at 60 s and 95 s remain.
    assert await counter.hit(user, at(95)) == 2
    # Dropped from Redis, not merely left uncounted.
    assert await redis_client.zcard(counter.key(user)) == 2
    # After a pause longer than the window, a user starts again from one.
    assert await counter.hit(user, at(95 + 61)) == 1


async def test_users_are_counted_independently(counter: CommandRateCounter) -> None:
    alice, bob = unique("alice"), unique("bob")
    assert [await counter.hit(alice, at(i)) for i in range(3)] == [1, 2, 3]
    assert await counter.hit(bob, at(3)) == 1
    assert await counter.hit(alice, at(4)) == 4
    assert await counter.hit(bob, at(5)) == 2


async def test_the_key_expires_one_window_after_the_last_request(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    counter = CommandRateCounter(redis_client, window=timedelta(seconds=5), prefix=prefix)
    user = unique("op")
    await counter.hit(user, at(0))
    key = counter.key(user)
    assert key == f"{prefix}{user}"
    ttl = await redis_client.pttl(key)
    assert 0 < ttl <= 5000


async def test_concurrent_requests_of_one_user_get_distinct_counts(
    counter: CommandRateCounter,
) -> None:
    user = unique("op")
    counts = await asyncio.gather(*(counter.hit(user, at(1)) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))


async def test_api_processes_on_their_own_connections_share_the_counts(
    counter: CommandRateCounter, redis_url: str, prefix: str
) -> None:
    other_process = aioredis.from_url(redis_url, decode_responses=True)
    try:
        other = CommandRateCounter(other_process, window=WINDOW, prefix=prefix)
        user = unique("op")
        counts = await asyncio.gather(
            *((counter if i % 2 else other).hit(user, at(i / 10)) for i in range(50))
        )
        assert sorted(counts) == list(range(1, 51))
    finally:
        await other_process.aclose()


async def test_a_request_time_without_a_timezone_is_refused(
    counter: CommandRateCounter,
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await counter.hit(unique("op"), datetime(2026, 3, 1, 8, 0))


async def test_the_window_must_be_positive(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="positive"):
        CommandRateCounter(redis_client, window=timedelta(0))
