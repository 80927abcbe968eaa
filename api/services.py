"""What the API needs from the rest of plantcore, handed in by the composition root.

Nothing here connects to anything: :class:`Services` only holds the adapters
the composition root (``plantcore/``) built, so tests can hand in their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from api.credentials import TokenSettings
from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES
from api.graphql.subject_hub import SubjectHub
from api.history_limits import HistoryLimits
from api.login_lane import LoginLane
from api.rate_limit import CommandRateCounter, LoginThrottle
from api.secrets import SecretBox
from api.size_limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_WS_MESSAGE_BYTES
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from projections.alarm_views import AlarmViews
from support.clock import utc_now

# Deep enough for any HMI query and for introspection, too shallow for abuse.
DEFAULT_MAX_QUERY_DEPTH = 12
DEFAULT_MAX_QUERY_COST = 5000


@dataclass(frozen=True, slots=True)
class Services:
    """The application, its executor, the live-state stores and the settings the API reads.

    ``command_log_tail`` is the running :class:`~eventstore.log_tail.LogTail` that
    feeds ``commandStatus`` and that ``confirmCommand`` nudges; ``redis`` must
    decode responses to ``str``. ``secrets`` seals and opens TOTP secrets;
    ``command_rate`` counts each user's command requests across API processes;
    ``login_throttle`` bounds the logins of each source address, and
    ``login_lane`` runs every Argon2 check and a login's store calls apart from
    the commands' executor. ``hub`` holds the live views' NATS subscriptions,
    one per subject for all of them (:mod:`api.graphql.subject_hub`).
    """

    app: PlantApplication
    store_executor: StoreExecutor
    redis: aioredis.Redis
    nats: NatsClient
    tokens: TokenSettings
    command_log_tail: LogTail
    secrets: SecretBox
    command_rate: CommandRateCounter
    login_throttle: LoginThrottle
    login_lane: LoginLane
    clock: Callable[[], datetime] = field(default=utc_now)
    # How long /health waits for each service before calling it down.
    health_timeout: float = 2.0
    # What /metrics serves; None serves an empty registry.
    metrics: CollectorRegistry | None = None
    # The read models' database (alarm views) and the alarm events' live feed.
    pool: asyncpg.Pool | None = None
    alarms: AlarmViews | None = None
    # Queries deeper or costlier than these are refused before they run.
    max_query_depth: int = DEFAULT_MAX_QUERY_DEPTH
    max_query_cost: int = DEFAULT_MAX_QUERY_COST
    # Rows and time span of one history request; how long each resolution is kept.
    history_limits: HistoryLimits = field(default_factory=HistoryLimits)
    # What a client may send: an HTTP body, the variables of one operation, a WebSocket message.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_variables_bytes: int = DEFAULT_MAX_VARIABLES_BYTES
    max_ws_message_bytes: int = DEFAULT_MAX_WS_MESSAGE_BYTES
    # GraphiQL at GET /graphql, and introspection (__schema, __type): off unless asked for.
    graphiql: bool = False
    introspection: bool = False
    # How often a subscription checks that its session is still open.
    session_recheck_seconds: float = 15.0
    # Where the plant core's own checkpoints are written (auditChain reads the last one).
    audit_checkpoint_file: Path | None = None
    hub: SubjectHub = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hub", SubjectHub(self.nats))

    @property
    def catalog(self) -> TagCatalog:
        """The application's catalogue: swapped as a whole when the plant file is reloaded."""
        return self.app.catalog
