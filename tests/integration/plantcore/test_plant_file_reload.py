"""A running plant follows its plant file: devices added, removed and changed while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.application import PlantApplication
from domain.messages import ConnectionState
from simulators.modbus_server import ModbusSimulator
from tests.integration.plantcore.conftest import RunPlant, StatusWatch
from tests.support import eventually, free_port, unique

pytestmark = pytest.mark.integration

DEMO_PRESS = yaml.safe_load(Path("config/demo-plant.yaml").read_text(encoding="utf-8"))["devices"][
    0
]


def press_block(device: str, port: int, **fields: object) -> dict[str, object]:
    return {
        **DEMO_PRESS, "id": device, "modbus": {"host": "127.0.0.1", "port": port},
        "simulate": False, **fields,
    }  # fmt: skip


def write_plant(path: Path, *devices: dict[str, object]) -> None:
    plant = {"plant_id": "reload-test", "poll_seconds": 0.2, "devices": list(devices)}
    path.write_text(yaml.safe_dump(plant, sort_keys=False), encoding="utf-8")


def configuration_events(app: PlantApplication | None) -> list[dict[str, Any]]:
    """The DevicesChanged events of the test's plant, as stored."""
    assert app is not None
    configuration = app.plant_configuration("reload-test")
    assert configuration is not None
    return [
        vars(event)
        for event in app.events.get(configuration.id)
        if type(event).__name__ == "DevicesChanged"
    ]


@pytest.fixture
async def simulators() -> AsyncIterator[tuple[ModbusSimulator, ModbusSimulator]]:
    async with (
        ModbusSimulator(port=free_port(), tick_seconds=0.05) as first,
        ModbusSimulator(port=free_port(), tick_seconds=0.05) as second,
    ):
        yield first, second


async def test_added_removed_and_changed_devices_apply_without_a_restart(
    tmp_path: Path,
    run_plant: RunPlant,
    statuses: StatusWatch,
    simulators: tuple[ModbusSimulator, ModbusSimulator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = simulators
    kept, dropped, added = unique("kept"), unique("dropped"), unique("added")
    plant_file = tmp_path / "plant.yaml"
    write_plant(plant_file, press_block(kept, first.port), press_block(dropped, first.port))
    runtime = await run_plant(plant_file)

    async def connected(*devices: str) -> None:
        for device in devices:
            assert statuses.state(device) is ConnectionState.CONNECTED

    await eventually(lambda: connected(kept, dropped))
    assert runtime.fleet is not None
    kept_supervisor = runtime.fleet.supervisor(kept)

    # One device removed, one added on another simulator, and a broken block
    # for the kept device: it keeps running as it was.
    write_plant(
        plant_file,
        press_block(kept, first.port, tags=[]),
        press_block(added, second.port),
    )

    async def applied() -> None:
        assert statuses.state(added) is ConnectionState.CONNECTED
        assert statuses.state(dropped) is ConnectionState.STOPPED

    await eventually(applied)
    assert runtime.fleet.supervisor(kept) is kept_supervisor
    assert runtime.app is not None
    assert set(runtime.app.catalog.devices()) == {kept, added}

    assert f"devices[{kept}].tags: Value should have at least 1 item" in caplog.text

    # Each change of the devices run is on the record.
    async def recorded() -> list[dict[str, Any]]:
        history = await asyncio.to_thread(configuration_events, runtime.app)
        assert [(e["added"], e["removed"], e["changed"]) for e in history] == [
            (sorted([kept, dropped]), [], []),
            ([added], [dropped], []),
        ]
        return history

    history = await eventually(recorded)
    assert history[-1]["source"] == str(plant_file)
    (problem,) = history[-1]["problems"]
    text = plant_file.read_text(encoding="utf-8")
    line = text[: text.index("tags: []")].count("\n") + 1
    assert f"plant.yaml:{line}: devices[{kept}].tags" in problem

    # A file saved half-written changes nothing.
    plant_file.write_text("plant_id: [not yaml", encoding="utf-8")

    async def refused() -> None:
        assert "not valid YAML" in caplog.text

    await eventually(refused)
    assert runtime.fleet.supervisor(kept) is kept_supervisor
    await connected(kept, added)
