"""The plant file: devices, how to reach them, and their tags (seed 003's YAML keys).

:func:`load_plant_file` is the only way in: it parses YAML and validates the
whole plant, raising :class:`~devices.errors.PlantConfigError` that names the
file and the offending field (``devices[press-1].tags[speed].high``), so a plant
engineer can fix the file without reading a traceback.

``protocol`` is the discriminator of a device: each protocol's
``XxxDevice`` model (:mod:`devices.protocols`) has ``protocol: Literal["xxx"]``
and joins the :data:`AnyDevice` union.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.errors import PlantConfigError
from devices.protocols.base import DeviceConfig, refuse_duplicates
from devices.protocols.modbus import ModbusDevice

__all__ = ["AnyDevice", "DeviceConfig", "PlantConfig", "load_plant_file"]

# One model per protocol, told apart by the device's ``protocol`` key.
AnyDevice = Annotated[ModbusDevice, Field(discriminator="protocol")]


class PlantConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    plant_id: str = Field(min_length=1)
    poll_seconds: float = Field(1.0, gt=0)
    force_reconnect_every_sec: float | None = Field(None, gt=0)
    max_consecutive_fails: int = Field(10, ge=1)
    devices: list[AnyDevice] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> Self:
        refuse_duplicates("device id", (device.id for device in self.devices))
        return self


def load_plant_file(path: str | Path) -> PlantConfig:
    """Read and validate a plant file; every problem is a :class:`PlantConfigError`."""
    where = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlantConfigError(where, "", f"cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PlantConfigError(where, "", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PlantConfigError(where, "", "must be a mapping of plant settings")
    try:
        return PlantConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = exc.error_count() - 1
        reason = first["msg"] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        loc = first["loc"]
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "protocol")  # pydantic places a bad or missing protocol on the device
        raise PlantConfigError(where, field_path(raw, loc), reason) from exc


def field_path(raw: Any, loc: Iterable[int | str]) -> str:
    """``devices[press-1].tags[speed].high``: list items by their id or name when they have one."""
    parts: list[str] = []
    node = raw
    after_index = False
    for key in loc:
        # Inside a list item, pydantic names the union member (the protocol) first.
        if after_index and isinstance(node, dict) and key == node.get("protocol"):
            after_index = False
            continue
        after_index = isinstance(key, int)
        child = _child(node, key)
        if isinstance(key, int):
            label = child.get("id") or child.get("name") if isinstance(child, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label if label else key}]"]
        else:
            parts.append(key)
        node = child
    return ".".join(parts)


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    if isinstance(node, dict):
        return node.get(key)
    return None
