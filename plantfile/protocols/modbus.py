"""Modbus TCP: the connection block, register-addressed tags, and the register encoding."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfile.protocols.base import DeviceConfig
from plantfile.tags import DataType, RawValue, TagConfig

Area = Literal["holding", "input", "coil", "discrete"]
WordOrder = Literal["big", "little"]

BIT_AREAS: frozenset[Area] = frozenset({"coil", "discrete"})
READ_ONLY_AREAS: frozenset[Area] = frozenset({"input", "discrete"})
MAX_ADDRESS = 65535

# Registers are 16 bits: smaller types have no standard Modbus layout.
_REGISTERS: dict[DataType, int] = {
    "bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4,
}  # fmt: skip
_STRUCT: dict[DataType, str] = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d",
}  # fmt: skip


class ModbusConnection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255, description="Modbus unit id")
    timeout_seconds: float = Field(2.0, gt=0)


class ModbusTag(TagConfig):
    """A tag at a 0-based register (or bit) address of one Modbus area."""

    address: int = Field(ge=0, le=MAX_ADDRESS, description="0-based register or bit address")
    area: Area = "holding"
    word_order: WordOrder = Field("big", description="order of the registers of a 32/64-bit value")

    @property
    def register_count(self) -> int:
        """Registers (or bits, for bit areas) the tag occupies."""
        return register_count(self.type)

    @model_validator(mode="after")
    def _fits_modbus(self) -> Self:
        if self.type not in _REGISTERS:
            raise ValueError(f"type {self.type!r} has no Modbus register layout")
        if self.area in BIT_AREAS and self.type != "bool":
            raise ValueError(f"area {self.area!r} holds bits: type must be 'bool'")
        if self.writable and self.area in READ_ONLY_AREAS:
            raise ValueError(f"area {self.area!r} is read-only: the tag cannot be writable")
        if self.address + self.register_count - 1 > MAX_ADDRESS:
            raise ValueError(f"a {self.type} at address {self.address} runs past {MAX_ADDRESS}")
        return self


class ModbusDevice(DeviceConfig):
    protocol: Literal["modbus"]
    modbus: ModbusConnection
    tags: Sequence[ModbusTag] = Field(min_length=1)


def register_count(data_type: DataType) -> int:
    return _REGISTERS[data_type]


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
    """Encode a raw value that fits ``data_type`` (see :func:`~plantfile.tags.to_raw`)."""
    if data_type == "bool":
        return [1 if raw else 0]
    data = struct.pack(f">{_STRUCT[data_type]}", raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))
