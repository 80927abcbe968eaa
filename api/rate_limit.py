"""How many commands each user requested lately, counted on Redis.

The count lives in Redis, so every API process sees the requests of the others.
Each user has a sorted set (``{prefix}{username}``) with one member per request,
scored with the request's time in epoch seconds. A request is recorded and
counted in one MULTI/EXEC transaction: add it, drop the members that left the
window, count the rest, and let the key expire one window after the last
request, so a user who stops leaves nothing behind. Concurrent requests of one
user therefore get distinct counts.

What a count means (how many commands are too many) is the domain's decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import redis.asyncio as aioredis

DEFAULT_PREFIX = "plant:command_rate:"


class CommandRateCounter:
    """Counts each user's command requests in a sliding window, across API processes.

    The window ending at ``at`` is ``(at - window, at]``: a request exactly one
    window older than ``at`` no longer counts. Requests recorded with a time
    later than ``at`` (another process's clock a little ahead) do count.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        window: timedelta = timedelta(minutes=1),
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError(f"the window must be positive, not {window}")
        self._redis = redis
        self._window = window
        self._prefix = prefix

    @property
    def window(self) -> timedelta:
        return self._window

    def key(self, username: str) -> str:
        """The Redis key holding ``username``'s recent requests."""
        return f"{self._prefix}{username}"

    async def hit(self, username: str, at: datetime) -> int:
        """Record a request of ``username`` at ``at``; how many in the window, this one included.

        ``at`` must be timezone-aware.
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"the time of a request must be timezone-aware, not {at!r}")
        key = self.key(username)
        # Both scores from exact datetime arithmetic, so the boundary is exact too.
        score, window_start = at.timestamp(), (at - self._window).timestamp()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {uuid.uuid4().hex: score})
            pipe.zremrangebyscore(key, "-inf", window_start)  # inclusive: at the start, out
            pipe.zcard(key)
            pipe.pexpire(key, self._window)
            _added, _removed, count, _expiring = await pipe.execute()
        return int(count)
