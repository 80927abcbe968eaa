"""A whole API on the machine's real PostgreSQL, Redis and NATS, per test.

Each test gets its own device names and plant id (the event table is shared),
an operator with the ``operator`` role and a scope on its device, more
operators on demand (:meth:`Plant.add_operator`), an in-process ASGI client for
queries and mutations, and a real uvicorn server on a free port for
graphql-transport-ws subscriptions. With ``read_models=True`` the alarm read
models (PostgreSQL ``alarm_current`` and ``alarm_journal``, the live feed)
follow the log too, as in the runtime. Logins run in a login lane of the
plant's own (one Argon2 thread, ``login_queue`` waiting) behind a throttle of
``login_rate`` logins a minute per source address, counted under a key prefix
of the plant's own: every test logs in from the same address.

The plant's device has a free setpoint, a ``pressure_setpoint`` marked
critical (two persons) and a ``running`` coil whose ``false`` is an emergency
stop; a second device in another area tells scopes apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
import redis.asyncio as aioredis
import uvicorn
from eventsourcing.persistence import TrackingRecorder
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from api.app import create_app
from api.credentials import TokenSettings, hash_password
from api.login_lane import LoginLane
from api.rate_limit import CommandRateCounter, LoginThrottle
from api.secrets import SecretBox, generate_key
from api.services import Services, utc_now
from domain.application import CommandPolicy, PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.messages import WRITE_SUBJECT, WriteReply, WriteRequest
from domain.operator import LoginPolicy
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.postgres import event_store_env
from eventstore.tracking import TrackedPosition
from projections.alarm_views import AlarmViews, ensure_alarm_schema
from reactors.command_dispatcher import CommandDispatcher
from reactors.command_expiry import ExpirySweeper
from tests.support import eventually, free_port, unique

PASSWORD = "correct horse battery"
TOKENS = TokenSettings(secret="test-secret-" + "x" * 32, audience="plantcore")
SECRETS = SecretBox.from_text(generate_key())
# Argon2 on purpose costs tens of milliseconds: hashed once for every test operator.
PASSWORD_HASH = hash_password(PASSWORD)
AREA = "stamping"
OTHER_AREA = "welding"


def other_device(device: str) -> str:
    return device + "-b"


def plant_catalog(device: str) -> TagCatalog:
    tags = [
        TagLimits(name, "speed", "rpm", False, ValueKind.NUMBER, None, None)
        for name in (device, other_device(device))
    ] + [
        TagLimits(name, "speed_setpoint", "rpm", True, ValueKind.NUMBER, 0.0, 1800.0)
        for name in (device, other_device(device))
    ]
    tags += [
        TagLimits(
            device, "running", "", True, ValueKind.BOOL, None, None, emergency_values=(False,)
        ),
        TagLimits(
            device, "pressure_setpoint", "bar", True, ValueKind.NUMBER, 0.0, 250.0, critical=True
        ),
    ]
    devices = {device: DeviceInfo(area=AREA), other_device(device): DeviceInfo(area=OTHER_AREA)}
    return TagCatalog(tags, devices)


@dataclass(frozen=True)
class Person:
    """An operator the test made: name and authenticator."""

    username: str
    totp: pyotp.TOTP

    def code(self) -> str:
        """The current TOTP code (a fresh step is needed for each use: see ``next_code``)."""
        return self.totp.now()


@dataclass
class Plant:
    app: PlantApplication
    store_executor: StoreExecutor
    services: Services
    client: httpx.AsyncClient
    ws_url: str
    device: str
    username: str
    totp: pyotp.TOTP
    nc: NatsClient
    tracking: TrackingRecorder
    start_position: int
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def gql(self, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        body: dict[str, Any] = response.json()
        return body

    async def login(self, username: str | None = None) -> str:
        body = await self.gql(
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p)"
            " { accessToken } }",
            u=username or self.username,
            p=PASSWORD,
        )
        assert "errors" not in body, body
        token: str = body["data"]["login"]["accessToken"]
        return token

    async def add_operator(
        self, roles: Sequence[str], scopes: Sequence[str] = (), full_name: str = "Second Person"
    ) -> Person:
        """Register another operator of this plant, with ``roles`` and ``scopes``."""
        username = unique("_".join(roles) or "nobody")
        secret = pyotp.random_base32()
        await self.store_executor.call(
            partial(
                self.app.register_operator,
                username=username,
                full_name=full_name,
                roles=roles,
                password_hash=PASSWORD_HASH,
                totp_secret_sealed=SECRETS.seal(secret, username=username),
                actor="admin",
                at=utc_now(),
            )
        )
        for scope in scopes:
            await self.store_executor.call(
                partial(
                    self.app.grant_permission,
                    username=username,
                    scope=scope,
                    actor="admin",
                    at=utc_now(),
                )
            )
        return Person(username, pyotp.TOTP(secret))

    def dispatcher(self, *, initial: int, **options: Any) -> CommandDispatcher:
        """A command dispatcher with its own tracked position (not yet following)."""
        return CommandDispatcher(
            self.app,
            self.store_executor,
            self.nc,
            TrackedPosition(
                self.tracking, self.store_executor, unique("dispatcher"), initial=initial
            ),
            **{
                "write_timeout": 0.5,
                "read_timeout": 0.5,
                "retry_delay": 0.1,
                "clock_skew": timedelta(milliseconds=100),
                **options,
            },
        )

    def follow(self, *followers: CommandDispatcher | ExpirySweeper | AlarmViews) -> LogTail:
        """Run these followers on a log tail of their own."""
        tail = LogTail(self.app, self.store_executor, followers=followers, poll_interval=0.05)
        self.background += [asyncio.create_task(f.run()) for f in followers]
        self.background.append(asyncio.create_task(tail.run()))
        return tail

    async def events(self, command_id: str) -> list[str]:
        from uuid import UUID

        events = await self.store_executor.call(self.app.command_events, UUID(command_id))
        return [type(event).__name__ for event in events]


class Responder:
    """A stand-in supervisor on ``plant.write.<device>`` that records every request."""

    def __init__(self, reply: Callable[[WriteRequest], WriteReply | None] | None = None) -> None:
        self.requests: list[WriteRequest] = []
        self._reply = reply or (lambda r: WriteReply(ok=True, tag=r.tag, read_back=r.value))
        self._subscription: Subscription | None = None

    async def start(self, nc: NatsClient, device: str) -> Responder:
        async def handle(message: Msg) -> None:
            request = WriteRequest.decode(message.data)
            self.requests.append(request)
            reply = self._reply(request)
            if reply is not None:
                await message.respond(reply.encode())

        self._subscription = await nc.subscribe(WRITE_SUBJECT.format(device=device), cb=handle)
        await nc.flush()
        return self

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()


PlantFactory = Callable[..., Awaitable[Plant]]


@pytest.fixture
async def make_plant(
    database_url: str, nc: NatsClient, redis_client: aioredis.Redis
) -> AsyncIterator[PlantFactory]:
    plants: list[tuple[Plant, uvicorn.Server, asyncio.Task[None]]] = []
    pools: list[asyncpg.Pool] = []
    store_executor = StoreExecutor(max_workers=4)

    async def build(
        confirm_window: timedelta = timedelta(seconds=30),
        dispatcher: bool = True,
        *,
        approval_window: timedelta = timedelta(minutes=5),
        rate_limit: int = 50,
        login_policy: LoginPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        read_models: bool = False,
        login_rate: int = 600,
        login_queue: int = 8,
    ) -> Plant:
        device = unique("press")
        app = await store_executor.call(
            partial(
                PlantApplication,
                plant_catalog(device),
                env=event_store_env(database_url, pool_size=4),
                command_policy=CommandPolicy(
                    confirm_window=confirm_window,
                    approval_window=approval_window,
                    rate_limit=rate_limit,
                ),
                plant_id=unique("plant"),
                login_policy=login_policy,
            )
        )
        start = await store_executor.call(app.recorder.max_notification_id) or 0
        recorder = await store_executor.call(app.factory.tracking_recorder)
        sweeper = ExpirySweeper(
            app,
            store_executor,
            TrackedPosition(recorder, store_executor, unique("sweeper"), initial=start),
            max_sleep=0.05,
        )
        plant = Plant(
            app=app,
            store_executor=store_executor,
            services=None,  # type: ignore[arg-type]
            client=None,  # type: ignore[arg-type]
            ws_url="",
            device=device,
            username="",
            totp=pyotp.TOTP(pyotp.random_base32()),
            nc=nc,
            tracking=recorder,
            start_position=start,
        )
        ana = await plant.add_operator(["operator"], [f"device:{device}"], full_name="Ana Operator")
        plant.username, plant.totp = ana.username, ana.totp
        followers: list[CommandDispatcher | ExpirySweeper | AlarmViews] = [sweeper]
        if dispatcher:
            followers.append(plant.dispatcher(initial=start))
        pool: asyncpg.Pool | None = None
        views: AlarmViews | None = None
        if read_models:
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            pools.append(pool)
            await ensure_alarm_schema(pool)
            views = AlarmViews(
                app,
                store_executor,
                pool,
                redis_client,
                TrackedPosition(recorder, store_executor, unique("alarm-views"), initial=start),
                active_key=unique("plant:alarms:active"),
            )
            followers.append(views)
        tail = plant.follow(*followers)
        plant.services = Services(
            app=app,
            store_executor=store_executor,
            redis=redis_client,
            nats=nc,
            tokens=TOKENS,
            command_log_tail=tail,
            secrets=SECRETS,
            # Quick, so that a test sees a subscription end soon after its session does.
            session_recheck_seconds=0.2,
            command_rate=CommandRateCounter(redis_client, prefix=unique("rate") + ":"),
            login_throttle=LoginThrottle(
                redis_client, limit=login_rate, prefix=unique("login_rate") + ":"
            ),
            login_lane=LoginLane(workers=1, queue=login_queue),
            clock=clock,
            pool=pool,
            alarms=views,
        )
        fastapi_app = create_app(plant.services)
        plant.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fastapi_app), base_url="http://plant"
        )
        port = free_port()
        plant.ws_url = f"ws://127.0.0.1:{port}/graphql"
        server = uvicorn.Server(
            uvicorn.Config(
                fastapi_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
            )
        )
        serving = asyncio.create_task(server.serve())
        plants.append((plant, server, serving))

        async def listening() -> None:
            assert server.started

        await eventually(listening)
        await tail.wait_caught_up()
        return plant

    yield build

    for plant, server, serving in plants:
        server.should_exit = True
        await serving
        for task in plant.background:
            task.cancel()
        await asyncio.gather(*plant.background, return_exceptions=True)
        await plant.client.aclose()
        plant.services.login_lane.shutdown()
        await store_executor.call(plant.app.close)
    for pool in pools:
        await pool.close()
    store_executor.shutdown()
