"""The whole stack for end-to-end tests: a plant core's runtime on the machine's services.

:func:`running_plant` runs what ``plantcore run`` runs, in the test's event loop, on a
database, an events stream and durable consumers of its own (dropped afterwards), with
accounts made as an admin would make them: each enrols their own authenticator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nats

from api.secrets import SecretBox, generate_key
from eventstore.roles import PlantRoles
from plantcore.db_init import initialise_database
from plantcore.operators import Credentials, create_operator, enrol_with_token
from plantcore.runtime import PlantRuntime
from plantcore.streams import ensure_deadletter_stream, ensure_telemetry_stream
from plantfile.loader import load_plant_file
from plantfile.plant import PlantConfig
from plantfile.protocols.modbus import ModbusDevice
from tests.conftest import TEST_DATABASE_URL, TEST_NATS_URL, TEST_REDIS_URL
from tests.support import (
    delete_runtime_consumers,
    drop_roles,
    fresh_database,
    runtime_config,
    unique,
)

PASSWORD = "a long enough password"
START_SECONDS = 30


def press_plant(device: str, port: int) -> PlantConfig:
    """The demo's plant file, its press renamed for this test and pointed at its simulator.

    Its area is named after it too: alarm KPIs count by area, and a demo plant core
    elsewhere on the machine's NATS publishes alarms of the demo's ``press-line``.
    """
    plant = load_plant_file("config/demo-plant.yaml")
    press = next(d for d in plant.devices if isinstance(d, ModbusDevice))
    press = press.model_copy(
        update={
            "id": device,
            "area": area_of(device),
            "modbus": press.modbus.model_copy(update={"port": port}),
            "simulate": False,  # the test runs the simulator, to look into its model
        }
    )
    return plant.model_copy(update={"devices": [press], "poll_seconds": 0.2})


def area_of(device: str) -> str:
    return f"{device}-line"


async def started(running: asyncio.Task[None], ready: asyncio.Event) -> None:
    """Once the runtime called back ready; what stopped it, if it stopped instead."""
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait(
        {running, waiting}, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED
    )
    waiting.cancel()
    if running.done():
        running.result()  # raises what stopped the runtime
    assert ready.is_set(), f"the stack did not start within {START_SECONDS} s"


@dataclass(frozen=True)
class Account:
    """Who to make: roles and scopes (``plant``, ``area:<name>``, ``device:<id>``)."""

    roles: Sequence[str]
    scopes: Sequence[str] = ("plant",)
    full_name: str = "End To End"


@dataclass
class RunningPlant:
    runtime: PlantRuntime
    # Each account's credentials, by the name the test gave it.
    people: dict[str, Credentials] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.runtime.api_url


@contextlib.asynccontextmanager
async def running_plant(
    plant: PlantConfig, accounts: Mapping[str, Account], **options: Any
) -> AsyncIterator[RunningPlant]:
    """The runtime for ``plant``, serving its API on a free port, with ``accounts`` made.

    ``options`` are further :class:`~plantcore.runtime.RuntimeConfig` fields.
    """
    # Every test logs in from 127.0.0.1, and the per-address window is counted in Redis,
    # which every plant core on the machine shares: the production 20 a minute would
    # refuse a plant started right after another suite's logins.
    options.setdefault("login_rate_per_minute", 240)
    prefix = unique("e2e") + "-"
    box = SecretBox.from_text(generate_key())
    client = await nats.connect(TEST_NATS_URL, connect_timeout=5, max_reconnect_attempts=0)
    js = client.jetstream()
    await ensure_telemetry_stream(js)
    await ensure_deadletter_stream(js)
    try:
        with fresh_database(TEST_DATABASE_URL) as database:
            roles = PlantRoles.named(unique("plantcore").replace("-", "_"))
            initialised = await initialise_database(database, roles)
            try:
                runtime = PlantRuntime(
                    runtime_config(
                        initialised.runtime_url,  # as in production
                        TEST_NATS_URL,
                        TEST_REDIS_URL,
                        plant,
                        prefix,
                        box,
                        **options,
                    )
                )
                ready = asyncio.Event()

                async def on_ready(_: PlantRuntime) -> None:
                    ready.set()

                running = asyncio.create_task(runtime.run(on_ready))
                try:
                    await started(running, ready)
                    yield RunningPlant(runtime, await _accounts(runtime, box, accounts))
                finally:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
            finally:
                drop_roles(database, roles)
    finally:
        await delete_runtime_consumers(js, prefix)
        await client.drain()


async def _accounts(
    runtime: PlantRuntime, box: SecretBox, accounts: Mapping[str, Account]
) -> dict[str, Credentials]:
    assert runtime.app is not None
    people = {}
    for name, account in accounts.items():
        grant = await asyncio.to_thread(
            partial(create_operator, runtime.app),
            username=unique(name),
            full_name=account.full_name,
            roles=list(account.roles),
            scopes=list(account.scopes),
            password=PASSWORD,
            actor="test",
        )
        # Each enrols their own authenticator with the token they were given.
        secret = await asyncio.to_thread(
            partial(enrol_with_token, runtime.app, box),
            username=grant.username,
            enrolment_token=grant.enrolment_token,
        )
        people[name] = Credentials(grant.username, PASSWORD, secret)
    return people
