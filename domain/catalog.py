"""What may be written where: the tags of every device, their kind and engineering limits.

The catalogue is built by the composition root from the plant's configuration.
Before recording a command the domain asks it: may this value be written to
this tag? ``check_write`` answers with the value to write or with the
:class:`~domain.errors.InvalidWrite` that becomes the rejection. It also tells
where a device is (its area, for permissions), whether it runs simulated, and
which writes are critical (two persons) or emergency actions (no second factor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from domain.errors import NotWritable, OutOfLimits, UnknownDevice, UnknownTag, ValueNotNumeric


class ValueKind(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class TagLimits:
    """One tag's write contract; ``low``/``high`` are inclusive, ``None`` means unbounded."""

    device: str
    tag: str
    unit: str
    writable: bool
    kind: ValueKind
    low: float | None
    high: float | None
    # A write needs the approval of a second person with permission on the device.
    critical: bool = False
    # Writing one of these values is an emergency action (a stop): no second factor.
    emergency_values: tuple[float | int | bool, ...] = field(default=())

    def is_emergency(self, value: float | int | bool) -> bool:
        # ``True == 1`` in Python: a boolean only matches a boolean, a number a number.
        return any(
            type(value) is type(candidate) and value == candidate
            if isinstance(value, bool) or isinstance(candidate, bool)
            else value == candidate
            for candidate in self.emergency_values
        )


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    area: str = ""
    simulated: bool = False


class TagCatalog:
    def __init__(
        self, tags: Iterable[TagLimits], devices: Mapping[str, DeviceInfo] | None = None
    ) -> None:
        self._devices = dict(devices or {})
        self._by_device: dict[str, dict[str, TagLimits]] = {}
        for limits in tags:
            device_tags = self._by_device.setdefault(limits.device, {})
            # Two definitions of one tag would make "the limits" ambiguous: a config bug.
            if limits.tag in device_tags:
                raise ValueError(f"tag {limits.device}/{limits.tag} is declared twice")
            device_tags[limits.tag] = limits

    def lookup(self, device: str, tag: str) -> TagLimits:
        try:
            return self._device_tags(device)[tag]
        except KeyError:
            raise UnknownTag(device, tag) from None

    def devices(self) -> list[str]:
        return sorted(self._by_device)

    def device_info(self, device: str) -> DeviceInfo:
        """Where ``device`` is and whether it runs simulated (a default for an unknown one)."""
        return self._devices.get(device, DeviceInfo())

    def area_of(self, device: str) -> str:
        return self.device_info(device).area

    def tags(self, device: str) -> list[TagLimits]:
        return sorted(self._device_tags(device).values(), key=lambda limits: limits.tag)

    def check_write(self, device: str, tag: str, value: object) -> float | int | bool:
        """The value to write, normalised to the tag's kind, or the reason it may not be."""
        limits = self.lookup(device, tag)
        if not limits.writable:
            raise NotWritable(device, tag)
        checked = _coerce(limits, value)
        if isinstance(checked, bool):
            return checked
        if (limits.low is not None and checked < limits.low) or (
            limits.high is not None and checked > limits.high
        ):
            raise OutOfLimits(device, tag, checked, limits.low, limits.high)
        return checked

    def _device_tags(self, device: str) -> dict[str, TagLimits]:
        try:
            return self._by_device[device]
        except KeyError:
            raise UnknownDevice(device) from None


def _coerce(limits: TagLimits, value: object) -> float | int | bool:
    """Accept only values already of the tag's kind.

    Strings are refused even when they look numeric ("1500"): the API hands the
    domain typed JSON values, so a string here is a client bug, and parsing it
    would make "1e3", " 15" or "1,5" the domain's problem. ``bool`` is a subclass
    of ``int`` in Python, so it is ruled out explicitly for numeric tags.
    """
    device, tag = limits.device, limits.tag
    if limits.kind is ValueKind.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueNotNumeric(device, tag, value, expected="a boolean")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueNotNumeric(device, tag, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueNotNumeric(device, tag, value, expected="a finite number")
    if limits.kind is ValueKind.INTEGER and isinstance(value, float):
        # JSON clients may send 5.0 for 5; anything fractional is not an integer.
        if not value.is_integer():
            raise ValueNotNumeric(device, tag, value, expected="an integer")
        return int(value)
    return value
