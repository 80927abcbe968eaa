"""The composition root: builds every adapter from the settings and runs them together.

One process runs, for the plant file's devices: a supervisor per device and its
write service on NATS; the live-state and history projections; the event-log
tail feeding the command dispatcher and the expiry sweeper; and the API. Each
runs as its own task; if any of them ends on its own (a bug or a lost
dependency it cannot survive), the whole runtime stops with an error rather
than limping on without, say, its dispatcher: the service manager restarts it
and every part resumes from its durable position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
import nats
import redis.asyncio as aioredis
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import TrackingRecorder
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from api.app import create_app
from api.credentials import TokenSettings
from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES
from api.history_limits import DEFAULT_MAX_ROWS, DEFAULT_MAX_SPAN_DAYS, HistoryLimits
from api.login_lane import DEFAULT_LOGIN_QUEUE, LoginLane
from api.metrics import DeviceFigures, PlantCollector, plant_registry
from api.rate_limit import CommandRateCounter, LoginThrottle
from api.secrets import SecretBox
from api.services import DEFAULT_MAX_QUERY_COST, DEFAULT_MAX_QUERY_DEPTH, Services
from api.size_limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_WS_MESSAGE_BYTES
from audit.checkpoints import CheckpointWriter, run_checkpoints
from devices.fleet import Fleet
from devices.nats_bridge import NatsTelemetrySink, OutboxForwarder, serve_writes
from devices.outbox import Outbox
from devices.supervisor import SupervisorCounters
from domain.application import CommandPolicy, PlantApplication
from domain.messages import DEFAULT_WRITE_CLOCK_SKEW, ConnectionState
from domain.operator import LoginPolicy
from eventstore.commit_listener import CommitListener, commit_channel
from eventstore.event_relay import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, EventRelay
from eventstore.executor import StoreExecutor
from eventstore.log_tail import Follower, LogTail
from eventstore.tracking import TrackedPosition
from plantcore.database_role import check_runtime_role
from plantcore.open_application import EVENTS_TABLE, open_application
from plantcore.reload import watch_plant_file
from plantcore.settings import (
    ProjectionsStart,
    Settings,
    audit_signing_key,
    command_policy,
    login_policy,
    retention_policy,
    secret_box,
    token_settings,
)
from plantcore.simulation import Simulations
from plantcore.streams import (
    ensure_alarm_stream,
    ensure_audit_stream,
    ensure_deadletter_stream,
    ensure_event_stream,
    ensure_telemetry_stream,
)
from plantfile.catalog_builder import tag_catalog
from plantfile.loader import PlantConfigError
from plantfile.plant import PlantConfig
from projections.alarm_views import AlarmViews, ensure_alarm_schema
from projections.command_metrics import CommandMetrics
from projections.dead_letter import DeadLetters
from projections.history import HISTORY_FEED, HistoryWriter
from projections.history_filter import HistoryFilter, history_policies
from projections.history_retention import DroppedPartition, keep_retention
from projections.history_schema import RetentionPolicy, ensure_history_schema, open_history
from projections.live_client import (
    DEFAULT_MAX_CONNECTIONS as DEFAULT_REDIS_MAX_CONNECTIONS,
)
from projections.live_client import (
    DEFAULT_WAIT_SECONDS as DEFAULT_REDIS_WAIT_SECONDS,
)
from projections.live_client import live_state_client
from projections.live_state import LIVE_STATE_FEED, LiveState
from projections.rollup_refresher import DEFAULT_REFRESH_SECONDS, RollupRefresher
from projections.store_outage import read_model_pool
from reactors.alarm_clock import AlarmClock
from reactors.alarm_recorder import ALARM_FEED, AlarmRecorder
from reactors.command_dispatcher import CommandDispatcher
from reactors.command_expiry import ExpirySweeper
from support.clock import utc_now

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RuntimeConfig:
    database_url: str
    nats_url: str
    redis_url: str
    plant: PlantConfig
    tokens: TokenSettings
    # Seals and opens operators' TOTP secrets (PLANTCORE_SECRETS_KEY).
    secrets: SecretBox
    http_host: str
    http_port: int
    telemetry_stream: str = "TELEMETRY"
    telemetry_max_age_hours: int = 72
    # The live state's Redis pool, shared by every reader and writer of the process:
    # past its size a caller waits for a connection, up to the wait (ADR 0044).
    redis_max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS
    redis_wait_seconds: float = DEFAULT_REDIS_WAIT_SECONDS
    history_retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    history_rollup_refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    # Rows per answer and days from `from` to `to` of one GraphQL history request.
    history_max_rows: int = DEFAULT_MAX_ROWS
    history_max_span_days: int = DEFAULT_MAX_SPAN_DAYS
    # Prepended to the durable consumer names, so that two plant cores (or a
    # test) can share one NATS without sharing, and so splitting, a consumer.
    consumer_prefix: str = ""
    # Signs the hash chain's head every ``audit_checkpoint_seconds`` into the file and
    # the AUDIT stream; None: no checkpoints (the chain itself is always kept).
    audit_signing_key: Ed25519PrivateKey | None = None
    audit_checkpoint_file: Path | None = None
    audit_checkpoint_seconds: float = 60.0
    # Where every domain event is relayed for integrators (see docs/nats.md).
    events_stream: str = EVENTS_STREAM
    events_subject_prefix: str = EVENTS_SUBJECT_PREFIX
    events_max_age_hours: int = 720
    projections_start: ProjectionsStart = "retained"
    # The command chain's windows and rate limit, and the login lockout.
    command_policy: CommandPolicy = field(default_factory=CommandPolicy)
    # The clock skew a write's deadline allows between this host and a supervisor's.
    write_clock_skew: timedelta = DEFAULT_WRITE_CLOCK_SKEW
    login_policy: LoginPolicy = field(default_factory=LoginPolicy)
    # Logins per source address and minute; the login lane's Argon2 threads (None: one
    # less than the cores) and the logins that may wait for them (docs/security.md).
    login_rate_per_minute: int = 20
    login_workers: int | None = None
    login_queue: int = DEFAULT_LOGIN_QUEUE
    max_query_depth: int = DEFAULT_MAX_QUERY_DEPTH
    max_query_cost: int = DEFAULT_MAX_QUERY_COST
    # GraphiQL and introspection served by the API (PLANTCORE_GRAPHIQL, _INTROSPECTION).
    graphiql: bool = False
    introspection: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_variables_bytes: int = DEFAULT_MAX_VARIABLES_BYTES
    max_ws_message_bytes: int = DEFAULT_MAX_WS_MESSAGE_BYTES
    # The file ``plant`` was read from: followed, and applied when it changes.
    plant_file: Path | None = None
    # Why device blocks of that file were left out, recorded with the configuration.
    plant_problems: tuple[str, ...] = ()
    # Where simulated devices keep their state (the OPC UA simulator's certificates).
    state_dir: Path = Path("var")
    # The supervisors' store-and-forward buffer (docs/nats.md), one per process, and its
    # size limit. None: a temporary one for this run only, as a test's runtime wants.
    buffer_dir: Path | None = None
    buffer_max_bytes: int = 100 * 1024 * 1024
    plant_file_poll_seconds: float = 2.0
    # Run as a role that may alter the event log (a superuser, the tables' owner), and
    # create the schema as before; without it the runtime refuses such a role (ADR 0023).
    allow_owner: bool = False

    @property
    def history_limits(self) -> HistoryLimits:
        """The history query's limits: raw samples and minutes asked for only as long as kept."""
        return HistoryLimits(
            max_rows=self.history_max_rows,
            max_span_days=self.history_max_span_days,
            raw_days=self.history_retention.raw_days,
            minute_days=self.history_retention.minute_days,
        )


