"""The S7 address notation, the tag and device models, the byte codec and the read planner."""

from __future__ import annotations

import re
from itertools import pairwise
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.drivers.s7 import MAX_READ_BYTES, plan_reads
from plantfile.protocols.s7 import (
    MAX_BYTE_OFFSET,
    TYPES_FOR_SIZE,
    S7Address,
    S7Device,
    S7Tag,
    Size,
    decode,
    encode,
    parse_address,
    store,
)
from plantfile.tags import INTEGER_RANGES, DataType


def tag(name: str, address: str, type_: str = "int16", **extra: object) -> S7Tag:
    return S7Tag.model_validate({"name": name, "address": address, "type": type_, **extra})


# -- the notation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DB1.DBX6.0", S7Address("DB", 1, 6, "X", 0)),
        ("DB1.DBB8", S7Address("DB", 1, 8, "B")),
        ("DB1.DBW4", S7Address("DB", 1, 4, "W")),
        ("DB1.DBD0", S7Address("DB", 1, 0, "D")),
        ("DB65535.DBX65535.7", S7Address("DB", 65535, 65535, "X", 7)),
        ("M10.2", S7Address("M", 0, 10, "X", 2)),
        ("MB10", S7Address("M", 0, 10, "B")),
        ("MW10", S7Address("M", 0, 10, "W")),
        ("MD10", S7Address("M", 0, 10, "D")),
        ("I0.1", S7Address("I", 0, 0, "X", 1)),
        ("IB0", S7Address("I", 0, 0, "B")),
        ("IW0", S7Address("I", 0, 0, "W")),
        ("ID0", S7Address("I", 0, 0, "D")),
        ("Q0.0", S7Address("Q", 0, 0, "X", 0)),
        ("QB0", S7Address("Q", 0, 0, "B")),
        ("QW0", S7Address("Q", 0, 0, "W")),
        ("QD0", S7Address("Q", 0, 0, "D")),
    ],
)
def test_the_usual_notation_parses_to_area_block_byte_size_and_bit(
    text: str, expected: S7Address
) -> None:
    assert parse_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("german", "international"),
    [("E0.1", "I0.1"), ("EB2", "IB2"), ("EW2", "IW2"), ("ED4", "ID4"), ("A1.7", "Q1.7"),
     ("AB3", "QB3"), ("AW3", "QW3"), ("AD8", "QD8")],
)  # fmt: skip
def test_german_mnemonics_mean_inputs_and_outputs(german: str, international: str) -> None:
    assert parse_address(german) == parse_address(international)


def test_the_notation_is_case_insensitive_and_printed_in_capitals() -> None:
    assert str(parse_address(" db7.dbx2.3 ")) == "DB7.DBX2.3"
    assert parse_address("mw4") == S7Address("M", 0, 4, "W")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an S7 address"),
        ("DB1", "not an S7 address"),
        ("DB1.DBL0", "not an S7 address"),
        ("DB1.W4", "not an S7 address"),
        ("T5", "not an S7 address"),
        ("MX10.2", "not an S7 address"),
        ("DB1.DBX-1.0", "not an S7 address"),
        ("DB1.DBW٣", "not an S7 address"),  # digits are ASCII
        ("DB0.DBW0", "data block number must be 1..65535"),
        ("DB65536.DBW0", "data block number must be 1..65535"),
        ("DB1.DBX6", "needs its bit number"),
        ("M10", "needs its bit number"),
        ("DB1.DBX6.8", "bit number must be 0..7"),
        ("DB1.DBW4.1", "a word address has no bit number"),
        ("MB1.0", "a byte address has no bit number"),
        ("DB1.DBB65536", "byte offset must be 0..65535"),
        ("DB1.DBD65533", "runs past byte 65535"),
        ("QW65535", "runs past byte 65535"),
    ],
)
def test_a_wrong_address_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_address(text)


addresses = st.one_of(
    st.builds(
        S7Address,
        area=st.just("DB"),
        db=st.integers(1, 65535),
        byte=st.integers(0, MAX_BYTE_OFFSET - 3),
        size=st.sampled_from(["B", "W", "D"]),
    ),
    st.builds(
        S7Address,
        area=st.sampled_from(["DB", "M", "I", "Q"]),
        db=st.integers(1, 65535),
        byte=st.integers(0, MAX_BYTE_OFFSET),
        size=st.just("X"),
        bit=st.integers(0, 7),
    ).map(lambda a: a if a.area == "DB" else S7Address(a.area, 0, a.byte, "X", a.bit)),
    st.builds(
        S7Address,
        area=st.sampled_from(["M", "I", "Q"]),
        db=st.just(0),
        byte=st.integers(0, MAX_BYTE_OFFSET - 3),
        size=st.sampled_from(["B", "W", "D"]),
    ),
)


@given(addresses)
def test_every_address_prints_in_a_notation_that_parses_back_to_it(address: S7Address) -> None:
    assert parse_address(str(address)) == address


# -- tags and devices ----------------------------------------------------------------------

