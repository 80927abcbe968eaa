"""Telemetry on the wire: a degraded sample says why and since when its value is held."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.messages import MalformedMessage, Quality, QualityReason, Sample, TelemetryBatch

T0 = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)
LOST = T0 + timedelta(seconds=3)


def payload(**sample: object) -> bytes:
    ts = "2026-11-23T09:15:05.120Z"
    base = {"tag": "speed", "value": 1184, "quality": "good", "unit": "rpm", "ts": ts}
    body = {"schema": 1, "device": "press-1", "ts": ts}
    return json.dumps({**body, "samples": [{**base, **sample}]}).encode()


def test_a_held_value_round_trips_with_its_reason_and_when_it_was_read() -> None:
    held = Sample("speed", 1184, Quality.BAD, "rpm", LOST, QualityReason.COMM_LOSS, T0)
    batch = TelemetryBatch("press-1", LOST, (held,))

    (sample,) = json.loads(batch.encode())["samples"]
    assert sample == {
        "tag": "speed",
        "value": 1184,
        "quality": "bad",
        "unit": "rpm",
        "ts": "2026-11-23T09:15:05.120Z",
        "reason": "comm_loss",
        "value_ts": "2026-11-23T09:15:02.120Z",
    }
    assert TelemetryBatch.decode(batch.encode()) == batch
    assert held.value_time == T0


def test_a_good_sample_keeps_the_shape_it_always_had() -> None:
    good = Sample("speed", 1184, Quality.GOOD, "rpm", T0)
    (sample,) = json.loads(TelemetryBatch("press-1", T0, (good,)).encode())["samples"]
    assert set(sample) == {"tag", "value", "quality", "unit", "ts"}
    assert good.value_time == T0


def test_a_payload_without_the_new_fields_still_decodes() -> None:
    (sample,) = TelemetryBatch.decode(payload(quality="bad", value=None)).samples
    assert (sample.reason, sample.value_ts, sample.value_time) == ("", None, None)


def test_a_reason_this_version_does_not_know_is_kept_as_it_is() -> None:
    (sample,) = TelemetryBatch.decode(payload(quality="bad", reason="sensor_fault")).samples
    assert sample.reason == "sensor_fault"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("reason", 3, "'reason' must be a string"),
        ("value_ts", "yesterday", "bad timestamp"),
        ("value_ts", 17, "timestamp must be a string"),
    ],
)
def test_malformed_new_fields_say_why(field: str, value: object, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        TelemetryBatch.decode(payload(quality="bad", **{field: value}))


@pytest.mark.parametrize(
    ("sample", "lost"),
    [
        (Sample("speed", None, Quality.BAD, "rpm", T0, QualityReason.COMM_LOSS), True),
        (Sample("speed", None, Quality.UNCERTAIN, "rpm", T0), True),
        (Sample("speed", None, Quality.GOOD, "rpm", T0), False),
        (Sample("speed", 0, Quality.BAD, "rpm", T0, QualityReason.READ_FAILED), False),
        (Sample("speed", None, Quality.BAD, "rpm", T0, "comm_loss", T0 - timedelta(1)), False),
    ],
)
def test_only_a_sample_not_good_and_without_a_value_has_lost_its_value(
    sample: Sample, lost: bool
) -> None:
    assert sample.lost_its_value is lost


def test_a_sample_that_lost_its_value_holds_the_one_before_it_and_since_when() -> None:
    read = Sample("speed", 1184, Quality.GOOD, "rpm", T0)
    lost = Sample("speed", None, Quality.BAD, "rpm", LOST, QualityReason.COMM_LOSS)

    held = lost.holding(read)

    assert held == Sample("speed", 1184, Quality.BAD, "rpm", LOST, QualityReason.COMM_LOSS, T0)
    # Held again after a second restart: still the time the value was read.
    later = Sample("speed", None, Quality.BAD, "rpm", LOST + timedelta(seconds=9), "comm_loss")
    assert later.holding(held).value_ts == T0


def test_a_sample_with_a_value_or_after_none_stands_as_sent() -> None:
    read = Sample("speed", 1184, Quality.GOOD, "rpm", T0)
    never_read = Sample("speed", None, Quality.BAD, "rpm", T0, QualityReason.COMM_LOSS)
    failed = Sample("speed", 7, Quality.BAD, "rpm", LOST, QualityReason.READ_FAILED, T0)
    lost = Sample("speed", None, Quality.BAD, "rpm", LOST, QualityReason.COMM_LOSS)

    assert failed.holding(read) is failed
    assert lost.holding(never_read) is lost
