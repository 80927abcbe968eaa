"""The demo's presses: one simulator per device of the demo plant, each in its protocol.

Each simulator listens where its device's block says. When that port is taken
(another demo, a real server), it listens on a free port instead and the
device is pointed there; the demo then does not follow the plant file, which
names the port it does not use. The MQTT sensor needs a broker: where none
answers at the device's address, the device stays offline and the demo says so.

The EtherNet/IP simulator runs in a process of its own (``python -m simulators
enip``): it is built on cpppo, which is GPL and never loaded by the plant core.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from devices.config import DeviceConfig, PlantConfig
from devices.protocols.enip import EnipDevice
from devices.protocols.modbus import ModbusDevice
from devices.protocols.mqtt import MqttDevice
from devices.protocols.opcua import OpcUaDevice
from devices.protocols.s7 import S7Device
from plantcore.embedded import free_port, process
from simulators.modbus_server import ModbusSimulator
from simulators.mqtt_sensor import DEMO_PREFIX, MqttSensorSimulator
from simulators.opcua_server import OpcUaSimulator, demo_certificates
from simulators.s7_server import S7Simulator


@dataclass
class DemoPresses:
    """The plant as the simulators serve it, and one line per press for the banner."""

    plant: PlantConfig
    lines: list[str] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        """Whether a simulator listens elsewhere than the plant file says."""
        return any("instead of" in line for line in self.lines)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


@contextlib.asynccontextmanager
async def demo_presses(plant: PlantConfig, state_dir: Path) -> AsyncIterator[DemoPresses]:
    """Start a simulator for every device of ``plant``; stop them all at the end."""
    async with contextlib.AsyncExitStack() as stack:
        devices: list[DeviceConfig] = []
        lines: list[str] = []
        for device in plant.devices:
            served, line = await _serve(stack, device, state_dir)
            devices.append(served)
            lines.append(f"{device.id} ({device.protocol}): {line}")
        yield DemoPresses(plant.model_copy(update={"devices": devices}), lines)


async def _serve(  # noqa: PLR0911 - one return per protocol
    stack: contextlib.AsyncExitStack, device: DeviceConfig, state_dir: Path
) -> tuple[DeviceConfig, str]:
    if isinstance(device, ModbusDevice):
        port = _port_for(device.modbus.port)
        await stack.enter_async_context(ModbusSimulator(port=port))
        return _on_port(device, "modbus", port)
    if isinstance(device, S7Device):
        port = _port_for(device.s7.port)
        await stack.enter_async_context(S7Simulator(port=port))
        return _on_port(device, "s7", port)
    if isinstance(device, EnipDevice):
        port = _port_for(device.enip.port)
        args = [sys.executable, "-m", "simulators", "enip", "--port", str(port)]
        log_file = state_dir / "enip-simulator.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stack.enter_context(process(args, port, "EtherNet/IP simulator", log_file))
        return _on_port(device, "enip", port)
    if isinstance(device, OpcUaDevice):
        return await _serve_opcua(stack, device)
    if isinstance(device, MqttDevice):
        broker = (device.mqtt.host, device.mqtt.port)
        if not answers(*broker):
            return device, f"no MQTT broker at {broker[0]}:{broker[1]}: stays offline"
        await stack.enter_async_context(
            MqttSensorSimulator(host=broker[0], port=broker[1], prefix=DEMO_PREFIX)
        )
        return device, f"sensor publishing to the broker at {broker[0]}:{broker[1]}"
    return device, "no simulator for this protocol: stays offline"


async def _serve_opcua(
    stack: contextlib.AsyncExitStack, device: OpcUaDevice
) -> tuple[DeviceConfig, str]:
    """The secure simulator, with the certificates the device's block names (made once)."""
    connection = device.opcua
    if connection.certificate is None:
        return device, "no client certificate in the plant file: stays offline"
    endpoint = urlsplit(connection.endpoint)
    wanted = endpoint.port or 4840
    port = _port_for(wanted)
    server, client = await asyncio.to_thread(demo_certificates, connection.certificate.parent)
    await stack.enter_async_context(
        OpcUaSimulator(certificate=server, port=port, trusted_clients=[client.certificate])
    )
    moved = endpoint._replace(netloc=f"{endpoint.hostname}:{port}").geturl()
    served = device.model_copy(update={"opcua": connection.model_copy(update={"endpoint": moved})})
    return served, _where(wanted, port, f"{moved}, Basic256Sha256 SignAndEncrypt")


def _port_for(wanted: int) -> int:
    return wanted if port_free(wanted) else free_port()


def _on_port(device: DeviceConfig, block: str, port: int) -> tuple[DeviceConfig, str]:
    """``device`` with its connection ``block`` pointed at ``port``, and where that is."""
    connection = getattr(device, block)
    moved = device.model_copy(update={block: connection.model_copy(update={"port": port})})
    return moved, _where(connection.port, port, f"127.0.0.1:{port}")


def _where(wanted: int, port: int, address: str) -> str:
    if port == wanted:
        return address
    return f"{address} (port {port} instead of {wanted}, which is taken)"
