"""Fixtures for the real services on this machine (PostgreSQL, NATS JetStream, Redis).

The URLs come from the same ``PLANTCORE_*`` variables as the application, with
the machine's standard local addresses as defaults. Integration tests fail,
rather than skip, when a service is down: CI starts them first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from eventstore.roles import PlantRoles
from plantcore.db_init import InitialisedDatabase, initialise_database
from plantcore.streams import ensure_deadletter_stream, ensure_telemetry_stream
from projections.live_client import live_state_client
from tests.support import drop_roles, fresh_database, unique

TEST_DATABASE_URL = os.environ.get(
    "PLANTCORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TEST_NATS_URL = os.environ.get("PLANTCORE_NATS_URL", "nats://127.0.0.1:4222")
TEST_REDIS_URL = os.environ.get("PLANTCORE_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def database_url() -> str:
    return TEST_DATABASE_URL


@pytest.fixture
def nats_url() -> str:
    return TEST_NATS_URL


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_telemetry_stream(context)
    await ensure_deadletter_stream(context)  # where consumers put what they refuse
    return context


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = live_state_client(redis_url)  # as the runtime makes it
    yield client
    await client.aclose()


@pytest.fixture
def own_database(database_url: str) -> Iterator[str]:
    """A fresh database for this test: an event store and history of its own."""
    with fresh_database(database_url) as url:
        yield url


@pytest.fixture
async def plant_roles(own_database: str) -> AsyncIterator[InitialisedDatabase]:
    """``plantcore db init`` on this test's database, with roles of this test's own."""
    roles = PlantRoles.named(unique("plantcore").replace("-", "_"))
    initialised = await initialise_database(own_database, roles)
    yield initialised
    drop_roles(own_database, roles)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run with nothing passed, or with a skipped test, is not a green run.

    A skip would stand in for a missing feature or a service that is down; CI
    must say so instead of passing.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != 0:
        return
    skipped = len(reporter.stats.get("skipped", []))
    passed = len(reporter.stats.get("passed", []))
    if skipped or not passed:
        reporter.write_line(f"plantcore: {passed} passed, {skipped} skipped: failing the run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test starts (executors, servers) is stopped by the end of it."""
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before]
    for thread in leaked:
        thread.join(timeout=5)
    alive = [thread.name for thread in leaked if thread.is_alive()]
    assert not alive, f"threads left running: {alive}"
