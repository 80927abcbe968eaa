"""The forwarder keeps a window of publishes in flight, one per device, 256 by default.

A window costs the forwarder several turns of the event loop whatever its size, so
on a loop a large fleet keeps busy its rate is about the window over those turns
(ADR 0045). Here JetStream is a stand-in that holds every publish until the test
lets them go, so what the forwarder has in flight at once can be counted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js.api import PubAck

from devices.nats_bridge import DEFAULT_WINDOW, OutboxForwarder
from devices.outbox import EntryKind, Outbox

DEADLINE = 10.0  # seconds before a forwarder that never fills its window fails the test


class HeldJetStream:
    """Publishes that wait until released; the most that waited at once, by subject."""

    def __init__(self) -> None:
        self.waiting: list[str] = []
        self.most_at_once = 0
        self.released = asyncio.Event()
        self.filled = asyncio.Event()
        self.fill_at = 0

    async def publish(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str]
    ) -> PubAck:
        self.waiting.append(subject)
        self.most_at_once = max(self.most_at_once, len(self.waiting))
        if len(self.waiting) >= self.fill_at:
            self.filled.set()
        try:
            await self.released.wait()
        finally:
            self.waiting.remove(subject)
        return PubAck(stream="TELEMETRY", seq=1)


class HeldNats:
    is_connected = True

    def __init__(self) -> None:
        self.js = HeldJetStream()

    def jetstream(self) -> HeldJetStream:
        return self.js


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    opened = Outbox.open(tmp_path / "buffer", max_bytes=64 * 1024 * 1024)
    yield opened
    opened.close()


def fill(outbox: Outbox, devices: int, per_device: int) -> None:
    for round_ in range(per_device):
        for index in range(devices):
            device = f"press-{index:03d}"
            payload = f'{{"round": {round_}}}'.encode()
            subject = f"plant.telemetry.{device}"
            outbox.append(EntryKind.TELEMETRY, device, subject, uuid.uuid4().hex, payload)


async def forward_held(outbox: Outbox, forwarder: OutboxForwarder, nats: HeldNats) -> None:
    """Run the forwarder until its first window is in flight, then let everything go."""
    running = asyncio.create_task(forwarder.run())
    try:
        async with asyncio.timeout(DEADLINE):
            await nats.js.filled.wait()
            nats.js.released.set()
            await forwarder.drained()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_backlog_of_many_devices_goes_out_256_at_once(outbox: Outbox) -> None:
    fill(outbox, devices=300, per_device=2)
    nats = HeldNats()
    nats.js.fill_at = DEFAULT_WINDOW
    forwarder = OutboxForwarder(outbox, nats)  # type: ignore[arg-type]

    await forward_held(outbox, forwarder, nats)

    assert DEFAULT_WINDOW == 256
    assert nats.js.most_at_once == DEFAULT_WINDOW
    assert outbox.figures().forwarded == 600


async def test_never_two_of_one_device_at_once_however_large_the_window(outbox: Outbox) -> None:
    fill(outbox, devices=3, per_device=5)
    nats = HeldNats()
    nats.js.fill_at = 3
    forwarder = OutboxForwarder(outbox, nats, window=DEFAULT_WINDOW)  # type: ignore[arg-type]

    await forward_held(outbox, forwarder, nats)

    assert nats.js.most_at_once == 3
    assert outbox.figures().forwarded == 15
