"""The plant file's model: devices, how to reach them, and their tags (seed 003's keys).

:mod:`plantfile.loader` reads the YAML into these models; the JSON Schema of
:class:`PlantConfig` (``docs/plant-file.schema.json``) gives editors completion.

``protocol`` is the discriminator of a device: each protocol's
``XxxDevice`` model (:mod:`plantfile.protocols`) has ``protocol: Literal["xxx"]``
and joins the :data:`AnyDevice` union.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from plantfile.protocols.base import DeviceConfig, check_reconnect, refuse_duplicates
from plantfile.protocols.enip import EnipDevice
from plantfile.protocols.modbus import ModbusDevice
from plantfile.protocols.mqtt import MqttDevice
from plantfile.protocols.opcua import OpcUaDevice
from plantfile.protocols.s7 import S7Device

__all__ = ["AnyDevice", "DeviceConfig", "PlantConfig", "Reconnect", "reconnect_of"]

# The seeds' RECONNECT_DELAY: a lost device is tried again every 5 s.
DEFAULT_RECONNECT_DELAY_SECONDS = 5.0
# The plant-wide keys every device inherits: a change to one changes every device.
_INHERITED_KEYS = frozenset(
    {
        "poll_seconds",
        "force_reconnect_every_sec",
        "max_consecutive_fails",
        "reconnect_delay_seconds",
        "reconnect_max_seconds",
    }
)

# One model per protocol, told apart by the device's ``protocol`` key.
AnyDevice = Annotated[
    ModbusDevice | OpcUaDevice | MqttDevice | S7Device | EnipDevice,
    Field(discriminator="protocol"),
]


class PlantConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    plant_id: str = Field(min_length=1)
    poll_seconds: float = Field(1.0, gt=0)
    force_reconnect_every_sec: float | None = Field(None, gt=0)
    max_consecutive_fails: int = Field(10, ge=1)
    reconnect_delay_seconds: float = Field(
        DEFAULT_RECONNECT_DELAY_SECONDS,
        gt=0,
        description="after a loss a device is tried again at once, then after this delay",
    )
    reconnect_max_seconds: float | None = Field(
        None,
        gt=0,
        description="the delay doubles, with jitter, up to this; by default the delay itself",
    )
    devices: list[AnyDevice] = Field(default_factory=list)

    def device_fingerprints(self) -> dict[str, str]:
        """Each device id → a digest of all it runs with: its block and the inherited settings."""
        inherited = self.model_dump_json(include=set(_INHERITED_KEYS))
        return {
            device.id: hashlib.sha256((inherited + device.model_dump_json()).encode()).hexdigest()
            for device in self.devices
        }

    @field_validator("reconnect_max_seconds")
    @classmethod
    def _max_not_below_delay(cls, longest: float | None, info: ValidationInfo) -> float | None:
        check_reconnect(info.data.get("reconnect_delay_seconds"), longest)
        return longest

    @model_validator(mode="after")
    def _unique_devices(self) -> Self:
        refuse_duplicates("device id", (device.id for device in self.devices))
        return self

    @model_validator(mode="after")
    def _reconnect_of_each_device(self) -> Self:
        for device in self.devices:
            conflict = reconnect_conflict(self, device)
            if conflict is not None:
                raise ValueError(f"device {device.id}: {conflict.key} {conflict.reason}")
        return self


class Reconnect(NamedTuple):
    """How a device is tried again after a loss: at once, then after ``delay`` seconds,
    growing up to ``longest``."""

    delay: float
    longest: float


class ReconnectConflict(NamedTuple):
    key: str  # the device's key at fault
    reason: str


def reconnect_of(plant: PlantConfig, device: DeviceConfig) -> Reconnect:
    """The device's own reconnect keys, else the plant's; the maximum defaults to the delay."""
    delay = device.reconnect_delay_seconds or plant.reconnect_delay_seconds
    longest = device.reconnect_max_seconds or plant.reconnect_max_seconds or delay
    return Reconnect(delay, longest)


def reconnect_conflict(plant: PlantConfig, device: DeviceConfig) -> ReconnectConflict | None:
    """Why the device's reconnect keys do not fit the plant's, if they do not.

    Each block alone is checked by its model; this is the mix of the two: a
    device's delay above the plant's maximum, or its maximum below the plant's delay.
    """
    delay, longest = reconnect_of(plant, device)
    if longest >= delay:
        return None
    if device.reconnect_max_seconds is not None:
        return ReconnectConflict(
            "reconnect_max_seconds",
            f"{longest:g} s is shorter than the plant's reconnect_delay_seconds {delay:g} s:"
            " the delay only grows up to the maximum",
        )
    return ReconnectConflict(
        "reconnect_delay_seconds",
        f"{delay:g} s is longer than the plant's reconnect_max_seconds {longest:g} s:"
        " the delay only grows up to the maximum, so set this device's reconnect_max_seconds too",
    )
