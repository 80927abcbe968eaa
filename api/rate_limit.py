"""Sliding windows on Redis: each user's command requests, each source address's logins.

The counts live in Redis, so every API process sees the requests of the others.
Each user, or source address, has a sorted set with one member per request,
scored with the request's time in epoch seconds; the key expires one window
after the last request, so whoever stops leaves nothing behind.

- :class:`CommandRateCounter` records every command request and counts it in
  one MULTI/EXEC transaction: add it, drop the members that left the window,
  count the rest. Concurrent requests of one user therefore get distinct
  counts. What a count means (how many commands are too many) is the domain's
  decision.
- :class:`LoginThrottle` decides, before any password is checked, whether a
  source address may try a login now. It keeps only the logins it let in: a
  refused one adds nothing, so a flood cannot grow the set past the limit, and a
  source that keeps trying gets in again at the limit's pace, never faster.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.bounds import clipped

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "plant:command_rate:"
DEFAULT_LOGIN_PREFIX = "plant:login_rate:"
# A login does not wait longer than this for Redis to say whether its source may try.
LOGIN_COUNT_TIMEOUT = 0.5


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
        _require_aware(at)
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


# Drop the logins that left the window; if ``limit`` remain, answer the oldest one's
# score (when a place frees up); otherwise add this login and answer nothing.
# KEYS[1]: the source's logins. ARGV: now, the window's start (excluded), the limit,
# the new member, the window in milliseconds.
_ADMIT_LOGIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return false
"""


class LoginThrottle:
    """At most ``limit`` logins per source address in any window, across API processes.

    The window ending at ``at`` is ``(at - window, at]``, as for commands. The
    check and the count are one Lua script, so two processes cannot both let
    in the last login of a window. If Redis does not answer within
    :data:`LOGIN_COUNT_TIMEOUT`, the login is let in: the login lane still
    bounds the Argon2 work and the lockout the guesses per account, while an
    operator who must log in to stop a machine is not kept out by a Redis
    outage. ``refused`` counts the logins refused since the start.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        limit: int,
        window: timedelta = timedelta(minutes=1),
        prefix: str = DEFAULT_LOGIN_PREFIX,
    ) -> None:
        if limit < 1 or window <= timedelta(0):
            raise ValueError(f"a login throttle needs a limit and a window, not {limit}, {window}")
        self.limit = limit
        self.window = window
        self.refused = 0
        self._script = redis.register_script(_ADMIT_LOGIN)
        self._prefix = prefix
        self._redis_down = False

    def key(self, source: str) -> str:
        """The Redis key holding the logins let in from ``source``."""
        return f"{self._prefix}{clipped(source)}"

    async def admit(self, source: str, at: datetime) -> timedelta | None:
        """Count a login from ``source`` at ``at`` and answer ``None``; or, over the limit,
        count nothing and answer how long until a login from there is let in again.
        """
        _require_aware(at)
        score, window_start = at.timestamp(), (at - self.window).timestamp()
        window_ms = self.window // timedelta(milliseconds=1)
        try:
            async with asyncio.timeout(LOGIN_COUNT_TIMEOUT):
                oldest = await self._script(
                    keys=[self.key(source)],
                    args=[repr(score), repr(window_start), self.limit, uuid.uuid4().hex, window_ms],
                )
        except (TimeoutError, RedisError, OSError) as exc:
            self._note_redis(exc)
            return None
        self._note_redis(None)
        if oldest is None:
            return None
        self.refused += 1
        return max(timedelta(0), self.window - (at - _from_score(oldest, at)))

    def _note_redis(self, failure: BaseException | None) -> None:
        # Once per outage, not once per login: a flood during an outage must not flood the log.
        if failure is not None and not self._redis_down:
            log.warning("cannot count logins per source, letting them in: %r", failure)
        elif failure is None and self._redis_down:
            log.warning("counting logins per source again")
        self._redis_down = failure is not None


def _from_score(score: str | bytes | float, like: datetime) -> datetime:
    return datetime.fromtimestamp(float(score), like.tzinfo)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"the time of a request must be timezone-aware, not {at!r}")
