"""The JSON codec shared by the MQTT driver and its simulator: paths, type fitting, commands."""

from __future__ import annotations

import json

import pytest

from plantfile.protocols.mqtt import (
    MqttTag,
    command_payload,
    extract,
    fit,
    parse_payload,
    same_value,
)
from plantfile.tags import DataType, RawValue

STATE = {"running": True, "motor": {"speed": 1190.2}, "values": [3, {"a": 4}], "none": None}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("running", True),
        ("motor.speed", 1190.2),
        ("values.0", 3),
        ("values.1.a", 4),
        ("none", None),
        ("", STATE),
    ],
)
def test_extract_follows_the_dotted_path(path: str, value: object) -> None:
    assert extract(STATE, path) == value


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("motor.torque", "no field 'motor.torque'"),
        ("speed", "no field 'speed'"),
        ("values.2", r"no item 'values.2' \(values has 2 items\)"),
        ("values.first", "no item 'values.first'"),
        ("values.-1", "no item 'values.-1'"),
        ("running.state", "running is a boolean, not an object or a list"),
        ("motor.speed.x", "motor.speed is a number, not an object or a list"),
    ],
)
def test_extract_says_where_the_path_stops(path: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        extract(STATE, path)


def test_a_scalar_payload_has_no_fields() -> None:
    assert extract(42, "") == 42
    with pytest.raises(ValueError, match="the payload is a number"):
        extract(42, "value")


@pytest.mark.parametrize(
    ("value", "data_type", "raw"),
    [
        (True, "bool", True),
        (False, "bool", False),
        (1200, "uint16", 1200),
        (1200.0, "uint16", 1200),  # JSON encoders that write every number as a float
        (-32768, "int16", -32768),
        (2**32 - 1, "uint32", 2**32 - 1),
        (1190.2, "float32", 1190.2),
        (1500, "float32", 1500.0),
        (1e300, "float64", 1e300),
    ],
)
def test_fit_accepts_what_the_type_holds(value: object, data_type: DataType, raw: RawValue) -> None:
    fitted = fit(value, data_type)
    assert fitted == raw
    assert type(fitted) is type(raw)


@pytest.mark.parametrize(
    ("value", "data_type", "reason"),
    [
        ("fast", "float32", "float32 expects a number, got a string"),
        ("1200", "uint16", "expects a number, got a string"),
        (None, "float64", "expects a number, got null"),
        ({"v": 1}, "int32", "expects a number, got an object"),
        ([1], "int32", "expects a number, got a list"),
        (True, "uint16", "expects a number, got a boolean"),
        (1.0, "bool", "bool expects true or false, got a number"),
        (1, "bool", "expects true or false, got a number"),
        ("true", "bool", "expects true or false, got a string"),
        (70000, "int16", r"70000 is outside int16 \[-32768, 32767\]"),
        (-1, "uint8", "outside uint8"),
        (1200.5, "uint16", "expects a whole number, got 1200.5"),
        (1e39, "float32", "outside the float32 range"),
        (10**400, "float64", r"\.\.\. is outside the float64 range"),
    ],
)
def test_fit_refuses_what_the_type_cannot_hold(
    value: object, data_type: DataType, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        fit(value, data_type)


@pytest.mark.parametrize("payload", [b"garbage", b"", b"{'single': 1}", b"NaN", b'{"a": Infinity}'])
def test_parse_payload_refuses_what_is_not_json(payload: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # every reason is fine: it is not JSON
        parse_payload(payload)


def test_parse_payload_refuses_a_document_nested_deeper_than_the_parser_goes() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_payload(b"[" * 100_000 + b"]" * 100_000)


def test_parse_payload_reads_json() -> None:
    assert parse_payload(b'{"motor": {"speed": 1.5}}') == {"motor": {"speed": 1.5}}
    assert parse_payload(b"42") == 42


def tag(**fields: object) -> MqttTag:
    return MqttTag.model_validate(
        {
            "name": "setpoint",
            "type": "uint16",
            "topic": "p/state",
            "writable": True,
            "low": 0,
            "high": 3000,
            "command_topic": "p/cmd",
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("command_path", "raw", "document"),
    [
        ("value", 1500, {"value": 1500}),
        ("speed_setpoint", 1500, {"speed_setpoint": 1500}),
        ("motor.setpoint", 1500, {"motor": {"setpoint": 1500}}),
        ("", 1500, 1500),
        ("value", True, {"value": True}),
        ("value", 12.5, {"value": 12.5}),
    ],
)
def test_command_payload_nests_the_value_under_the_command_path(
    command_path: str, raw: RawValue, document: object
) -> None:
    payload = command_payload(tag(command_path=command_path), raw)
    assert json.loads(payload) == document


def test_same_value_allows_float32_rounding_only_for_floats() -> None:
    assert same_value("float32", 1500.0, 1500.00001)
    assert not same_value("float32", 1500.0, 1500.1)
    assert same_value("uint16", 1500, 1500)
    assert not same_value("uint16", 1500, 1501)
    assert not same_value("bool", True, False)
