"""Tag definitions and the pure codec between device memory and engineering values.

A tag's *raw* value is what the device stores (a bit, an integer, an IEEE
float); its *engineering* value is ``raw * scale + offset`` in the tag's unit.
Drivers move raw values; the supervisor scales them with :func:`to_engineering`
and, for writes, inverts the scaling with :func:`to_raw`, which refuses a value
the data type cannot hold rather than wrapping it.

:class:`TagConfig` holds what every protocol shares, its alarm conditions
included (:mod:`plantfile.alarm_conditions`); each protocol's tag model
(:mod:`plantfile.protocols`) adds where the value lives on that device.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.messages import TagValue  # re-exported: simulators take it from here
from plantfile.alarm_conditions import AlarmCondition, check_tag_alarms

DataType = Literal[
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"
]
RawValue = int | float | bool

INTEGER_RANGES: dict[DataType, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38

# What a tag may be named; the projections refuse a sample of a tag named otherwise.
TAG_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class TagValueError(ValueError):
    def __init__(self, tag: str, value: object, reason: str) -> None:
        super().__init__(f"tag {tag}: cannot encode {value!r}: {reason}")
        self.tag = tag
        self.value = value
        self.reason = reason


class HistoryPolicy(BaseModel):
    """Which samples of a tag the history stores; without one, every sample is stored.

    A sample is stored when its value moves more than ``deadband`` (in the
    tag's unit) from the last stored one, when ``max_interval_seconds`` have
    passed since it, or when its quality differs; a change of quality is
    always stored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deadband: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="a sample within this distance of the last stored value is not stored"
        " (0: only an unchanged value is skipped)",
    )
    max_interval_seconds: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="a sample this long after the last stored one is stored, moved or not",
    )


class TagConfig(BaseModel):
    """One named value of a device, as declared in the plant file, whatever the protocol."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=TAG_NAME_PATTERN)
    type: DataType
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    writable: bool = False
    low: float | None = None
    high: float | None = None
    description: str = ""
    alarms: tuple[AlarmCondition, ...] = Field(
        (), description="alarm conditions on this tag, evaluated by the device's supervisor"
    )
    critical: bool = Field(
        False, description="a write needs the approval of a second person (two-person rule)"
    )
    emergency_values: tuple[bool | float, ...] = Field(
        (),
        description="writing one of these values is an emergency action (a stop): it needs"
        " a login but no second factor, approval or rate limit",
    )
    history: HistoryPolicy | None = Field(
        None,
        description="store only the samples that move or are due (deadband, interval);"
        " by default every sample is stored",
    )

    @property
    def integral(self) -> bool:
        """Whether engineering values are whole numbers (an integer type, integral scaling)."""
        return self.type in INTEGER_RANGES and self.scale.is_integer() and self.offset.is_integer()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale must be finite and non-zero, offset finite")
        if self.type == "bool" and (self.scale != 1 or self.offset != 0):
            raise ValueError("a bool tag cannot be scaled")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        # A writable number without limits would let any value reach the PLC.
        if self.writable and self.type != "bool" and (self.low is None or self.high is None):
            raise ValueError("a writable numeric tag needs both low and high limits")
        if (self.critical or self.emergency_values) and not self.writable:
            raise ValueError("critical and emergency_values only apply to a writable tag")
        for value in self.emergency_values:
            if isinstance(value, bool) != (self.type == "bool"):
                raise ValueError(f"emergency value {value!r} does not fit a {self.type} tag")
        check_tag_alarms(self)
        return self


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
    if tag.type == "float64":
        return raw
    if tag.type == "float32":
        if abs(raw) > FLOAT32_MAX:
            raise TagValueError(tag.name, value, "outside the float32 range")
        return raw
    rounded = round(raw)
    low, high = INTEGER_RANGES[tag.type]
    if not low <= rounded <= high:
        raise TagValueError(tag.name, value, f"raw {rounded} outside {tag.type} [{low}, {high}]")
    return rounded
