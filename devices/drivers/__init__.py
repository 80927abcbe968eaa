"""Protocol drivers, one module per protocol, each implementing :class:`devices.driver.Driver`."""

from __future__ import annotations

from devices.config import DeviceConfig
from devices.driver import Driver
from devices.protocols.enip import EnipDevice
from devices.protocols.modbus import ModbusDevice
from devices.protocols.mqtt import MqttDevice
from devices.protocols.opcua import OpcUaDevice
from devices.protocols.s7 import S7Device


def driver_for(device: DeviceConfig) -> Driver:
    """The driver of the device's protocol, not yet connected."""
    # Imported here: each protocol's client library loads only when a device uses it.
    if isinstance(device, ModbusDevice):
        from devices.drivers.modbus import ModbusDriver

        return ModbusDriver(device)
    if isinstance(device, OpcUaDevice):
        from devices.drivers.opcua import OpcUaDriver

        return OpcUaDriver(device)
    if isinstance(device, MqttDevice):
        from devices.drivers.mqtt import MqttDriver

        return MqttDriver(device)
    if isinstance(device, S7Device):
        from devices.drivers.s7 import S7Driver

        return S7Driver(device)
    if isinstance(device, EnipDevice):
        from devices.drivers.enip import EnipDriver

        return EnipDriver(device)
    raise TypeError(f"no driver for {type(device).__name__}")
