"""Pure pieces of the live-state projection: the stored JSON and the decoding by subject."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.messages import (
    ConnectionState,
    DeviceStatus,
    MalformedMessage,
    Quality,
    QualityReason,
    Sample,
    TelemetryBatch,
)
from projections.live_state import decode_live, sample_json

T0 = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)


def test_a_hash_value_is_the_sample_without_its_tag() -> None:
    stored = sample_json(Sample("motor_temperature", 61.7, Quality.UNCERTAIN, "°C", T0))
    assert json.loads(stored) == {
        "value": 61.7,
        "quality": "uncertain",
        "unit": "°C",
        "ts": "2026-11-23T09:15:02.120Z",
    }


def test_a_held_value_is_stored_with_its_reason_and_when_it_was_read() -> None:
    lost = T0 + timedelta(seconds=4)
    held = Sample("speed", 1184, Quality.BAD, "rpm", lost, QualityReason.COMM_LOSS, T0)
    assert json.loads(sample_json(held)) == {
        "value": 1184,
        "quality": "bad",
        "unit": "rpm",
        "ts": "2026-11-23T09:15:06.120Z",
        "reason": "comm_loss",
        "value_ts": "2026-11-23T09:15:02.120Z",
    }


def test_telemetry_and_status_are_decoded_by_subject() -> None:
    batch = TelemetryBatch("press-1", T0, (Sample("speed", 1, Quality.GOOD, "rpm", T0),))
    status = DeviceStatus("press-1", ConnectionState.STOPPED, T0)

    assert decode_live("plant.telemetry.press-1", batch.encode()) == batch
    assert decode_live("plant.status.press-1", status.encode()) == status
    assert decode_live("plant.alarms.press-1", b"anything") is None


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("plant.telemetry.press-1", b"not json"),
        ("plant.telemetry.press-1", b'{"schema": 1, "device": "press-1"}'),
        ("plant.status.press-2", DeviceStatus("press-1", ConnectionState.STOPPED, T0).encode()),
    ],
)
def test_malformed_payloads_raise(subject: str, payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_live(subject, payload)
