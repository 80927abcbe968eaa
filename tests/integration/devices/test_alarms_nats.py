"""Alarms evaluated by a supervisor on the real simulator, published into the ALARMS stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from devices.drivers.modbus import ModbusDriver
from devices.nats_bridge import NatsTelemetrySink
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import (
    ALARM_SUBJECT,
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    ConnectionState,
)
from plantcore.streams import ensure_alarm_stream
from plantfile.alarm_conditions import CommLossAlarm
from plantfile.protocols.modbus import ModbusDevice
from simulators.modbus_server import ModbusSimulator
from tests.integration.devices.conftest import press_config
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

STREAM = "ALARMS"
FAST = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)
HI, HIHI = "motor_temperature_hi", "motor_temperature_hihi"


@pytest.fixture
async def alarm_js(js: JetStreamContext) -> JetStreamContext:
    await ensure_alarm_stream(js)
    return js


@asynccontextmanager
async def alarms_of(js: JetStreamContext, device: str) -> AsyncIterator[list[AlarmTransition]]:
    """What the ALARMS stream delivers for ``device``, decoded; its messages purged after."""
    subject = ALARM_SUBJECT.format(device=device)
    received: list[AlarmTransition] = []

    async def on_message(msg: Msg) -> None:
        received.append(AlarmTransition.decode(msg.data))

    subscription = await js.subscribe(subject, cb=on_message, stream=STREAM)
    try:
        yield received
    finally:
        info = await subscription.consumer_info()
        await subscription.unsubscribe()
        await js.delete_consumer(info.stream_name, info.name)
        # The alarm recorder reads the stream from its start: leave nothing of a test behind.
        await js.purge_stream(STREAM, subject=subject)


@asynccontextmanager
async def supervised(
    sink: NatsTelemetrySink, config: ModbusDevice
) -> AsyncIterator[DeviceSupervisor]:
    supervisor = DeviceSupervisor(config, ModbusDriver(config), sink, policy=FAST)
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor
    finally:
        task.cancel()
        await asyncio.wait({task})


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def probe() -> None:
        assert condition()

    await eventually(probe, timeout=timeout)


def last(received: list[AlarmTransition], condition: str) -> AlarmTransition | None:
    return next((t for t in reversed(received) if t.condition == condition), None)


def is_active(received: list[AlarmTransition], condition: str) -> bool | None:
    transition = last(received, condition)
    return None if transition is None else transition.active


def is_suppressed(received: list[AlarmTransition], condition: str) -> bool | None:
    transition = last(received, condition)
    return None if transition is None else transition.suppressed


async def stored(js: JetStreamContext, device: str) -> int:
    subject = ALARM_SUBJECT.format(device=device)
    info = await js.stream_info(STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def test_a_temperature_over_the_hi_limit_raises_the_alarm_and_it_clears_when_it_drops(
    alarm_js: JetStreamContext, nats_sink: NatsTelemetrySink, press: ModbusSimulator
) -> None:
    config = press_config(press.port)  # the demo press's alarms: hi 48 °C, hihi 70 °C
    async with alarms_of(alarm_js, config.id) as received, supervised(nats_sink, config):
        await until(lambda: is_active(received, HI) is False and is_active(received, HIHI) is False)
        assert is_active(received, "comm_loss") is False

        press.model.motor_temperature = 60.0
        await until(lambda: is_active(received, HI) is True)
        raised = last(received, HI)
        assert raised is not None
        assert (raised.device, raised.kind, raised.priority, raised.area, raised.tag) == (
            config.id,
            AlarmKind.HI,
            AlarmPriority.HIGH,
            "press-line",
            "motor_temperature",
        )
        assert (raised.limit, raised.suppressed, raised.latch) == (48.0, False, False)
        assert raised.value == pytest.approx(60.0)
        assert is_active(received, HIHI) is False

        # (Holding inside the deadband is tested on a controlled clock in test_alarm_evaluator.)
        press.model.motor_temperature = 40.0
        await until(lambda: is_active(received, HI) is False)
        cleared = last(received, HI)
        assert cleared is not None
        # The off-delay: two seconds after the first sample under 47 °C at the earliest.
        assert (cleared.ts - raised.ts).total_seconds() >= 2.0
        assert cleared.value == pytest.approx(40.0)
        assert await stored(alarm_js, config.id) == len(received)
        assert len({t.transition_id for t in received}) == len(received)


async def test_a_stopped_press_suppresses_its_hi_alarm(
    alarm_js: JetStreamContext, nats_sink: NatsTelemetrySink, press: ModbusSimulator
) -> None:
    config = press_config(press.port)
    async with alarms_of(alarm_js, config.id) as received, supervised(nats_sink, config):
        await until(lambda: is_active(received, HI) is False)
        press.model.running = False
        await until(lambda: is_suppressed(received, HI) is True)
        assert is_active(received, HI) is False
        press.model.motor_temperature = 60.0
        await until(lambda: is_active(received, HI) is True)
        transition = last(received, HI)
        assert transition is not None
        assert transition.suppressed


async def test_losing_the_device_raises_comm_loss_and_its_return_clears_it(
    alarm_js: JetStreamContext, nats_sink: NatsTelemetrySink, press: ModbusSimulator
) -> None:
    config = press_config(press.port).model_copy(
        update={"comm_loss_alarm": CommLossAlarm(priority=AlarmPriority.CRITICAL, on_delay=0.5)}
    )
    async with (
        alarms_of(alarm_js, config.id) as received,
        supervised(nats_sink, config) as supervisor,
    ):
        await until(lambda: is_active(received, "comm_loss") is False)
        await press.stop()
        await until(lambda: supervisor.state is ConnectionState.DISCONNECTED)
        await until(lambda: is_active(received, "comm_loss") is True)
        lost = last(received, "comm_loss")
        assert lost is not None
        assert (lost.kind, lost.priority, lost.tag, lost.value) == (
            AlarmKind.COMM_LOSS,
            AlarmPriority.CRITICAL,
            "",
            None,
        )
        # The temperature alarms hold their state while the values are bad.
        assert is_active(received, HI) is False

        await press.start()
        await until(lambda: is_active(received, "comm_loss") is False)


async def test_a_transition_published_twice_is_stored_once_under_its_id(
    alarm_js: JetStreamContext, nats_sink: NatsTelemetrySink
) -> None:
    device = unique("press")
    transition = AlarmTransition(
        transition_id=unique("transition"),
        device=device,
        condition=HI,
        kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH,
        area="press-line",
        tag="motor_temperature",
        active=True,
        suppressed=False,
        latch=False,
        value=60.0,
        limit=48.0,
        message="Motor winding temperature high",
        ts=datetime(2026, 11, 23, 9, 15, 2, 120000, tzinfo=UTC),
    )
    async with alarms_of(alarm_js, device) as received:
        await nats_sink.publish_alarm(transition)
        await nats_sink.publish_alarm(transition)
        await until(lambda: len(received) == 1)
        assert received == [transition]
        last = await alarm_js.get_last_msg(STREAM, ALARM_SUBJECT.format(device=device))
        assert last.headers is not None
        assert last.headers["Nats-Msg-Id"] == transition.transition_id
        assert await stored(alarm_js, device) == 1
