"""The NATS sink's alarm publishing, against a JetStream stand-in that can fail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import nats.errors
import pytest
from nats.js import JetStreamContext

from devices import nats_bridge
from devices.nats_bridge import NatsTelemetrySink
from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    TelemetryBatch,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class FakeJetStream:
    def __init__(self) -> None:
        self.down = False
        self.messages: list[tuple[str, bytes, dict[str, Any] | None]] = []

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        if self.down:
            raise nats.errors.NoRespondersError
        self.messages.append((subject, payload, headers))

    def alarm_ids(self) -> list[str]:
        return [
            AlarmTransition.decode(payload).transition_id
            for subject, payload, _ in self.messages
            if subject.startswith("plant.alarms.")
        ]


def transition(number: int, device: str = "press-1") -> AlarmTransition:
    return AlarmTransition(
        transition_id=f"t{number}",
        device=device,
        condition="motor_temperature_hi",
        kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH,
        area="press-line",
        tag="motor_temperature",
        active=number % 2 == 1,
        suppressed=False,
        latch=False,
        value=50.0,
        limit=48.0,
        message="hot",
        ts=T0,
    )


def sink_on(js: FakeJetStream) -> NatsTelemetrySink:
    return NatsTelemetrySink(cast(JetStreamContext, js))


async def test_a_transition_goes_to_its_device_subject_with_its_id_as_msg_id() -> None:
    js = FakeJetStream()
    await sink_on(js).publish_alarm(transition(1))
    ((subject, payload, headers),) = js.messages
    assert subject == "plant.alarms.press-1"
    assert headers == {"Nats-Msg-Id": "t1"}
    assert AlarmTransition.decode(payload) == transition(1)


async def test_transitions_that_failed_are_published_in_order_after_the_next_success() -> None:
    js = FakeJetStream()
    sink = sink_on(js)
    js.down = True
    await sink.publish_alarm(transition(1))
    await sink.publish_alarm(transition(2))
    await sink.publish_status(DeviceStatus("press-1", ConnectionState.CONNECTED, T0))
    assert (sink.pending_alarms, sink.publish_failures, js.messages) == (2, 3, [])

    js.down = False
    await sink.publish_batch(TelemetryBatch("press-1", T0, ()))
    assert js.alarm_ids() == ["t1", "t2"]
    assert sink.pending_alarms == 0
    await sink.publish_alarm(transition(3))
    assert js.alarm_ids() == ["t1", "t2", "t3"]


async def test_a_new_transition_waits_behind_the_older_ones() -> None:
    js = FakeJetStream()
    sink = sink_on(js)
    js.down = True
    await sink.publish_alarm(transition(1))
    js.down = False
    await sink.publish_alarm(transition(2))
    assert js.alarm_ids() == ["t1", "t2"]


async def test_the_oldest_waiting_transitions_go_beyond_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nats_bridge, "MAX_PENDING_ALARMS", 2)
    js = FakeJetStream()
    sink = sink_on(js)
    js.down = True
    for number in (1, 2, 3):
        await sink.publish_alarm(transition(number))
    assert (sink.pending_alarms, sink.alarms_dropped) == (2, 1)
    js.down = False
    await sink.publish_status(DeviceStatus("press-1", ConnectionState.CONNECTED, T0))
    assert js.alarm_ids() == ["t2", "t3"]
