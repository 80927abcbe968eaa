"""Wire messages: what is accepted, what is refused (writes and alarm transitions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    MalformedMessage,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)


def encoded(**fields: object) -> bytes:
    body = {"schema": 1, "op": "write", "tag": "speed_setpoint", "command_id": "c1", "value": 1}
    return json.dumps({**body, **fields}).encode()


def test_a_request_round_trips_with_its_expiry() -> None:
    request = WriteRequest(
        tag="speed_setpoint", command_id="c1", op="write", value=1500, expires_in_ms=5000
    )
    assert WriteRequest.decode(request.encode()) == request


def test_a_request_without_expiry_waits_as_long_as_it_must() -> None:
    assert WriteRequest.decode(encoded(expires_in_ms=None)).expires_in_ms is None


@pytest.mark.parametrize("expiry", [0, -5, 1.5, "5000", True])
def test_an_expiry_that_is_not_a_positive_integer_is_malformed(expiry: object) -> None:
    with pytest.raises(MalformedMessage, match="expires_in_ms"):
        WriteRequest.decode(encoded(expires_in_ms=expiry))


@pytest.mark.parametrize("kind", list(WriteErrorKind))
def test_every_error_kind_round_trips(kind: WriteErrorKind) -> None:
    reply = WriteReply.failure("speed_setpoint", kind, "why")
    assert WriteReply.decode(reply.encode()) == reply


def alarm(**fields: object) -> AlarmTransition:
    base: dict[str, object] = {
        "transition_id": "t1", "device": "press-1", "condition": "motor_temperature_hi",
        "kind": AlarmKind.HI, "priority": AlarmPriority.HIGH, "area": "press-line",
        "tag": "motor_temperature", "active": True, "suppressed": False, "latch": False,
        "value": 81.5, "limit": 80.0, "message": "motor temperature high",
        "ts": datetime(2026, 11, 23, 9, 15, 2, 120_000, tzinfo=UTC),
    }  # fmt: skip
    return AlarmTransition(**{**base, **fields})  # type: ignore[arg-type]


def test_an_alarm_transition_round_trips() -> None:
    for transition in (alarm(), alarm(kind=AlarmKind.COMM_LOSS, tag="", value=None, limit=None)):
        assert AlarmTransition.decode(transition.encode()) == transition


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("kind", "sideways", "sideways"),
        ("priority", "urgent", "urgent"),
        ("active", "yes", "booleans"),
        ("value", "hot", "'value'"),
        ("limit", True, "'limit'"),
        ("transition_id", "", "transition_id"),
    ],
)
def test_a_malformed_alarm_transition_says_why(field: str, value: object, reason: str) -> None:
    body = json.loads(alarm().encode())
    body[field] = value
    with pytest.raises(MalformedMessage, match=reason):
        AlarmTransition.decode(json.dumps(body).encode())
