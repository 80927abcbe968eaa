from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from plantfile.protocols.modbus import ModbusTag, raw_to_registers, registers_to_raw
from plantfile.tags import HistoryPolicy, TagConfig, TagValueError, to_engineering, to_raw

INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
word_orders = st.sampled_from(["big", "little"])


def tag(**fields: object) -> ModbusTag:
    return ModbusTag.model_validate({"name": "t", "address": 0, "type": "uint16", **fields})


def neutral(**fields: object) -> TagConfig:
    return TagConfig.model_validate({"name": "t", "type": "uint16", **fields})


@pytest.mark.parametrize(
    ("data_type", "word_order", "registers", "raw"),
    [
        ("uint16", "big", [0xFFFF], 65535),
        ("int16", "big", [0xFFFF], -1),
        ("int32", "big", [0x0001, 0x0002], 0x00010002),
        ("int32", "little", [0x0002, 0x0001], 0x00010002),
        ("float32", "big", [0x41A0, 0x0000], 20.0),
        ("float32", "little", [0x0000, 0x41A0], 20.0),
        ("bool", "big", [7], True),
        ("bool", "big", [0], False),
    ],
)
def test_registers_decode_to_raw_values(
    data_type: str, word_order: str, registers: list[int], raw: object
) -> None:
    assert registers_to_raw(registers, data_type, word_order) == raw  # type: ignore[arg-type]


def test_decoding_refuses_the_wrong_number_of_registers() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        registers_to_raw([1], "int32")


@given(st.sampled_from(sorted(INT_RANGES)), word_orders, st.data())
def test_integer_round_trip(data_type: str, word_order: str, data: st.DataObject) -> None:
    low, high = INT_RANGES[data_type]
    raw = data.draw(st.integers(low, high))
    registers = raw_to_registers(raw, data_type, word_order)  # type: ignore[arg-type]
    assert all(0 <= word <= 0xFFFF for word in registers)
    assert registers_to_raw(registers, data_type, word_order) == raw  # type: ignore[arg-type]


@given(st.floats(width=32, allow_nan=False), word_orders)
def test_float32_round_trip(raw: float, word_order: str) -> None:
    registers = raw_to_registers(raw, "float32", word_order)  # type: ignore[arg-type]
    assert registers_to_raw(registers, "float32", word_order) == raw  # type: ignore[arg-type]


@given(
    st.integers(-(2**15), 2**15 - 1),
    st.sampled_from([0.1, 0.5, 2.0, -1.0]),
    st.sampled_from([0.0, -40.0, 273.15]),
)
def test_engineering_round_trip_through_a_scaled_register(
    raw: int, scale: float, offset: float
) -> None:
    config = tag(type="int16", scale=scale, offset=offset)
    value = to_engineering(config, raw)
    assert value == pytest.approx(raw * scale + offset)
    assert to_raw(config, value) == raw


def test_integral_scaling_keeps_integers_and_fractional_scaling_gives_floats() -> None:
    assert to_engineering(tag(), 1500) == 1500
    assert isinstance(to_engineering(tag(), 1500), int)
    assert to_engineering(tag(scale=0.1), 1500) == pytest.approx(150.0)
    assert to_engineering(tag(type="bool"), 1) is True


def test_writes_round_to_the_nearest_integer_step() -> None:
    assert to_raw(tag(scale=0.1), 12.34) == 123


@pytest.mark.parametrize(
    ("config", "value", "reason"),
    [
        (tag(type="uint16"), -1, "outside uint16"),
        (tag(type="int16", scale=0.1), 5000.0, "outside int16"),
        (tag(type="float32"), 1e39, "float32 range"),
        (tag(type="uint16"), math.nan, "finite number"),
        (tag(type="uint16"), True, "finite number"),
        (tag(type="bool"), 1, "boolean"),
        (tag(type="uint32"), 2**32, "outside uint32"),
        (neutral(type="int8"), 128, "outside int8"),
        (neutral(type="uint8"), -1, "outside uint8"),
        (neutral(type="float64"), math.inf, "finite number"),
    ],
)
def test_values_the_type_cannot_hold_are_refused(
    config: TagConfig, value: float, reason: str
) -> None:
    with pytest.raises(TagValueError, match=reason) as caught:
        to_raw(config, value)
    assert caught.value.tag == "t"