def runtime_config(
    settings: Settings,
    *,
    plant: PlantConfig,
    database_url: str | None = None,
    nats_url: str | None = None,
    redis_url: str | None = None,
    http_port: int | None = None,
    plant_file: Path | None = None,
    secrets: SecretBox | None = None,
) -> RuntimeConfig:
    """The runtime's configuration from the settings; the demo overrides where things run.

    Raises :class:`~plantcore.settings.MissingSecret` if no secrets key is
    configured and none is given (the demo gives its own).
    """
    return RuntimeConfig(
        database_url=database_url or settings.database_url,
        nats_url=nats_url or settings.nats_url,
        redis_url=redis_url or settings.redis_url,
        redis_max_connections=settings.redis_max_connections,
        redis_wait_seconds=settings.redis_wait_seconds,
        plant=plant,
        tokens=token_settings(settings),
        http_host=settings.http_host,
        http_port=settings.http_port if http_port is None else http_port,
        telemetry_stream=settings.telemetry_stream,
        telemetry_max_age_hours=settings.telemetry_max_age_hours,
        history_retention=retention_policy(settings),
        history_rollup_refresh_seconds=settings.history_rollup_refresh_seconds,
        history_max_rows=settings.history_max_rows,
        history_max_span_days=settings.history_max_span_days,
        consumer_prefix=settings.consumer_prefix,
        audit_signing_key=audit_signing_key(settings),
        audit_checkpoint_file=settings.audit_checkpoint_file,
        audit_checkpoint_seconds=settings.audit_checkpoint_seconds,
        events_stream=settings.events_stream,
        events_subject_prefix=settings.events_subject_prefix,
        events_max_age_hours=settings.events_max_age_hours,
        projections_start=settings.projections_start,
        secrets=secrets or secret_box(settings),
        command_policy=command_policy(settings),
        write_clock_skew=timedelta(milliseconds=settings.write_clock_skew_ms),
        login_policy=login_policy(settings),
        login_rate_per_minute=settings.login_rate_per_minute,
        login_workers=settings.login_workers,
        login_queue=settings.login_queue,
        max_query_depth=settings.graphql_max_depth,
        max_query_cost=settings.graphql_max_cost,
        graphiql=settings.graphiql,
        introspection=settings.introspection,
        max_body_bytes=settings.http_max_body_bytes,
        max_variables_bytes=settings.graphql_max_variables_bytes,
        max_ws_message_bytes=settings.ws_max_message_bytes,
        plant_file=plant_file,
        state_dir=settings.state_dir,
        buffer_dir=settings.buffer_dir,
        buffer_max_bytes=settings.buffer_max_mb * 1024 * 1024,
    )


