"""A whole API on the machine's real PostgreSQL, Redis and NATS, per test.

Each test gets its own device names and operator (the event table is shared),
an in-process ASGI client for queries and mutations, and a real uvicorn
server on a free port for graphql-transport-ws subscriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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
from api.auth import TokenSettings, hash_password
from api.services import Services, utc_now
from devices.dispatcher import CommandDispatcher
from devices.expiry import ExpirySweeper
from domain.application import PlantApplication
from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.messages import WRITE_SUBJECT, WriteReply, WriteRequest
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail, TrackedPosition
from eventstore.postgres import event_store_env
from tests.support import eventually, free_port, unique

PASSWORD = "correct horse battery"
TOKENS = TokenSettings(secret="test-secret-" + "x" * 32, audience="plantcore")


def plant_catalog(device: str) -> TagCatalog:
    return TagCatalog(
        [
            TagLimits(device, "speed", "rpm", False, ValueKind.NUMBER, None, None),
            TagLimits(device, "speed_setpoint", "rpm", True, ValueKind.NUMBER, 0.0, 1800.0),
            TagLimits(device, "running", "", True, ValueKind.BOOL, None, None),
        ]
    )


@dataclass
class Plant:
    app: PlantApplication
    store: StoreExecutor
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

    async def login(self) -> str:
        body = await self.gql(
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p)"
            " { accessToken } }",
            u=self.username,
            p=PASSWORD,
        )
        token: str = body["data"]["login"]["accessToken"]
        return token

    def dispatcher(self, *, initial: int, **options: Any) -> CommandDispatcher:
        """A command dispatcher with its own tracked position (not yet following)."""
        return CommandDispatcher(
            self.app,
            self.store,
            self.nc,
            TrackedPosition(self.tracking, self.store, unique("dispatcher"), initial=initial),
            **{"write_timeout": 0.5, "read_timeout": 0.5, "retry_delay": 0.1, **options},
        )

    def follow(self, *followers: CommandDispatcher | ExpirySweeper) -> LogTail:
        """Run these followers on a log tail of their own."""
        tail = LogTail(self.app, self.store, followers=followers, poll_interval=0.05)
        self.background += [asyncio.create_task(f.run()) for f in followers]
        self.background.append(asyncio.create_task(tail.run()))
        return tail

    async def events(self, command_id: str) -> list[str]:
        from uuid import UUID

        events = await self.store.call(self.app.command_events, UUID(command_id))
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
    store = StoreExecutor(max_workers=4)

    async def build(
        confirm_window: timedelta = timedelta(seconds=30), dispatcher: bool = True
    ) -> Plant:
        device = unique("press")
        app = await store.call(
            PlantApplication,
            plant_catalog(device),
            env=event_store_env(database_url, pool_size=4),
            confirm_window=confirm_window,
        )
        start = await store.call(app.recorder.max_notification_id) or 0
        username = unique("op")
        secret = pyotp.random_base32()
        await store.call(
            app.register_operator,
            username=username,
            full_name="Ana Operator",
            role="operator",
            password_hash=hash_password(PASSWORD),
            totp_secret=secret,
            actor="admin",
            at=utc_now(),
        )
        recorder = await store.call(app.factory.tracking_recorder)
        sweeper = ExpirySweeper(
            app,
            store,
            TrackedPosition(recorder, store, unique("sweeper"), initial=start),
            max_sleep=0.05,
        )
        plant = Plant(
            app=app,
            store=store,
            services=None,  # type: ignore[arg-type]
            client=None,  # type: ignore[arg-type]
            ws_url="",
            device=device,
            username=username,
            totp=pyotp.TOTP(secret),
            nc=nc,
            tracking=recorder,
            start_position=start,
        )
        followers: list[CommandDispatcher | ExpirySweeper] = [sweeper]
        if dispatcher:
            followers.append(plant.dispatcher(initial=start))
        tail = plant.follow(*followers)
        plant.services = Services(
            app=app,
            store=store,
            redis=redis_client,
            nats=nc,
            tokens=TOKENS,
            commands=tail,
            clock=utc_now,
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
        await store.call(plant.app.close)
    store.shutdown()
