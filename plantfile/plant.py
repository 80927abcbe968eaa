"""The plant file's model: devices, how to reach them, and their tags (seed 003's keys).

:mod:`plantfile.loader` reads the YAML into these models; the JSON Schema of
:class:`PlantConfig` (``docs/plant-file.schema.json``) gives editors completion.

``protocol`` is the discriminator of a device: each protocol's
``XxxDevice`` model (:mod:`plantfile.protocols`) has ``protocol: Literal["xxx"]``
and joins the :data:`AnyDevice` union.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfile.protocols.base import DeviceConfig, refuse_duplicates
from plantfile.protocols.enip import EnipDevice
from plantfile.protocols.modbus import ModbusDevice
from plantfile.protocols.mqtt import MqttDevice
from plantfile.protocols.opcua import OpcUaDevice
from plantfile.protocols.s7 import S7Device

__all__ = ["AnyDevice", "DeviceConfig", "PlantConfig"]

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
    devices: list[AnyDevice] = Field(default_factory=list)

    def device_fingerprints(self) -> dict[str, str]:
        """Each device id → a digest of all it runs with: its block and the inherited settings."""
        inherited = self.model_dump_json(
            include={"poll_seconds", "force_reconnect_every_sec", "max_consecutive_fails"}
        )
        return {
            device.id: hashlib.sha256((inherited + device.model_dump_json()).encode()).hexdigest()
            for device in self.devices
        }

    @model_validator(mode="after")
    def _unique_devices(self) -> Self:
        refuse_duplicates("device id", (device.id for device in self.devices))
        return self
