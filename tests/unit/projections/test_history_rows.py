"""Pure pieces of the history projection: rows, partition names and bounds, decoding."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.messages import (
    ConnectionState,
    DeviceStatus,
    MalformedMessage,
    Quality,
    Sample,
    TelemetryBatch,
)
from projections.history import decode_history, sample_rows, stored_value
from projections.history_schema import check_table_name, day_of, partition_name

T0 = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)


def test_values_become_doubles_bools_zero_one_and_none_null() -> None:
    assert stored_value(True) == 1.0
    assert stored_value(False) == 0.0
    assert stored_value(None) is None
    assert stored_value(1184) == 1184.0
    assert isinstance(stored_value(1184), float)
    assert stored_value(61.7) == 61.7


def test_rows_carry_the_sample_time_device_tag_quality_and_unit() -> None:
    batch = TelemetryBatch(
        "press-1",
        T0,
        (
            Sample("speed", 1184, Quality.GOOD, "rpm", T0 - timedelta(milliseconds=2)),
            Sample("alarm", True, Quality.BAD, "", T0),
        ),
    )
    assert sample_rows(batch) == [
        (T0 - timedelta(milliseconds=2), "press-1", "speed", 1184.0, "good", "rpm"),
        (T0, "press-1", "alarm", 1.0, "bad", ""),
    ]


def test_partitions_are_utc_days() -> None:
    late_evening_in_buenos_aires = datetime(
        2026, 11, 23, 22, 30, tzinfo=timezone(timedelta(hours=-3))
    )
    assert day_of(late_evening_in_buenos_aires) == date(2026, 11, 24)
    assert partition_name("samples", date(2026, 1, 5)) == "samples_p20260105"


@pytest.mark.parametrize("name", ["Samples", "samples; DROP TABLE x", "1samples", "", "a" * 60])
def test_only_plain_table_names_pass(name: str) -> None:
    with pytest.raises(ValueError, match="plain table name"):
        check_table_name(name)


def test_decoding_keeps_telemetry_and_ignores_status() -> None:
    batch = TelemetryBatch("press-1", T0, (Sample("speed", 1, Quality.GOOD, "rpm", T0),))
    status = DeviceStatus("press-1", ConnectionState.CONNECTED, T0)

    assert decode_history("plant.telemetry.press-1", batch.encode()) == batch
    assert decode_history("plant.status.press-1", status.encode()) is None


def test_a_batch_on_another_device_subject_is_malformed() -> None:
    batch = TelemetryBatch("press-1", T0, ())
    with pytest.raises(MalformedMessage, match="does not match the subject"):
        decode_history("plant.telemetry.press-2", batch.encode())
