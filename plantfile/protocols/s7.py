"""Siemens S7 (ISO-on-TCP, "S7 communication"): the connection block, address-named tags,
and the big-endian byte codec that the driver and the simulator share.

A tag names its place in the CPU's memory the way a PLC programmer writes it::

    DB1.DBX6.0   bit 0 of byte 6 of data block 1          bool
    DB1.DBB8     byte 8 (BYTE / SINT / USINT)             uint8, int8
    DB1.DBW4     word at byte 4 (INT / WORD)              int16, uint16
    DB1.DBD0     double word at byte 0 (REAL/DINT/DWORD)  float32, int32, uint32
    M10.2  MB10  MW10  MD10                               flags (merker memory)
    I0.1   IB0   IW0   ID0                                process-image inputs (read-only)
    Q0.0   QB0   QW0   QD0                                process-image outputs

The German mnemonics ``E`` (Eingang, input) and ``A`` (Ausgang, output) are
accepted for ``I`` and ``Q``, as TIA Portal writes them with German settings.

S7 stores every value big-endian: an INT is two's-complement most significant
byte first, a REAL an IEEE 754 single, also most significant byte first.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plantfile.protocols.base import DeviceConfig
from plantfile.tags import DataType, RawValue, TagConfig

Area = Literal["DB", "M", "I", "Q"]
Size = Literal["X", "B", "W", "D"]

MAX_DB_NUMBER = 65535
# A classic (non-optimised) block or memory area is at most 64 KiB long.
MAX_BYTE_OFFSET = 65535

# Bytes each size occupies, and the data types that fit it.
WIDTH: dict[Size, int] = {"X": 1, "B": 1, "W": 2, "D": 4}
TYPES_FOR_SIZE: dict[Size, tuple[DataType, ...]] = {
    "X": ("bool",),
    "B": ("uint8", "int8"),
    "W": ("int16", "uint16"),
    "D": ("float32", "int32", "uint32"),
}
READ_ONLY_AREAS: frozenset[Area] = frozenset({"I"})

_STRUCT: dict[DataType, str] = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "float32": "f",
}  # fmt: skip
# E (Eingang) and A (Ausgang) are the German mnemonics of I and Q.
_AREAS: dict[str, Area] = {"M": "M", "I": "I", "Q": "Q", "E": "I", "A": "Q"}
_SIZES: dict[str, Size] = {"X": "X", "B": "B", "W": "W", "D": "D"}
_SIZE_NAMES: dict[Size, str] = {"X": "bit", "B": "byte", "W": "word", "D": "double word"}

_DB_ADDRESS = re.compile(
    r"DB(?P<db>[0-9]+)\.DB(?P<size>[XBWD])(?P<byte>[0-9]+)(?:\.(?P<bit>[0-9]+))?"
)
_AREA_ADDRESS = re.compile(
    r"(?P<area>[MIQEA])(?P<size>[BWD]?)(?P<byte>[0-9]+)(?:\.(?P<bit>[0-9]+))?"
)
_NOTATION = "DB1.DBX0.0, DB1.DBB0, DB1.DBW0, DB1.DBD0, M0.0, MB0, MW0, MD0 (or I/Q/E/A for M)"


class S7Connection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(102, ge=1, le=65535, description="ISO-on-TCP port")
    rack: int = Field(0, ge=0, le=7)
    slot: int = Field(1, ge=0, le=31, description="the CPU's slot: 1 on S7-1200/1500, 2 on S7-300")
    timeout_seconds: float = Field(2.0, gt=0)


@dataclass(frozen=True, slots=True)
class S7Address:
    """Where a value lives: ``byte`` (and ``bit``, for a bit) of an area (and data block)."""

    area: Area
    db: int  # 0 outside the DB area
    byte: int
    size: Size
    bit: int | None = None  # only for size "X"

    @property
    def width(self) -> int:
        """Bytes the value occupies (a bit occupies part of one byte)."""
        return WIDTH[self.size]

    @property
    def end(self) -> int:
        """The first byte after the value."""
        return self.byte + self.width

    def __str__(self) -> str:
        bit = f".{self.bit}" if self.bit is not None else ""
        if self.area == "DB":
            return f"DB{self.db}.DB{self.size}{self.byte}{bit}"
        size = "" if self.size == "X" else self.size
        return f"{self.area}{size}{self.byte}{bit}"


@lru_cache(maxsize=4096)
def parse_address(text: str) -> S7Address:
    """Parse the usual S7 notation (case-insensitive); :class:`ValueError` says what is wrong.

    Cached: the driver asks for every tag's address on every poll, and the
    result is immutable.
    """
    notation = text.strip().upper()
    db_match = _DB_ADDRESS.fullmatch(notation)
    if db_match is not None:
        area: Area = "DB"
        db = int(db_match["db"])
        size = _SIZES[db_match["size"]]
        byte, bit = db_match["byte"], db_match["bit"]
        if not 1 <= db <= MAX_DB_NUMBER:
            raise ValueError(f"{text!r}: data block number must be 1..{MAX_DB_NUMBER}")
    else:
        area_match = _AREA_ADDRESS.fullmatch(notation)
        if area_match is None:
            raise ValueError(f"{text!r} is not an S7 address; expected e.g. {_NOTATION}")
        area = _AREAS[area_match["area"]]
        db = 0
        size = _SIZES[area_match["size"] or "X"]
        byte, bit = area_match["byte"], area_match["bit"]
    offset = int(byte)
    if offset > MAX_BYTE_OFFSET:
        raise ValueError(f"{text!r}: byte offset must be 0..{MAX_BYTE_OFFSET}")
    if size == "X":
        if bit is None:
            raise ValueError(f"{text!r}: a bit address needs its bit number, e.g. {byte}.0")
        if int(bit) > 7:
            raise ValueError(f"{text!r}: bit number must be 0..7")
        return S7Address(area, db, offset, size, int(bit))
    if bit is not None:
        raise ValueError(f"{text!r}: a {_SIZE_NAMES[size]} address has no bit number")
    if offset + WIDTH[size] - 1 > MAX_BYTE_OFFSET:
        raise ValueError(f"{text!r}: a {_SIZE_NAMES[size]} there runs past byte {MAX_BYTE_OFFSET}")
    return S7Address(area, db, offset, size)


class S7Tag(TagConfig):
    """A tag at an S7 address (``DB1.DBD4``, ``M10.2``, ...) whose size fits its data type."""

    address: str = Field(min_length=1, description="S7 notation, e.g. DB1.DBD4 or M10.2")

    @property
    def location(self) -> S7Address:
        """The parsed address: area, data block, byte offset, size and bit."""
        return parse_address(self.address)

    @field_validator("address")
    @classmethod
    def _parses(cls, address: str) -> str:
        parse_address(address)  # its ValueError names the address, reported on this field
        return address

    @model_validator(mode="after")
    def _fits_s7(self) -> Self:
        location = self.location
        fitting = TYPES_FOR_SIZE[location.size]
        if self.type not in fitting:
            raise ValueError(
                f"address {location} holds a {_SIZE_NAMES[location.size]}: "
                f"type must be {' or '.join(repr(t) for t in fitting)}, not {self.type!r}"
            )
        if self.writable and location.area in READ_ONLY_AREAS:
            raise ValueError(f"address {location} is a process input: the tag cannot be writable")
        return self


class S7Device(DeviceConfig):
    protocol: Literal["s7"]
    s7: S7Connection
    tags: Sequence[S7Tag] = Field(min_length=1)


def encode(raw: RawValue, data_type: DataType) -> bytes:
    """The big-endian bytes of a byte, word or double word value (a bit has none of its own)."""
    if data_type not in _STRUCT:
        raise ValueError(f"type {data_type!r} has no S7 byte encoding")
    value = float(raw) if data_type == "float32" else int(raw)
    return struct.pack(f">{_STRUCT[data_type]}", value)


def decode(tag: S7Tag, memory: bytes | bytearray, base: int = 0) -> RawValue:
    """The tag's raw value, from ``memory`` that starts at byte ``base`` of the tag's area."""
    location = tag.location
    offset = location.byte - base
    if location.bit is not None:
        return bool(memory[offset] >> location.bit & 1)
    value: int | float = struct.unpack_from(f">{_STRUCT[tag.type]}", memory, offset)[0]
    return value


def store(tag: S7Tag, memory: bytearray, raw: RawValue, base: int = 0) -> None:
    """Put a raw value into ``memory`` (starting at byte ``base``); a bit leaves its byte's
    other bits as they are, as a CPU does."""
    location = tag.location
    offset = location.byte - base
    if location.bit is not None:
        mask = 1 << location.bit
        memory[offset] = memory[offset] | mask if raw else memory[offset] & ~mask
        return
    memory[offset : offset + location.width] = encode(raw, tag.type)
