"""The domain's tag catalogue, built from the plant file.

The domain checks every command against :class:`~domain.catalog.TagCatalog`
before recording it; the supervisor checks writes against the same limits a
second time, built from the same function, so both nets agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from plantfile.plant import DeviceConfig, PlantConfig
from plantfile.tags import TagConfig


def tag_catalog(plant: PlantConfig) -> TagCatalog:
    return TagCatalog(_limits(plant.devices), _device_infos(plant.devices))


def device_catalog(device: DeviceConfig) -> TagCatalog:
    return TagCatalog(_limits([device]), _device_infos([device]))


def tag_limits(device: str, tag: TagConfig) -> TagLimits:
    return TagLimits(
        device=device,
        tag=tag.name,
        unit=tag.unit,
        writable=tag.writable,
        kind=_kind(tag),
        low=tag.low,
        high=tag.high,
        critical=tag.critical,
        emergency_values=tag.emergency_values,
    )


def _device_infos(devices: Iterable[DeviceConfig]) -> dict[str, DeviceInfo]:
    return {d.id: DeviceInfo(area=d.area, simulated=d.simulate) for d in devices}


def _limits(devices: Iterable[DeviceConfig]) -> Iterable[TagLimits]:
    return (tag_limits(device.id, tag) for device in devices for tag in device.tags)


def _kind(tag: TagConfig) -> ValueKind:
    if tag.type == "bool":
        return ValueKind.BOOL
    # A scaled integer register holds fractional engineering values (0.1 bar steps).
    if tag.integral:
        return ValueKind.INTEGER
    return ValueKind.NUMBER
