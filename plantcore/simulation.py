"""Simulation mode (seed 000): a device whose block says ``simulate: true`` is served
by a simulator of its protocol that the plant core runs itself.

The simulator listens where the device's block says; when that port is taken
(another plant core, a real server), on a free port instead, and the device
is pointed there. The MQTT sensor needs a broker: where none answers at the
device's address, the device stays offline and the log says so. The
EtherNet/IP simulator runs in a process of its own (``python -m simulators
enip``): it is built on cpppo, which is GPL and never loaded by the plant core.

:class:`Simulations` keeps the running simulators in step with the plant as it
is reloaded: a simulated device added, removed or changed starts, stops or
restarts its simulator; the others keep theirs (and their model's state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from plantcore.embedded import free_port, process
from plantfile.plant import DeviceConfig, PlantConfig
from plantfile.protocols.enip import EnipDevice
from plantfile.protocols.modbus import ModbusDevice
from plantfile.protocols.mqtt import MqttDevice
from plantfile.protocols.opcua import OpcUaDevice
from plantfile.protocols.s7 import S7Device
from simulators.modbus_server import ModbusSimulator
from simulators.mqtt_sensor import MqttSensorSimulator
from simulators.opcua_server import OpcUaSimulator, demo_certificates
from simulators.s7_server import S7Simulator

log = logging.getLogger(__name__)

SENSOR_STATE_SUFFIX = "/press/state"  # simulators/mqtt_sensor.py's state topic


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (as servers do, with SO_REUSEADDR:
    a port its last server left in TIME_WAIT is free again)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


class Simulations:
    """The simulators of a plant's ``simulate: true`` devices, kept in step with the plant."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        # device id → (its block as configured, its simulator, where the simulator serves it)
        self._running: dict[str, tuple[DeviceConfig, contextlib.AsyncExitStack, DeviceConfig]] = {}
        self.lines: dict[str, str] = {}

    async def apply(self, plant: PlantConfig) -> PlantConfig:
        """``plant`` with every simulated device pointed at its (started) simulator."""
        wanted = {device.id: device for device in plant.devices if device.simulate}
        for device_id, (configured, _, _) in list(self._running.items()):
            if wanted.get(device_id) != configured:
                await self._stop(device_id)
        devices: list[DeviceConfig] = []
        for device in plant.devices:
            if device.simulate and device.id not in self._running:
                await self._start(device)
            devices.append(self._running[device.id][2] if device.simulate else device)
        return plant.model_copy(update={"devices": devices})

    async def close(self) -> None:
        for device_id in list(self._running):
            await self._stop(device_id)

    async def _start(self, device: DeviceConfig) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            served, line = await _serve(stack, device, self._state_dir)
        except BaseException:
            await stack.aclose()
            raise
        self._running[device.id] = (device, stack, served)
        self.lines[device.id] = f"{device.id} ({device.protocol}): {line}"
        log.info("simulating %s", self.lines[device.id])

    async def _stop(self, device_id: str) -> None:
        _, stack, _ = self._running.pop(device_id)
        self.lines.pop(device_id, None)
        await stack.aclose()


async def _serve(
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
        return await _serve_mqtt(stack, device)
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


async def _serve_mqtt(
    stack: contextlib.AsyncExitStack, device: MqttDevice
) -> tuple[DeviceConfig, str]:
    """The press's sensor, publishing under the prefix of the device's state topic."""
    broker = (device.mqtt.host, device.mqtt.port)
    topic = device.tags[0].topic
    if not topic.endswith(SENSOR_STATE_SUFFIX):
        return device, f"topic {topic} is not the press sensor's <prefix>{SENSOR_STATE_SUFFIX}"
    if not answers(*broker):
        return device, f"no MQTT broker at {broker[0]}:{broker[1]}: stays offline"
    prefix = topic.removesuffix(SENSOR_STATE_SUFFIX)
    await stack.enter_async_context(
        MqttSensorSimulator(host=broker[0], port=broker[1], prefix=prefix)
    )
    return device, f"sensor publishing under {prefix}/ to the broker at {broker[0]}:{broker[1]}"


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