async def _log_end(app: PlantApplication, store_executor: StoreExecutor) -> int:
    """The id of the last event in the log (0 for an empty log)."""
    return await store_executor.call(app.recorder.max_notification_id) or 0


async def _record_drop(
    app: PlantApplication, store_executor: StoreExecutor, drop: DroppedPartition
) -> None:
    """The history retention's record of a partition it drops (``HistoryPartitionDropped``)."""
    await store_executor.call(
        app.record_history_partition_dropped,
        table=drop.table,
        partition=drop.partition,
        start=drop.start,
        end=drop.end,
        rows=drop.rows,
        retention_days=drop.retention_days,
        at=utc_now(),
    )


class _ApiServer(uvicorn.Server):
    # The runtime owns SIGINT/SIGTERM and stops every part in order; uvicorn must
    # not take the signals for itself.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PlantRuntime:
    """Everything one plantcore process runs, started and stopped together."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.app: PlantApplication | None = None
        self.server: _ApiServer | None = None
        self.fleet: Fleet | None = None
        self.outbox: Outbox | None = None
        self.simulations = Simulations(config.state_dir)
        self._plant = config.plant  # as configured; the fleet runs it with simulators resolved
        # The history's thinning of tags with a `history:` policy, edited with the plant file.
        self._history_filter = HistoryFilter(history_policies(config.plant))
        self._store_executor: StoreExecutor | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        # Whether it connects as the owner (allowed), and so creates the schema itself.
        self._prepares_schema = False

    @property
    def api_url(self) -> str:
        if self.server is None or not self.server.started:
            raise RuntimeError("the API is not serving yet")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.config.http_host}:{port}"

    async def run(self, ready: Callable[[PlantRuntime], Awaitable[None]] | None = None) -> None:
        """Run until cancelled, or until a part ends on its own (then raise)."""
        async with self._started():
            if ready is not None:
                await ready(self)
            done, _ = await asyncio.wait(self._tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = task.get_name()
                error = task.exception()
                if error is not None:
                    raise RuntimeError(f"{name} failed: {error!r}") from error
                raise RuntimeError(f"{name} stopped on its own")

    @contextlib.asynccontextmanager
    async def _started(self) -> AsyncIterator[None]:
        config = self.config
        async with contextlib.AsyncExitStack() as stack:
            # First: a second plant core on the same buffer is refused before it does anything.
            outbox = self._open_buffer(stack)
            store_executor = StoreExecutor()
            stack.callback(store_executor.shutdown)
            # Shut down after the API stops, as the store executor is.
            login_lane = LoginLane(workers=config.login_workers, queue=config.login_queue)
            stack.callback(login_lane.shutdown)
            self._prepares_schema = await store_executor.call(
                partial(check_runtime_role, config.database_url, allow_owner=config.allow_owner)
            )
            catalog = tag_catalog(config.plant)
            app = await store_executor.call(
                partial(
                    open_application,
                    config.database_url,
                    catalog,
                    plant_id=config.plant.plant_id,
                    command_policy=config.command_policy,
                    login_policy=config.login_policy,
                )
            )
            stack.callback(app.close)
            self.app, self._store_executor = app, store_executor
            await self._record_configuration(config.plant, config.plant_problems)

            nc = await self._connect_nats()
            stack.push_async_callback(nc.close)
            js = nc.jetstream()
            await ensure_telemetry_stream(
                js, config.telemetry_stream, config.telemetry_max_age_hours
            )
            await ensure_alarm_stream(js)
            await ensure_deadletter_stream(js)
            # One for every consumer, so that /metrics counts what each refused.
            dead_letters = DeadLetters(js)
            await ensure_event_stream(
                js,
                config.events_stream,
                config.events_max_age_hours,
                subject_prefix=config.events_subject_prefix,
            )
            redis = live_state_client(
                config.redis_url,
                max_connections=config.redis_max_connections,
                wait_seconds=config.redis_wait_seconds,
            )
            stack.push_async_callback(redis.aclose)
            pool = await read_model_pool(config.database_url)
            stack.push_async_callback(pool.close)

            forwarder = OutboxForwarder(outbox, nc)
            # Stopped in reverse: the API first, then the tasks, then the devices, whose
            # last statuses are forwarded while NATS is still there.
            stack.push_async_callback(forwarder.flush, STOP_GRACE_SECONDS)
            stack.push_async_callback(self._stop_fleet)
            stack.push_async_callback(self._stop_tasks)
            # Before anything is appended: what a previous run left goes first.
            self._spawn("buffer forwarder", forwarder.run())

            await self._start_projections(js, redis, pool, dead_letters)
            self._spawn(
                "history retention",
                keep_retention(
                    pool, config.history_retention, partial(_record_drop, app, store_executor)
                ),
            )
            tracking = await store_executor.call(app.factory.tracking_recorder)
            relay = EventRelay(
                app,
                store_executor,
                js,
                TrackedPosition(tracking, store_executor, "event-relay"),
                stream=config.events_stream,
                subject_prefix=config.events_subject_prefix,
            )
            self._spawn("event relay", relay.run())
            await self._start_checkpoints(js)
            command_metrics = CommandMetrics(app, partial(_log_end, app, store_executor))
            alarms = await self._start_alarms(
                js, app, store_executor, pool, redis, tracking, dead_letters
            )
            tail = await self._start_command_flow(
                app, store_executor, nc, tracking, [command_metrics, alarms]
            )
            # Every commit to the event log, by any process, wakes its readers (ADR 0042).
            listener = CommitListener(
                config.database_url, commit_channel(app), [tail.nudge, relay.nudge]
            )
            self._spawn("commit listener", listener.run())
            await self._start_fleet(nc, forwarder.sink())

            login_throttle = LoginThrottle(redis, limit=config.login_rate_per_minute)
            services = Services(
                app=app,
                store_executor=store_executor,
                redis=redis,
                nats=nc,
                tokens=config.tokens,
                command_log_tail=tail,
                secrets=config.secrets,
                command_rate=CommandRateCounter(redis),
                login_throttle=login_throttle,
                login_lane=login_lane,
                max_query_depth=config.max_query_depth,
                max_query_cost=config.max_query_cost,
                history_limits=config.history_limits,
                graphiql=config.graphiql,
                introspection=config.introspection,
                max_body_bytes=config.max_body_bytes,
                max_variables_bytes=config.max_variables_bytes,
                max_ws_message_bytes=config.max_ws_message_bytes,
                metrics=plant_registry(
                    PlantCollector(
                        self._device_figures,
                        command_metrics,
                        dead_letters,
                        refused_logins=lambda: {
                            "rate_limited": login_throttle.refused,
                            "busy": login_lane.refused,
                        },
                        buffer=outbox.figures,
                    )
                ),
                pool=pool,
                alarms=alarms,
                audit_checkpoint_file=config.audit_checkpoint_file,
            )
            await self._start_api(services)
            yield

    async def _connect_nats(self) -> NatsClient:
        async def disconnected() -> None:
            if not self._stopping:  # closing it on the way out is no loss
                log.warning("NATS connection lost; reconnecting")

        async def reconnected() -> None:
            log.info("NATS connection restored")

        return await nats.connect(
            self.config.nats_url,
            name="plantcore",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )

    async def _start_projections(
        self,
        js: nats.js.JetStreamContext,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        dead_letters: DeadLetters,
    ) -> None:
        stream = self.config.telemetry_stream
        prefix = self.config.consumer_prefix
        start = DeliverPolicy.NEW if self.config.projections_start == "new" else DeliverPolicy.ALL
        live = LIVE_STATE_FEED.consumer(
            js,
            LiveState(redis).apply,
            dead_letters=dead_letters,
            stream=stream,
            durable=f"{prefix}live-state",
            start=start,
        )
        partitions = await (
            ensure_history_schema(pool, retention=self.config.history_retention)
            if self._prepares_schema
            else open_history(pool)
        )
        writer = HistoryWriter(pool, partitions, history_filter=self._history_filter)
        rollups = RollupRefresher(pool, period_seconds=self.config.history_rollup_refresh_seconds)
        history = HISTORY_FEED.consumer(
            js,
            writer.write,
            dead_letters=dead_letters,
            stream=stream,
            durable=f"{prefix}history",
            start=start,
        )
        # Created before any supervisor publishes, so "new" misses nothing of ours.
        for consumer in (live, history):
            await consumer.ensure()
        self._spawn("live-state projection", live.run())
        self._spawn("history projection", history.run())
        self._spawn("history rollups", rollups.keep_fresh())

    async def _start_alarms(
        self,
        js: nats.js.JetStreamContext,
        app: PlantApplication,
        store_executor: StoreExecutor,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        tracking: TrackingRecorder,
        dead_letters: DeadLetters,
    ) -> AlarmViews:
        """The recorder of the supervisors' alarm transitions, and the alarm read models."""
        if self._prepares_schema:
            await ensure_alarm_schema(pool)
        views = AlarmViews(
            app,
            store_executor,
            pool,
            redis,
            TrackedPosition(tracking, store_executor, "alarm-views"),
        )
        recorder = ALARM_FEED.consumer(
            js,
            AlarmRecorder(app, store_executor).record,
            dead_letters=dead_letters,
            durable=f"{self.config.consumer_prefix}alarm-recorder",
            start=DeliverPolicy.NEW
            if self.config.projections_start == "new"
            else DeliverPolicy.ALL,
        )
        await recorder.ensure()
        self._spawn("alarm recorder", recorder.run())
        self._spawn("alarm views", views.run())
        self._spawn("alarm clock", AlarmClock(app, store_executor, pool).run())
        return views

    async def _start_checkpoints(self, js: nats.js.JetStreamContext) -> None:
        config = self.config
        if config.audit_signing_key is None:
            # The key may well be elsewhere on purpose: with `plantcore audit signer`.
            log.warning(
                "no audit signing key (PLANTCORE_AUDIT_SIGNING_KEY_FILE): the event log is"
                " hash-chained, and its checkpoints are signed only if `plantcore audit signer`"
                " runs"
            )
            return
        await ensure_audit_stream(js)
        writer = CheckpointWriter(config.audit_checkpoint_file, js)
        checkpoints = run_checkpoints(
            config.database_url,
            EVENTS_TABLE,
            config.audit_signing_key,
            writer,
            interval=config.audit_checkpoint_seconds,
        )
        self._spawn("audit checkpoints", checkpoints)

    async def _start_command_flow(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        nc: NatsClient,
        tracking: TrackingRecorder,
        followers: Sequence[Follower],
    ) -> LogTail:
        dispatcher = CommandDispatcher(
            app,
            store_executor,
            nc,
            TrackedPosition(tracking, store_executor, "command-dispatcher"),
            clock_skew=self.config.write_clock_skew,
        )
        sweeper = ExpirySweeper(
            app, store_executor, TrackedPosition(tracking, store_executor, "expiry-sweeper")
        )
        tail = LogTail(
            app, store_executor, followers=[dispatcher, sweeper, *followers], poll_interval=0.5
        )
        self._spawn("event log tail", tail.run())
        self._spawn("command dispatcher", dispatcher.run())
        self._spawn("expiry sweeper", sweeper.run())
        return tail

    def _open_buffer(self, stack: contextlib.AsyncExitStack) -> Outbox:
        directory = self.config.buffer_dir
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="buffer-")))
        outbox = Outbox.open(directory, max_bytes=self.config.buffer_max_bytes)
        stack.callback(outbox.close)
        self.outbox = outbox
        if len(outbox):
            log.info("buffer %s: %d entries of a previous run to forward", outbox.path, len(outbox))
        return outbox

    async def _start_fleet(self, nc: NatsClient, sink: NatsTelemetrySink) -> None:
        served = await self.simulations.apply(self.config.plant)
        fleet = Fleet(served, sink, partial(serve_writes, nc))
        await fleet.start()
        self.fleet = fleet
        if self.config.plant_file is not None:
            self._spawn(
                "plant file watcher",
                watch_plant_file(
                    self.config.plant_file,
                    lambda: self._plant,
                    self._apply_plant,
                    interval=self.config.plant_file_poll_seconds,
                ),
            )

    async def _apply_plant(self, plant: PlantConfig, problems: Sequence[PlantConfigError]) -> None:
        """Run ``plant`` from now on: simulators, devices, command catalogue, history policies."""
        assert self.app is not None
        assert self.fleet is not None
        served = await self.simulations.apply(plant)
        await self.fleet.apply(served)
        self._plant = plant
        self.app.catalog = tag_catalog(plant)
        self._history_filter.follow(history_policies(plant))
        await self._record_configuration(plant, [str(problem) for problem in problems])

    def _device_figures(self) -> list[DeviceFigures]:
        if self.fleet is None:
            return []
        figures = []
        for member in self.fleet:
            supervisor = member.supervisor
            counters = supervisor.counters if supervisor else SupervisorCounters()
            figures.append(
                DeviceFigures(
                    device=member.device_id,
                    connected=supervisor is not None
                    and supervisor.state is ConnectionState.CONNECTED,
                    reconnects=counters.reconnects,
                    samples_published=counters.samples_published,
                    cycles=counters.cycles,
                    cycle_seconds_total=counters.cycle_seconds_total,
                    restarts=member.restarts,
                )
            )
        return figures

    async def _stop_fleet(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()
        await self.simulations.close()

    async def _record_configuration(self, plant: PlantConfig, problems: Sequence[str]) -> None:
        """Every change of the devices run is an event (PlantConfiguration.DevicesChanged)."""
        assert self.app is not None
        assert self._store_executor is not None
        change = await self._store_executor.call(
            self.app.record_plant_configuration,
            plant_id=plant.plant_id,
            devices=plant.device_fingerprints(),
            source=str(self.config.plant_file or "plant given at start"),
            problems=problems,
            actor="plantcore",
            at=datetime.now(UTC),
        )
        if change is not None:
            log.info(
                "plant %s: recorded devices added %s, removed %s, changed %s",
                plant.plant_id, change.added, change.removed, change.changed,
            )  # fmt: skip

    async def _start_api(self, services: Services) -> None:
        server = _ApiServer(
            uvicorn.Config(
                create_app(services),
                host=self.config.http_host,
                port=self.config.http_port,
                lifespan="off",
                log_level="warning",
                ws="websockets-sansio",
                # The application closes a larger message itself; this keeps uvicorn
                # from reading up to its default 16 MiB first.
                ws_max_size=services.max_ws_message_bytes,
            )
        )
        self.server = server
        self._spawn("API server", server.serve())
        while not server.started:
            serving = self._tasks["API server"]
            if serving.done():
                raise RuntimeError(f"the API could not start on port {self.config.http_port}")
            await asyncio.sleep(0.05)

    def _spawn(self, name: str, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        self._tasks[name] = asyncio.create_task(run(), name=name)

    async def _stop_tasks(self) -> None:
        self._stopping = True
        if self.server is not None:
            self.server.should_exit = True
            api = self._tasks.get("API server")
            if api is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(api), STOP_GRACE_SECONDS)
        pending = set(self._tasks.values())
        while pending:
            # Cancelled again while some have not ended: a library may swallow one cancel.
            for task in reversed(list(self._tasks.values())):
                if task in pending:
                    task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
            if pending:
                log.warning("still stopping: %s", ", ".join(t.get_name() for t in pending))
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for name, result in zip(self._tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s ended with %r during shutdown", name, result)
        self._tasks.clear()
