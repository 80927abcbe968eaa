"""The live state's Redis client: a bounded pool whose callers wait for a connection.

Every reader and writer of the live state in a process shares one pool: the
live-state projection, the API's snapshots (``tagUpdates``, ``deviceStatus``,
``devices``), the rate limits. redis-py's default pool refuses a command at
once (``MaxConnectionsError``) when all its connections are busy, so a burst
of HMIs subscribing together after a restart lost every subscriber past the
pool's size. Here a caller past ``max_connections`` waits for a connection to
come back, up to ``wait_seconds``; only a Redis that answers nothing for that
long fails a caller (``ConnectionError``), as a Redis outage would.
"""

from __future__ import annotations

import redis.asyncio as aioredis

# Enough for a burst to drain in a few milliseconds; Redis answers one command at a time.
DEFAULT_MAX_CONNECTIONS = 50
# A caller waits this long for a connection before its command fails.
DEFAULT_WAIT_SECONDS = 10.0


def live_state_client(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> aioredis.Redis:
    """A client decoding responses to ``str``, on a pool of at most ``max_connections``."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=max_connections, timeout=wait_seconds
    )
    return aioredis.Redis.from_pool(pool)