BYTE_SIZES: list[Size] = ["B", "W", "D"]
SIZE_ADDRESS: dict[Size, str] = {
    "X": "DB1.DBX0.0",
    "B": "DB1.DBB0",
    "W": "DB1.DBW0",
    "D": "DB1.DBD0",
}


@pytest.mark.parametrize("size", get_args(Size))
@pytest.mark.parametrize("data_type", get_args(DataType))
def test_a_tag_type_must_fit_its_address_size(size: Size, data_type: DataType) -> None:
    address = SIZE_ADDRESS[size]
    if data_type in TYPES_FOR_SIZE[size]:
        assert tag("t", address, data_type).location.size == size
    else:
        with pytest.raises(ValidationError, match=re.escape(f"address {address} holds a")):
            tag("t", address, data_type)


def test_the_refusal_names_the_types_that_fit() -> None:
    with pytest.raises(ValidationError, match="'float32' or 'int32' or 'uint32', not 'int16'"):
        tag("t", "DB1.DBD0", "int16")


def test_a_bad_address_is_a_validation_error_of_the_address_field() -> None:
    with pytest.raises(ValidationError, match=r"'DB1\.DBX6': a bit address needs") as raised:
        tag("t", "DB1.DBX6", "bool")
    assert [error["loc"] for error in raised.value.errors()] == [("address",)]


@pytest.mark.parametrize("address", ["I0.0", "E0.0", "IW2"])
def test_process_inputs_can_be_read_but_never_written(address: str) -> None:
    data_type = "bool" if "." in address else "int16"
    assert not tag("t", address, data_type).writable
    with pytest.raises(ValidationError, match="is a process input: the tag cannot be writable"):
        tag("t", address, data_type, writable=True, low=0, high=1)


def test_outputs_flags_and_data_blocks_may_be_writable() -> None:
    for address in ("Q0.0", "M1.1", "DB1.DBX0.0"):
        assert tag("t", address, "bool", writable=True).writable


def test_a_device_holds_the_connection_block_with_its_defaults() -> None:
    device = S7Device.model_validate(
        {
            "id": "press-2",
            "protocol": "s7",
            "s7": {"host": "10.0.0.5"},
            "tags": [{"name": "speed", "address": "DB1.DBD4", "type": "float32"}],
        }
    )
    conn = device.s7
    assert (conn.port, conn.rack, conn.slot, conn.timeout_seconds) == (102, 0, 1, 2.0)
    assert isinstance(device.tags[0], S7Tag)
    assert device.tags[0].location == S7Address("DB", 1, 4, "D")


@pytest.mark.parametrize(
    "change",
    [
        {"protocol": "modbus"},
        {"s7": {"host": "10.0.0.5", "tsap": 1}},
        {"s7": {"host": "10.0.0.5", "rack": 8}},
        {"tags": []},
        {"tags": [{"name": "a", "address": "DB1.DBW0", "type": "int16", "register": 1}]},
    ],
)
def test_a_device_refuses_what_it_does_not_know(change: dict[str, object]) -> None:
    valid = {
        "id": "press-2",
        "protocol": "s7",
        "s7": {"host": "10.0.0.5"},
        "tags": [{"name": "speed", "address": "DB1.DBD4", "type": "float32"}],
    }
    with pytest.raises(ValidationError):
        S7Device.model_validate({**valid, **change})


# -- the codec -----------------------------------------------------------------------------


def test_values_are_big_endian_as_the_cpu_stores_them() -> None:
    assert encode(1500, "int16") == bytes.fromhex("05dc")
    assert encode(-2, "int16") == bytes.fromhex("fffe")
    assert encode(1.0, "float32") == bytes.fromhex("3f800000")
    assert encode(-1, "int32") == bytes.fromhex("ffffffff")
    assert encode(0xA1B2C3D4, "uint32") == bytes.fromhex("a1b2c3d4")
    memory = bytes.fromhex("0000 05dc 3f800000")
    assert decode(tag("sp", "DB1.DBW2"), memory) == 1500
    assert decode(tag("f", "DB1.DBD4", "float32"), memory) == 1.0
    assert decode(tag("f", "DB1.DBD4", "float32"), memory[2:], base=2) == 1.0


def _fits(data_type: DataType) -> st.SearchStrategy[int | float]:
    if data_type == "float32":
        return st.floats(width=32, allow_nan=False)
    low, high = INTEGER_RANGES[data_type]
    return st.integers(low, high)


@given(st.data())
def test_every_numeric_value_survives_the_round_trip(data: st.DataObject) -> None:
    size = data.draw(st.sampled_from(BYTE_SIZES))
    data_type = data.draw(st.sampled_from(TYPES_FOR_SIZE[size]))
    value = data.draw(_fits(data_type))
    byte = data.draw(st.integers(0, 8))
    t = tag("t", f"DB1.DB{size}{byte}", data_type)
    memory = bytearray(16)
    store(t, memory, value)
    assert decode(t, memory) == value
    assert memory[byte : byte + t.location.width] == encode(value, data_type)


