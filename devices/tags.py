"""Tag definitions and the pure codec between device memory and engineering values.

A tag's *raw* value is what the device stores (a bit, a 16/32-bit integer, an
IEEE float); its *engineering* value is ``raw * scale + offset`` in the tag's
unit. Drivers move raw values; the supervisor scales them with
:func:`to_engineering` and, for writes, inverts the scaling with :func:`to_raw`,
which refuses a value the data type cannot hold rather than wrapping it.
:func:`registers_to_raw` / :func:`raw_to_registers` are the 16-bit register
encoding shared by Modbus and register-based simulators.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.errors import TagValueError
from domain.messages import TagValue

DataType = Literal["bool", "int16", "uint16", "int32", "float32"]
Area = Literal["holding", "input", "coil", "discrete"]
WordOrder = Literal["big", "little"]
RawValue = int | float | bool

BIT_AREAS: frozenset[Area] = frozenset({"coil", "discrete"})
READ_ONLY_AREAS: frozenset[Area] = frozenset({"input", "discrete"})
INTEGER_TYPES: frozenset[DataType] = frozenset({"int16", "uint16", "int32"})

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "float32": "f"}
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38
MAX_ADDRESS = 65535


class TagConfig(BaseModel):
    """One named value in a device's memory, as declared in the plant file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    address: int = Field(ge=0, le=MAX_ADDRESS, description="0-based register or bit address")
    area: Area = "holding"
    type: DataType
    word_order: WordOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    writable: bool = False
    low: float | None = None
    high: float | None = None
    description: str = ""

    @property
    def register_count(self) -> int:
        """Registers (or bits, for bit areas) the tag occupies."""
        return register_count(self.type)

    @property
    def integral(self) -> bool:
        """Whether engineering values are whole numbers (an integer type, integral scaling)."""
        return self.type in INTEGER_TYPES and self.scale.is_integer() and self.offset.is_integer()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.area in BIT_AREAS and self.type != "bool":
            raise ValueError(f"area {self.area!r} holds bits: type must be 'bool'")
        if self.writable and self.area in READ_ONLY_AREAS:
            raise ValueError(f"area {self.area!r} is read-only: the tag cannot be writable")
        if self.address + self.register_count - 1 > MAX_ADDRESS:
            raise ValueError(f"a {self.type} at address {self.address} runs past {MAX_ADDRESS}")
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale must be finite and non-zero, offset finite")
        if self.type == "bool" and (self.scale != 1 or self.offset != 0):
            raise ValueError("a bool tag cannot be scaled")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        # A writable number without limits would let any value reach the PLC.
        if self.writable and self.type != "bool" and (self.low is None or self.high is None):
            raise ValueError("a writable numeric tag needs both low and high limits")
        return self


def register_count(data_type: DataType) -> int:
    return 2 if data_type in ("int32", "float32") else 1


def registers_to_raw(
    registers: Sequence[int], data_type: DataType, word_order: WordOrder = "big"
) -> RawValue:
    """Decode the registers of one tag (most significant byte first within a register)."""
    if len(registers) != register_count(data_type):
        raise ValueError(f"{data_type} needs {register_count(data_type)} registers")
    if data_type == "bool":
        return registers[0] != 0
    words = registers if word_order == "big" else list(reversed(registers))
    data = b"".join(word.to_bytes(2, "big") for word in words)
    value: int | float = struct.unpack(f">{_STRUCT[data_type]}", data)[0]
    return value


def raw_to_registers(
    raw: RawValue, data_type: DataType, word_order: WordOrder = "big"
) -> list[int]:
    """Encode a raw value that fits ``data_type`` (see :func:`to_raw`) into registers."""
    if data_type == "bool":
        return [1 if raw else 0]
    data = struct.pack(f">{_STRUCT[data_type]}", raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))


def to_engineering(tag: TagConfig, raw: RawValue) -> TagValue:
    if tag.type == "bool":
        return bool(raw)
    value = raw * tag.scale + tag.offset
    # Counts and rpm with integral scaling stay integers on the wire.
    if tag.integral:
        return int(value)
    return value


def to_raw(tag: TagConfig, value: TagValue) -> RawValue:
    """Invert the scaling for a write; raises :class:`TagValueError` if the type cannot hold it."""
    if tag.type == "bool":
        if isinstance(value, bool):
            return value
        raise TagValueError(tag.name, value, "expects a boolean")
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        raise TagValueError(tag.name, value, "expects a finite number")
    raw = (value - tag.offset) / tag.scale
    if tag.type == "float32":
        if abs(raw) > FLOAT32_MAX:
            raise TagValueError(tag.name, value, "outside the float32 range")
        return raw
    rounded = round(raw)
    low, high = _INT_RANGE[tag.type]
    if not low <= rounded <= high:
        raise TagValueError(tag.name, value, f"raw {rounded} outside {tag.type} [{low}, {high}]")
    return rounded
