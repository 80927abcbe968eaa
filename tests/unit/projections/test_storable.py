"""The checks before a store: what a supervisor sends passes, and each rule is held at its edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    Quality,
    Sample,
    TagValue,
    TelemetryBatch,
)
from projections.dead_letter import RefusalKind
from projections.storable import (
    EARLIEST,
    LATEST_AHEAD,
    MAX_COUNT,
    Unstorable,
    check_status,
    check_telemetry,
    check_transition,
)

NOW = datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC)


def batch(
    *,
    tag: str = "motor.temperature_1",
    value: TagValue = 61.7,
    unit: str = "°C",
    ts: datetime = NOW,
) -> TelemetryBatch:
    return TelemetryBatch("press-1", NOW, (Sample(tag, value, Quality.GOOD, unit, ts),))


def status(*, detail: str = "", ts: datetime = NOW, reconnects: int = 0) -> DeviceStatus:
    return DeviceStatus("press-1", ConnectionState.DISCONNECTED, ts, detail, reconnects)


def comm_loss(**fields: object) -> AlarmTransition:
    transition = AlarmTransition(
        transition_id="9b2f0c4e", device="press-1", condition="comm_loss",
        kind=AlarmKind.COMM_LOSS, priority=AlarmPriority.CRITICAL, area="press line 1",
        tag="", active=True, suppressed=False, latch=False, value=None, limit=None,
        message="Communication lost:\n\tconnection refused", ts=NOW,
    )  # fmt: skip
    return replace(transition, **fields)  # type: ignore[arg-type]


def refusal(check: Callable[..., object], message: object) -> RefusalKind:
    with pytest.raises(Unstorable) as refused:
        check(message, NOW)
    return refused.value.kind


def test_what_a_supervisor_sends_passes_unchanged() -> None:
    for value in (True, 0, -(2**63), 2**63, 1.7976931348623157e308, None):
        assert check_telemetry(batch(value=value), NOW) == batch(value=value)
    # Line breaks and tabs are text: a driver's error, a multi-line alarm message.
    assert check_status(status(detail="refused:\r\n\tECONN"), NOW) == status(
        detail="refused:\r\n\tECONN"
    )
    assert check_transition(comm_loss(), NOW) == comm_loss()  # no tag: it watches none


def test_times_from_the_epoch_to_a_day_ahead_pass_and_no_further() -> None:
    for ts in (EARLIEST, NOW + LATEST_AHEAD):
        check_telemetry(batch(ts=ts), NOW)
        check_status(status(ts=ts), NOW)
        check_transition(comm_loss(ts=ts), NOW)
    millisecond = timedelta(milliseconds=1)
    for ts in (EARLIEST - millisecond, NOW + LATEST_AHEAD + millisecond):
        kinds = [
            refusal(check_telemetry, batch(ts=ts)),
            refusal(check_status, status(ts=ts)),
            refusal(check_transition, comm_loss(ts=ts)),
        ]
        assert kinds == [RefusalKind.TIMESTAMP_OUT_OF_RANGE] * 3


@pytest.mark.parametrize("control", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800"])
def test_control_characters_and_broken_unicode_are_refused_in_every_string(control: str) -> None:
    text = f"x{control}y"
    kinds = [
        refusal(check_telemetry, batch(unit=text)),
        refusal(check_telemetry, batch(tag=text)),
        refusal(check_status, status(detail=text)),
        *(
            refusal(check_transition, comm_loss(**{field: text}))
            for field in ("transition_id", "condition", "area", "message")
        ),
    ]
    assert kinds == [RefusalKind.CONTROL_CHARACTER] * 7


def test_names_a_plant_file_cannot_declare_are_refused() -> None:
    kinds = [
        *(refusal(check_telemetry, batch(tag=tag)) for tag in ("speed rpm", "temp/°C", "a:b")),
        refusal(check_transition, comm_loss(condition="hi hi")),
        refusal(check_transition, comm_loss(tag="motor temperature")),
        # A device id is one subject token.
        refusal(check_telemetry, TelemetryBatch("press.1", NOW, ())),
    ]
    assert kinds == [RefusalKind.UNKNOWN_NAME] * 6


def test_numbers_beyond_a_double_or_a_count_are_refused() -> None:
    kinds = [
        *(
            refusal(check, message)
            for value in (2**1024, float("nan"), float("inf"))
            for check, message in (
                (check_telemetry, batch(value=value)),
                (check_transition, comm_loss(value=value)),
            )
        ),
        refusal(check_transition, comm_loss(limit=float("-inf"))),
        refusal(check_status, status(reconnects=-1)),
        refusal(check_status, status(reconnects=MAX_COUNT + 1)),
    ]
    assert kinds == [RefusalKind.NUMBER_OUT_OF_RANGE] * 9
    check_status(status(reconnects=MAX_COUNT), NOW)


def test_a_reason_names_the_field_and_shows_a_long_value_shortened() -> None:
    with pytest.raises(Unstorable, match=r"sample speed: value 1{60}\.\.\. \(1001 chars\)"):
        check_telemetry(batch(tag="speed", value=int("1" * 1001)), NOW)
    with pytest.raises(
        Unstorable, match=r"unit 'N\\x00m' holds the control character U\+0000 at 1"
    ):
        check_telemetry(batch(unit="N\x00m"), NOW)


def test_a_held_value_s_reason_and_time_are_checked_like_the_rest() -> None:
    def held(reason: str, value_ts: datetime) -> TelemetryBatch:
        sample = Sample("speed", 1184, Quality.BAD, "rpm", NOW, reason, value_ts)
        return TelemetryBatch("press-1", NOW, (sample,))

    earlier = NOW - timedelta(hours=1)
    assert check_telemetry(held("comm_loss", earlier), NOW) == held("comm_loss", earlier)
    with pytest.raises(Unstorable, match="sample speed: reason 'comm\\\\x00loss'") as control:
        check_telemetry(held("comm\x00loss", earlier), NOW)
    with pytest.raises(Unstorable, match="sample speed: value_ts 1969") as too_early:
        check_telemetry(held("comm_loss", EARLIEST - timedelta(days=1)), NOW)
    assert control.value.kind is RefusalKind.CONTROL_CHARACTER
    assert too_early.value.kind is RefusalKind.TIMESTAMP_OUT_OF_RANGE
