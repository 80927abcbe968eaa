"""Fixtures of the plant core's integration tests: a running runtime, the statuses NATS carries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from domain.messages import STATUS_SUBJECT, ConnectionState, DeviceStatus
from plantcore.db_init import InitialisedDatabase
from plantcore.runtime import PlantRuntime
from plantfile.loader import load_plant_file
from tests.support import delete_runtime_consumers, runtime_config, unique

RunPlant = Callable[..., Awaitable[PlantRuntime]]


class StatusWatch:
    """The last status NATS carried for each device."""

    def __init__(self) -> None:
        self.last: dict[str, DeviceStatus] = {}

    async def record(self, msg: Msg) -> None:
        status = DeviceStatus.decode(msg.data)
        self.last[status.device] = status

    def state(self, device: str) -> ConnectionState | None:
        status = self.last.get(device)
        return status.state if status else None


@pytest.fixture
async def statuses(nc: NatsClient) -> AsyncIterator[StatusWatch]:
    watch = StatusWatch()
    subscription = await nc.subscribe(STATUS_SUBJECT.format(device="*"), cb=watch.record)
    yield watch
    await subscription.unsubscribe()


@pytest.fixture
async def run_plant(
    plant_roles: InitialisedDatabase, nats_url: str, redis_url: str, js: JetStreamContext
) -> AsyncIterator[RunPlant]:
    """Starts a plant core that follows a plant file, on this test's database; stops it after.

    It connects as the runtime role of ``plantcore db init``, as in production.
    """
    prefix = unique("plant") + "-"
    running: list[asyncio.Task[None]] = []

    async def start(plant_file: Path, **options: Any) -> PlantRuntime:
        runtime = PlantRuntime(
            runtime_config(
                plant_roles.runtime_url,
                nats_url,
                redis_url,
                load_plant_file(plant_file),
                prefix,
                plant_file=plant_file,
                plant_file_poll_seconds=0.1,
                **options,
            )
        )
        running.append(asyncio.create_task(runtime.run()))
        return runtime

    yield start
    for task in running:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await delete_runtime_consumers(js, prefix)
