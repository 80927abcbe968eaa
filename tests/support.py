"""Helpers shared by the test layers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from psycopg import sql

from api.credentials import TokenSettings
from api.secrets import SecretBox, generate_key
from eventstore.roles import PlantRoles
from plantcore import embedded
from plantcore.runtime import RuntimeConfig
from plantfile.plant import PlantConfig
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX
from tests.private_services import PrivateNats

T = TypeVar("T")

# A spare loopback port: the demo's embedded servers and the tests share one way to find it.
free_port = embedded.free_port


def unique(prefix: str) -> str:
    """A fresh id per test, so tests never see each other's devices, users or rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def nats_server(port: int, store_dir: Path) -> Iterator[None]:
    """A NATS server with JetStream of a test's own; the same port and store when restarted.

    Stopped by its PID when the block ends, so a test can take NATS away and bring
    it back without touching the machine's own server.
    """
    with PrivateNats(store_dir, port):
        yield


@contextlib.contextmanager
def fresh_database(database_url: str) -> Iterator[str]:
    """A new, empty database on ``database_url``'s server, dropped when the block ends."""
    name = unique("plantcore_test").replace("-", "_")
    parts = urlsplit(database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Retry ``probe`` until it returns without an AssertionError, or re-raise at the deadline.

    Eventual consistency is awaited on a condition, never with a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await probe()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)


# The durable consumers a plant core makes, by stream: a test's runtime leaves them
# behind under its consumer prefix unless the test deletes them.
RUNTIME_DURABLES = {"TELEMETRY": ("live-state", "history"), "ALARMS": ("alarm-recorder",)}


def runtime_event_stream(prefix: str) -> tuple[str, str]:
    """The events stream and subject prefix of a test's runtime: its own, as its database is.

    A runtime relays its event log into that stream; two tests' runtimes sharing
    one would meet each other's events there.
    """
    token = prefix.strip("-").replace(".", "-")
    return f"EVENTS-{token}", f"plant.test-events.{token}"


def runtime_config(
    database_url: str,
    nats_url: str,
    redis_url: str,
    plant: PlantConfig,
    prefix: str,
    secrets: SecretBox | None = None,
    **options: Any,
) -> RuntimeConfig:
    """A plant core's settings as a test runs it: its own consumers and events stream.

    The API listens on a free loopback port; the projections start with what arrives
    from now on, since the shared stream holds other tests' telemetry. ``options``
    are further :class:`RuntimeConfig` fields.
    """
    return RuntimeConfig(
        database_url=database_url,
        nats_url=nats_url,
        redis_url=redis_url,
        plant=plant,
        tokens=TokenSettings(secret=unique("secret") * 4, audience="plantcore"),
        secrets=secrets or SecretBox.from_text(generate_key()),
        http_host="127.0.0.1",
        http_port=0,
        consumer_prefix=prefix,
        events_stream=runtime_event_stream(prefix)[0],
        events_subject_prefix=runtime_event_stream(prefix)[1],
        projections_start="new",
        **options,
    )


async def delete_runtime_consumers(js: JetStreamContext, prefix: str) -> None:
    """Delete the durable consumers, their dead letters and the events stream of a runtime.

    Its consumers read the shared streams, so they also dead-letter what other
    tests publish there on purpose.
    """
    for stream, durables in RUNTIME_DURABLES.items():
        for durable in durables:
            with contextlib.suppress(NotFoundError):  # the runtime may not have made it
                await js.delete_consumer(stream, prefix + durable)
            with contextlib.suppress(NotFoundError):
                await js.purge_stream(
                    DEADLETTER_STREAM, subject=f"{DEADLETTER_SUBJECT_PREFIX}.{prefix}{durable}"
                )
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(runtime_event_stream(prefix)[0])


def drop_roles(database_url: str, roles: PlantRoles) -> None:
    """Drop the roles of ``plantcore db init`` a test made, with all they own in its database.

    Roles belong to the whole server, so a test never leaves one behind; their
    sessions are ended first, as a process a test left running would hold them.
    """
    names = [roles.owner, *roles.logins]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
            (names,),
        )
        existing = [
            role
            for (role,) in conn.execute(
                "SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%s)", (names,)
            )
        ]
        if existing:
            present = sql.SQL(", ").join(sql.Identifier(role) for role in existing)
            conn.execute(sql.SQL("DROP OWNED BY {}").format(present))
            conn.execute(sql.SQL("DROP ROLE {}").format(present))
