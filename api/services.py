"""What the API needs from the rest of plantcore, handed in by the composition root.

Nothing here connects to anything: :class:`Services` only holds the adapters
the composition root (``plantcore/``) built, so tests can hand in their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from api.auth import TokenSettings
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from projections.alarm_views import AlarmViews


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Services:
    """The application, its executor, the live-state stores and the settings the API reads.

    ``commands`` is the running :class:`~eventstore.log_tail.LogTail` that
    feeds ``commandStatus`` and that ``confirmCommand`` nudges; ``redis`` must
    decode responses to ``str``.
    """

    app: PlantApplication
    store: StoreExecutor
    redis: aioredis.Redis
    nats: NatsClient
    tokens: TokenSettings
    commands: LogTail
    clock: Callable[[], datetime] = field(default=utc_now)
    # How long /health waits for each service before calling it down.
    health_timeout: float = 2.0
    # What /metrics serves; None serves an empty registry.
    metrics: CollectorRegistry | None = None
    # The read models' database (alarm views) and the alarm events' live feed.
    pool: asyncpg.Pool | None = None
    alarms: AlarmViews | None = None

    @property
    def catalog(self) -> TagCatalog:
        """The application's catalogue: swapped as a whole when the plant file is reloaded."""
        return self.app.catalog
