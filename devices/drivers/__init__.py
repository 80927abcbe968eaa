"""Protocol drivers, one module per protocol, each implementing :class:`devices.driver.Driver`."""

from __future__ import annotations

from devices.driver import Driver
from plantfile.plant import DeviceConfig
from plantfile.protocols.enip import EnipDevice
from plantfile.protocols.modbus import ModbusDevice
from plantfile.protocols.mqtt import MqttDevice
from plantfile.protocols.opcua import OpcUaDevice
from plantfile.protocols.s7 import S7Device


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