@given(st.integers(0, 255), st.integers(0, 7), st.booleans())
def test_storing_a_bit_leaves_the_other_bits_of_its_byte(byte: int, bit: int, on: bool) -> None:
    t = tag("b", f"M3.{bit}", "bool")
    memory = bytearray([0xFF, 0, 0, byte, 0xFF])
    store(t, memory, on)
    assert decode(t, memory) is on
    assert memory[3] & ~(1 << bit) & 0xFF == byte & ~(1 << bit) & 0xFF
    assert (memory[:3], memory[4:]) == (bytearray([0xFF, 0, 0]), bytearray([0xFF]))


# -- the read planner ----------------------------------------------------------------------


def spans(
    tags: list[S7Tag], max_bytes: int = MAX_READ_BYTES
) -> list[tuple[str, int, int, list[str]]]:
    return [
        (f"{r.area}{r.db or ''}", r.start, r.size, [t.name for t in r.tags])
        for r in plan_reads(tags, max_bytes)
    ]


def test_the_press_block_is_one_read_whatever_the_declared_order() -> None:
    tags = [
        tag("count", "DB1.DBD12", "int32"),
        tag("running", "DB1.DBX0.0", "bool"),
        tag("temp", "DB1.DBD8", "float32"),
        tag("setpoint", "DB1.DBW2"),
        tag("speed", "DB1.DBD4", "float32"),
    ]
    assert spans(tags) == [("DB1", 0, 16, ["running", "setpoint", "speed", "temp", "count"])]


def test_bits_of_one_byte_and_overlapping_values_are_read_once() -> None:
    tags = [
        tag("a", "M4.0", "bool"),
        tag("b", "M4.7", "bool"),
        tag("w", "MW4"),
        tag("lo", "MB5", "uint8"),
    ]
    assert spans(tags) == [("M", 4, 2, ["a", "b", "w", "lo"])]


def test_each_data_block_and_area_is_read_separately() -> None:
    tags = [
        tag("db2", "DB2.DBW0"),
        tag("db1", "DB1.DBW0"),
        tag("flag", "MW0"),
        tag("in", "IW0"),
        tag("out", "QW0"),
    ]
    assert spans(tags) == [
        ("DB1", 0, 2, ["db1"]),
        ("DB2", 0, 2, ["db2"]),
        ("I", 0, 2, ["in"]),
        ("M", 0, 2, ["flag"]),
        ("Q", 0, 2, ["out"]),
    ]


def test_a_gap_inside_one_block_is_read_through_because_a_block_is_contiguous() -> None:
    assert spans([tag("a", "DB1.DBW0"), tag("b", "DB1.DBW100")]) == [("DB1", 0, 102, ["a", "b"])]


def test_a_read_never_exceeds_one_pdu_and_never_splits_a_value() -> None:
    tags = [tag("a", "DB1.DBW0"), tag("b", "DB1.DBD220", "float32"), tag("c", "DB1.DBW224")]
    assert spans(tags) == [("DB1", 0, 2, ["a"]), ("DB1", 220, 6, ["b", "c"])]
    assert spans([tag("a", "DB1.DBW0"), tag("b", "DB1.DBD218", "float32")]) == [
        ("DB1", 0, MAX_READ_BYTES, ["a", "b"])
    ]


def test_a_larger_negotiated_pdu_allows_larger_reads() -> None:
    tags = [tag("a", "DB1.DBW0"), tag("b", "DB1.DBW400")]
    assert spans(tags, max_bytes=462) == [("DB1", 0, 402, ["a", "b"])]


def test_no_tags_no_reads_and_a_limit_below_a_double_word_is_refused() -> None:
    assert plan_reads([]) == []
    with pytest.raises(ValueError, match="cannot hold a double word"):
        plan_reads([tag("a", "DB1.DBW0")], max_bytes=3)


planned_tags = st.lists(
    st.tuples(
        st.sampled_from(["DB1.DB", "DB2.DB", "M", "Q"]),
        st.sampled_from(get_args(Size)),
        st.integers(0, 600),
        st.integers(0, 7),
    ),
    max_size=40,
)


@given(planned_tags, st.integers(4, 300))
def test_every_tag_is_read_once_inside_one_range_within_the_limit(
    specs: list[tuple[str, Size, int, int]], max_bytes: int
) -> None:
    tags = []
    for i, (prefix, size, byte, bit) in enumerate(specs):
        if size == "X":
            address, data_type = (
                f"{prefix}{'X' if prefix.startswith('DB') else ''}{byte}.{bit}",
                "bool",
            )
        else:
            address, data_type = f"{prefix}{size}{byte}", TYPES_FOR_SIZE[size][0]
        tags.append(tag(f"t{i}", address, data_type))
    ranges = plan_reads(tags, max_bytes)
    assert sorted(t.name for r in ranges for t in r.tags) == sorted(t.name for t in tags)
    for r in ranges:
        assert 0 < r.size <= max_bytes
        for t in r.tags:
            location = t.location
            assert (location.area, location.db) == (r.area, r.db)
            assert r.start <= location.byte
            assert location.end <= r.start + r.size
    # Two requests to one block only where one could not hold both: as few as the limit allows.
    for first, second in pairwise(ranges):
        if (first.area, first.db) == (second.area, second.db):
            end = max(first.start + first.size, second.start + second.size)
            assert end - first.start > max_bytes
