"""One server process of the fan-out benchmark: plantcore's API, or a bare relay.

``python -m bench.fanout_server plantcore|bare --port P ...`` serves WebSockets
on a loopback port, prints ``ready`` once it listens, and stops when its
standard input closes (the benchmark closes it).

- ``plantcore``: the plant's API (``create_app`` with its default limits,
  served by uvicorn as the runtime serves it) on the benchmark's event store
  schema, with the live state's Redis client as the runtime makes it; each
  HMI's ``tagUpdates`` goes the whole way: token and session checked, the
  snapshot from Redis, the samples from NATS, GraphQL over graphql-transport-ws.
- ``bare``: a ``websockets`` server that subscribes each socket to the NATS
  subject its first message names and forwards every message's bytes as they
  are: what relaying the same messages costs without plantcore.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import partial

import nats
import uvicorn
import websockets
from nats.aio.msg import Msg

from api.app import create_app
from api.credentials import TokenSettings
from api.login_lane import LoginLane
from api.rate_limit import CommandRateCounter, LoginThrottle
from api.secrets import SecretBox, generate_key
from api.services import Services
from domain.application import PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.postgres import event_store_env
from projections.live_client import live_state_client

TAG = "speed"
AREA = "line"


def catalog(devices: list[str]) -> TagCatalog:
    tags = [
        TagLimits(device, TAG, "rpm", False, ValueKind.NUMBER, None, None) for device in devices
    ]
    return TagCatalog(tags, {device: DeviceInfo(area=AREA) for device in devices})


async def until_stdin_closes() -> None:
    await asyncio.to_thread(sys.stdin.read)


def ready() -> None:
    print("ready", flush=True)


async def serve_plantcore(args: argparse.Namespace) -> None:
    store = StoreExecutor(max_workers=4)
    env = {**event_store_env(args.database_url, pool_size=4), "POSTGRES_SCHEMA": args.schema}
    app = await store.call(partial(PlantApplication, catalog(args.devices.split(",")), env=env))
    redis = live_state_client(args.redis_url)
    nc = await nats.connect(args.nats_url)
    services = Services(
        app=app,
        store_executor=store,
        redis=redis,
        nats=nc,
        tokens=TokenSettings(secret=args.secret, audience="plantcore-bench"),
        command_log_tail=LogTail(app, store),
        secrets=SecretBox.from_text(generate_key()),
        command_rate=CommandRateCounter(redis),
        login_throttle=LoginThrottle(redis, limit=60),
        login_lane=LoginLane(workers=1),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host="127.0.0.1",
            port=args.port,
            lifespan="off",
            log_level="warning",
            ws="websockets-sansio",  # as the runtime serves it
            ws_max_size=services.max_ws_message_bytes,
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving  # raises what stopped it
            await asyncio.sleep(0.01)
        ready()
        await until_stdin_closes()
    finally:
        server.should_exit = True
        await serving
        await nc.close()
        await redis.aclose()
        services.login_lane.shutdown()
        await store.call(app.close)
        store.shutdown()


async def serve_bare(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.nats_url)

    async def relay(socket: websockets.ServerConnection) -> None:
        subject = str(await socket.recv())
        outbox: asyncio.Queue[Msg] = asyncio.Queue()
        subscription = await nc.subscribe(subject, cb=outbox.put)

        async def forward() -> None:
            await socket.send("subscribed")
            while True:
                await socket.send((await outbox.get()).data)

        # Until the client goes: a handler waiting on its queue would never see it go.
        forwarding = asyncio.create_task(forward())
        try:
            await socket.wait_closed()
        finally:
            forwarding.cancel()
            await asyncio.gather(forwarding, return_exceptions=True)
            await subscription.unsubscribe()

    try:
        async with websockets.serve(relay, "127.0.0.1", args.port):
            ready()
            await until_stdin_closes()
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_server", description=__doc__)
    parser.add_argument("side", choices=["plantcore", "bare"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--schema", default="")
    parser.add_argument("--devices", default="", help="comma-separated device ids")
    parser.add_argument("--secret", default="", help="the access tokens' signing key")
    args = parser.parse_args()
    asyncio.run(serve_plantcore(args) if args.side == "plantcore" else serve_bare(args))


if __name__ == "__main__":
    main()
