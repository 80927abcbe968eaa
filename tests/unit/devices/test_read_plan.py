from __future__ import annotations

from devices.drivers.modbus import MAX_READ_BITS, MAX_READ_REGISTERS, plan_reads
from plantfile.protocols.modbus import ModbusTag


def tag(name: str, address: int, type_: str = "uint16", area: str = "holding") -> ModbusTag:
    return ModbusTag.model_validate({"name": name, "address": address, "type": type_, "area": area})


def spans(tags: list[ModbusTag]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.area, b.start, b.count, [t.name for t in b.tags]) for b in plan_reads(tags)]


def test_contiguous_registers_share_one_read_whatever_their_declared_order() -> None:
    tags = [tag("temp", 3, "float32"), tag("running", 0, "bool"), tag("sp", 1), tag("speed", 2)]
    assert spans(tags) == [("holding", 0, 5, ["running", "sp", "speed", "temp"])]


def test_a_gap_splits_the_read_because_it_may_be_an_illegal_address() -> None:
    assert spans([tag("a", 0), tag("b", 2)]) == [
        ("holding", 0, 1, ["a"]),
        ("holding", 2, 1, ["b"]),
    ]


def test_areas_are_read_separately() -> None:
    tags = [tag("h", 0), tag("i", 1, area="input"), tag("c", 2, "bool", "coil")]
    assert [(area, start) for area, start, _, _ in spans(tags)] == [
        ("coil", 2),
        ("holding", 0),
        ("input", 1),
    ]


def test_overlapping_tags_are_read_once() -> None:
    assert spans([tag("whole", 10, "int32"), tag("high_word", 10)]) == [
        ("holding", 10, 2, ["whole", "high_word"])
    ]


def test_register_reads_stop_at_125() -> None:
    tags = [tag(f"r{i}", i) for i in range(130)]
    blocks = plan_reads(tags)
    assert [(b.start, b.count) for b in blocks] == [(0, MAX_READ_REGISTERS), (125, 5)]


def test_a_32_bit_value_is_never_split_across_reads() -> None:
    tags = [tag(f"r{i}", i) for i in range(124)] + [tag("f", 124, "float32")]
    assert [(b.start, b.count) for b in plan_reads(tags)] == [(0, 124), (124, 2)]


def test_coil_reads_stop_at_2000() -> None:
    tags = [tag(f"c{i}", i, "bool", "coil") for i in range(2001)]
    assert [(b.start, b.count) for b in plan_reads(tags)] == [(0, MAX_READ_BITS), (2000, 1)]


def test_no_tags_no_reads() -> None:
    assert plan_reads([]) == []