def test_float64_takes_four_registers_and_round_trips() -> None:
    registers = raw_to_registers(-1234.5678, "float64", "little")
    assert len(registers) == 4
    assert registers_to_raw(registers, "float64", "little") == -1234.5678


def test_float32_encoding_matches_ieee() -> None:
    (word,) = struct.unpack(">I", struct.pack(">f", 1.5))
    assert raw_to_registers(1.5, "float32") == [word >> 16, word & 0xFFFF]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"area": "coil", "type": "uint16"}, "holds bits"),
        ({"area": "input", "writable": True, "low": 0, "high": 1}, "read-only"),
        ({"type": "int32", "address": 65535}, "runs past"),
        ({"scale": 0}, "non-zero"),
        ({"type": "bool", "scale": 2}, "cannot be scaled"),
        ({"low": 10, "high": 1}, "above high"),
        ({"writable": True, "low": 0}, "needs both low and high"),
        ({"name": "has space"}, "pattern"),
        ({"type": "int8"}, "no Modbus register layout"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_inconsistent_tags_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        tag(**fields)


def test_a_writable_bool_needs_no_limits() -> None:
    assert tag(type="bool", writable=True).writable


# -- the command chain's rules: critical tags and emergency values --------------------------


def test_a_writable_tag_may_be_critical_and_have_emergency_values() -> None:
    setpoint = neutral(writable=True, low=0, high=3000, critical=True, emergency_values=[0])
    assert (setpoint.critical, setpoint.emergency_values) == (True, (0,))
    coil = neutral(type="bool", writable=True, emergency_values=[False])
    assert (coil.critical, coil.emergency_values) == (False, (False,))
    # A YAML boolean stays a boolean, never the number 0.
    assert type(coil.emergency_values[0]) is bool


def test_by_default_a_tag_is_neither_critical_nor_an_emergency_stop() -> None:
    tag = neutral(writable=True, low=0, high=10)
    assert (tag.critical, tag.emergency_values) == (False, ())


@pytest.mark.parametrize(
    "fields",
    [
        {"critical": True},
        {"emergency_values": [0]},
        {"type": "bool", "emergency_values": [False]},
    ],
    ids=["critical", "numeric-emergency", "bool-emergency"],
)
def test_only_a_writable_tag_can_be_critical_or_have_emergency_values(
    fields: dict[str, object],
) -> None:
    with pytest.raises(ValidationError, match="only apply to a writable tag"):
        neutral(**fields)


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        ({"type": "uint16", "low": 0, "high": 3000}, False),
        ({"type": "float32", "low": 0, "high": 1}, True),
        ({"type": "bool"}, 0),
        ({"type": "bool"}, 1.0),
    ],
    ids=["bool-on-integer", "bool-on-float", "integer-on-bool", "float-on-bool"],
)
def test_an_emergency_value_must_fit_the_tag(fields: dict[str, object], value: object) -> None:
    with pytest.raises(ValidationError, match="does not fit"):
        neutral(writable=True, emergency_values=[value], **fields)


def test_a_protocol_tag_carries_the_command_chain_s_rules() -> None:
    coil = tag(area="coil", type="bool", writable=True, emergency_values=[False], critical=True)
    assert (coil.critical, coil.emergency_values) == (True, (False,))


def test_a_tag_stores_every_sample_unless_its_history_says_otherwise() -> None:
    assert neutral().history is None
    thinned = neutral(history={"deadband": 0.5, "max_interval_seconds": 60})
    assert thinned.history is not None
    assert (thinned.history.deadband, thinned.history.max_interval_seconds) == (0.5, 60)
    assert neutral(history={}).history == HistoryPolicy(deadband=0.0, max_interval_seconds=None)


@pytest.mark.parametrize(
    ("history", "named"),
    [
        ({"deadband": -1}, "deadband"),
        ({"deadband": math.inf}, "deadband"),
        ({"max_interval_seconds": 0}, "max_interval_seconds"),
        ({"max_interval_seconds": math.nan}, "max_interval_seconds"),
        ({"deadbnad": 1}, "deadbnad"),
    ],
)
def test_a_wrong_history_policy_is_refused_naming_its_key(
    history: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=f"history.{named}"):
        neutral(history=history)
