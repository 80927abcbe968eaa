"""Plant-in-a-box: the Modbus simulator, the whole plant core and a demo operator."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path

from devices.config import PlantConfig
from devices.plant_file import load_plant_file
from devices.protocols.modbus import ModbusDevice
from plantcore.embedded import free_port, services
from plantcore.operators import Credentials, demo_operator
from plantcore.runtime import PlantRuntime, runtime_config
from plantcore.settings import Settings
from simulators.modbus_server import ModbusSimulator

log = logging.getLogger(__name__)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _with_simulator_port(plant: PlantConfig, port: int) -> PlantConfig:
    devices = [
        device.model_copy(update={"modbus": device.modbus.model_copy(update={"port": port})})
        if isinstance(device, ModbusDevice)
        else device
        for device in plant.devices
    ]
    return plant.model_copy(update={"devices": devices})


async def run_demo(settings: Settings) -> None:
    plant = load_plant_file(settings.plant_file)
    # The plant file points the press at the simulator's usual port; if that is
    # taken, the demo's simulator listens elsewhere and the press follows it.
    port = next(d.modbus.port for d in plant.devices if isinstance(d, ModbusDevice))
    plant_file: Path | None = settings.plant_file  # followed while the demo runs
    if not _port_free(port):
        port = free_port()
        plant = _with_simulator_port(plant, port)
        plant_file = None  # the file names a port the demo does not use
    http_port = settings.http_port if _port_free(settings.http_port) else free_port()

    with services(settings.state_dir) as urls:
        async with ModbusSimulator(port=port):
            config = runtime_config(
                settings,
                plant=plant,
                database_url=urls.database_url,
                nats_url=urls.nats_url,
                redis_url=urls.redis_url,
                http_port=http_port,
                plant_file=plant_file,
            )

            async def ready(runtime: PlantRuntime) -> None:
                assert runtime.app is not None
                credentials = demo_operator(runtime.app, settings.state_dir)
                _print_banner(runtime.api_url, credentials, port)

            with contextlib.suppress(KeyboardInterrupt):
                await PlantRuntime(config).run(ready)


def _print_banner(api_url: str, operator: Credentials, simulator_port: int) -> None:
    lines = [
        "",
        "plantcore demo is running (Ctrl-C stops everything)",
        f"  GraphQL:        {api_url}/graphql",
        f"  health:         {api_url}/health",
        f"  Modbus press:   127.0.0.1:{simulator_port}",
        f"  operator:       {operator.username}",
        f"  password:       {operator.password}",
        f"  TOTP secret:    {operator.totp_secret}",
        f"  enrol:          {operator.provisioning_uri()}",
        "",
    ]
    print("\n".join(lines), flush=True)
