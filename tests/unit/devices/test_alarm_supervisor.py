"""A supervisor evaluates its device's alarms and publishes the transitions through its sink."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import AlarmKind, ConnectionState
from plantfile.protocols.modbus import ModbusDevice
from tests.support import eventually, unique
from tests.unit.devices.fakes import FakeClock, FakeDriver, RecordingSink

POLICY = SupervisionPolicy(poll_seconds=1.0, heartbeat_seconds=1e9, max_consecutive_fails=3)


def device(alarms: list[dict[str, Any]], comm_loss: dict[str, Any] | None = None) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {
            "id": unique("press"),
            "protocol": "modbus",
            "area": "press-line",
            "modbus": {"host": "plc"},
            "comm_loss_alarm": comm_loss,
            "tags": [
                {"name": "running", "address": 0, "type": "bool"},
                {"name": "temperature", "address": 3, "type": "float32", "unit": "°C",
                 "alarms": alarms},
            ],
        }
    )  # fmt: skip


class Rig:
    def __init__(self, config: ModbusDevice, policy: SupervisionPolicy = POLICY) -> None:
        self.config = config
        self.clock = FakeClock()
        self.sink = RecordingSink()
        self.driver = FakeDriver({"running": True, "temperature": 40.0}, self.clock)
        self.supervisor = DeviceSupervisor(
            config, self.driver, self.sink, policy=policy, clock=self.clock,
            sleep=self.clock.sleep, rng=random.Random(7),
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.supervisor.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})

    async def next_wake(self) -> None:
        await until(lambda: self.clock.sleeping)
        self.clock.advance_to_next_wake()

    def alarm_states(self) -> list[tuple[str, bool]]:
        return [(t.condition, t.active) for t in self.sink.alarms]


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.stop()


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> None:
        assert condition()

    await eventually(probe, timeout=5.0)


async def test_a_value_over_the_limit_raises_the_alarm_through_the_sink(rigs: list[Rig]) -> None:
    rig = Rig(device([{"kind": "hi", "limit": 48, "deadband": 1, "priority": "high"}]))
    rigs.append(rig)
    rig.start()
    await until(lambda: len(rig.sink.alarms) == 1)
    normal = rig.sink.alarms[0]
    assert (normal.device, normal.condition, normal.active) == (
        rig.config.id,
        "temperature_hi",
        False,
    )
    assert normal.area == "press-line"

    rig.driver.values["temperature"] = 52.5
    await rig.next_wake()
    await until(lambda: len(rig.sink.alarms) == 2)
    raised = rig.sink.alarms[1]
    assert (raised.active, raised.value, raised.limit) == (True, 52.5, 48.0)
    # Published with the batch of the poll that saw it.
    assert raised.ts == rig.sink.batches[-1].ts

    rig.driver.values["temperature"] = 47.5  # inside the deadband
    await rig.next_wake()
    await until(lambda: len(rig.sink.batches) == 3)
    rig.driver.values["temperature"] = 46.0
    await rig.next_wake()
    await until(lambda: len(rig.sink.alarms) == 3)
    assert rig.alarm_states() == [
        ("temperature_hi", False),
        ("temperature_hi", True),
        ("temperature_hi", False),
    ]
    assert rig.supervisor.counters.alarm_transitions == 3


async def test_an_on_delay_ends_between_polls_on_the_supervisor_clock(rigs: list[Rig]) -> None:
    slow = SupervisionPolicy(poll_seconds=10.0, heartbeat_seconds=1e9)
    hi = {"kind": "hi", "limit": 48, "on_delay": 2.5, "priority": "high"}
    rig = Rig(device([hi]), slow)
    rigs.append(rig)
    rig.driver.values["temperature"] = 60.0
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    assert rig.sink.alarms == []
    # The supervisor wakes for the delay, not for the next poll ten seconds later.
    assert rig.clock.sleeps[-1] == pytest.approx(2.5)
    await rig.next_wake()
    await until(lambda: len(rig.sink.alarms) == 1)
    assert rig.clock.now == pytest.approx(2.5)
    assert rig.sink.alarms[0].active
    assert len(rig.sink.batches) == 1
    assert (rig.sink.alarms[0].ts - rig.sink.batches[0].ts).total_seconds() == pytest.approx(2.5)


async def test_a_lost_connection_raises_the_comm_loss_alarm_and_its_return_clears_it(
    rigs: list[Rig],
) -> None:
    rig = Rig(device([], comm_loss={"priority": "critical", "on_delay": 3}))
    rigs.append(rig)
    rig.start()
    await until(lambda: rig.alarm_states() == [("comm_loss", False)])

    rig.driver.drop_on_next_read = True
    rig.driver.refuse_connects = 100
    await rig.next_wake()
    await until(lambda: rig.supervisor.state is ConnectionState.DISCONNECTED)
    lost_at = rig.clock.now
    assert rig.alarm_states() == [("comm_loss", False)]
    # The alarm rises after its delay, while the supervisor waits to reconnect.
    while len(rig.sink.alarms) < 2:
        await rig.next_wake()
        await until(lambda: rig.clock.sleeping)
    lost = rig.sink.alarms[1]
    assert (lost.active, lost.kind, lost.priority) == (True, AlarmKind.COMM_LOSS, "critical")
    assert rig.clock.now - lost_at == pytest.approx(3.0)

    rig.driver.refuse_connects = 0
    while rig.supervisor.state is not ConnectionState.CONNECTED:
        await rig.next_wake()
        await until(lambda: rig.clock.sleeping)
    await until(lambda: len(rig.sink.alarms) == 3)
    assert rig.alarm_states()[-1] == ("comm_loss", False)


async def test_a_device_without_alarms_publishes_none(rigs: list[Rig]) -> None:
    rig = Rig(device([]))
    rigs.append(rig)
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    rig.driver.values["temperature"] = 99.0
    await rig.next_wake()
    await until(lambda: len(rig.sink.batches) == 2)
    assert rig.sink.alarms == []
    assert set(rig.clock.sleeps) == {1.0}  # the poll period, nothing else
