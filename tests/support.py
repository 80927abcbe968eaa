"""Helpers shared by the test layers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A fresh id per test, so tests never see each other's devices, users or rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


async def delete_runtime_consumers(js: JetStreamContext, prefix: str) -> None:
    """Delete the durable consumers and the events stream a test's runtime made."""
    for stream, durables in RUNTIME_DURABLES.items():
        for durable in durables:
            with contextlib.suppress(NotFoundError):  # the runtime may not have made it
                await js.delete_consumer(stream, prefix + durable)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(runtime_event_stream(prefix)[0])
