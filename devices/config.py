"""The plant file: devices, how to reach them, and their tags (seed 003's YAML keys).

:func:`load_plant_file` is the only way in: it parses YAML and validates the
whole plant, raising :class:`~devices.errors.PlantConfigError` that names the
file and the offending field (``devices[press-1].tags[speed].high``), so a plant
engineer can fix the file without reading a traceback.

``protocol`` is the discriminator of a device: a second protocol adds its own
``XxxDevice`` model with ``protocol: Literal["xxx"]`` and ``DeviceConfig``
becomes an annotated union on that field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.errors import PlantConfigError
from devices.tags import TagConfig

# Device ids become NATS subject tokens (plant.telemetry.<device>): no dots, no wildcards.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class ModbusConnection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255, description="Modbus unit id")
    timeout_seconds: float = Field(2.0, gt=0)


class DeviceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    protocol: Literal["modbus"]
    modbus: ModbusConnection
    poll_seconds: float | None = Field(None, gt=0, description="overrides the plant's")
    tags: list[TagConfig] = Field(min_length=1)
    area: str = ""

    def tag(self, name: str) -> TagConfig | None:
        return next((tag for tag in self.tags if tag.name == name), None)

    @model_validator(mode="after")
    def _unique_tags(self) -> Self:
        _refuse_duplicates("tag name", (tag.name for tag in self.tags))
        return self


class PlantConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    plant_id: str = Field(min_length=1)
    poll_seconds: float = Field(1.0, gt=0)
    force_reconnect_every_sec: float | None = Field(None, gt=0)
    max_consecutive_fails: int = Field(10, ge=1)
    devices: list[DeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> Self:
        _refuse_duplicates("device id", (device.id for device in self.devices))
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
        raise PlantConfigError(where, field_path(raw, first["loc"]), reason) from exc


def field_path(raw: Any, loc: Iterable[int | str]) -> str:
    """``devices[press-1].tags[speed].high``: list items by their id or name when they have one."""
    parts: list[str] = []
    node = raw
    for key in loc:
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


def _refuse_duplicates(what: str, names: Iterable[str]) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")
