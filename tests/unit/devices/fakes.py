"""In-memory stand-ins at the supervisor's ports: a driver, a sink and a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from devices.device_errors import DeviceConnectionError
from devices.driver import BAD_READING, Reading
from domain.messages import (
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    Quality,
    TelemetryBatch,
)
from plantfile.tags import RawValue, TagConfig


class FakeClock:
    """Monotonic time that moves only when the test advances it; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        await wake

    @property
    def sleeping(self) -> bool:
        return any(not wake.done() for _, wake in self._sleepers)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, wake in self._sleepers:
            if at <= self.now and not wake.done():
                wake.set_result(None)
        self._sleepers = [(at, wake) for at, wake in self._sleepers if not wake.done()]

    def advance_to_next_wake(self) -> None:
        pending = [at for at, wake in self._sleepers if not wake.done()]
        assert pending, "nobody is sleeping"
        self.advance(max(0.0, min(pending) - self.now))


class FakeDriver:
    """A device in memory: tag values by name, with switches to make it fail."""

    def __init__(self, values: dict[str, RawValue], clock: FakeClock | None = None) -> None:
        self.values = dict(values)
        self.connected = False
        self.connects = 0
        self.connect_times: list[float] = []  # on the fake clock, when it has one
        self.refuse_connects = 0  # how many of the next connect attempts fail
        self.bad_tags: set[str] = set()
        self.drop_on_next_read = False
        self.crash_on_next_read: Exception | None = None
        self.write_error: Exception | None = None
        self.writes: list[tuple[str, RawValue]] = []
        self.read_seconds = 0.0  # fake time a read takes
        self.connect_gate: asyncio.Event | None = None  # connect waits for it when set
        self.read_gate: asyncio.Event | None = None  # read waits for it when set
        self.reading = False
        # Like a client library whose timeout wrapper (asyncio.wait_for on Python
        # 3.11) loses a cancel that arrives as the answer does: the read completes.
        self.swallow_cancel = False
        self._clock = clock

    async def connect(self) -> None:
        self.connects += 1
        if self._clock is not None:
            self.connect_times.append(self._clock.now)
        if self.connect_gate is not None:
            await self.connect_gate.wait()
        if self.refuse_connects:
            self.refuse_connects -= 1
            raise DeviceConnectionError("fake", "connection refused")
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        if self.crash_on_next_read is not None:
            error, self.crash_on_next_read = self.crash_on_next_read, None
            raise error
        if self.drop_on_next_read:
            self.drop_on_next_read = False
            self.connected = False
        if not self.connected:
            raise DeviceConnectionError("fake", "connection reset by peer")
        if self.read_gate is not None:
            await self._wait_at_read_gate(self.read_gate)
        if self._clock is not None:
            self._clock.now += self.read_seconds
        return {
            tag.name: BAD_READING
            if tag.name in self.bad_tags
            else Reading(self.values[tag.name], Quality.GOOD)
            for tag in tags
        }

    async def _wait_at_read_gate(self, gate: asyncio.Event) -> None:
        self.reading = True
        try:
            await gate.wait()
        except asyncio.CancelledError:
            if not self.swallow_cancel:
                raise
        finally:
            self.reading = False

    async def write(self, tag: TagConfig, value: RawValue) -> None:
        if not self.connected:
            raise DeviceConnectionError("fake", "not connected")
        if self.write_error is not None:
            raise self.write_error
        self.values[tag.name] = value
        self.writes.append((tag.name, value))


class RecordingSink:
    def __init__(self) -> None:
        self.batches: list[TelemetryBatch] = []
        self.statuses: list[DeviceStatus] = []
        self.alarms: list[AlarmTransition] = []

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        self.batches.append(batch)

    async def publish_status(self, status: DeviceStatus) -> None:
        self.statuses.append(status)

    async def publish_alarm(self, transition: AlarmTransition) -> None:
        self.alarms.append(transition)

    def states(self) -> list[ConnectionState]:
        return [status.state for status in self.statuses]

    def all_bad(self) -> list[TelemetryBatch]:
        return [b for b in self.batches if all(s.quality is Quality.BAD for s in b.samples)]
