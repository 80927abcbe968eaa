from __future__ import annotations

from pathlib import Path

import pytest

from domain.catalog import DeviceInfo, ValueKind
from domain.errors import NotWritable, OutOfLimits
from plantfile.catalog_builder import device_catalog, tag_catalog
from plantfile.loader import load_plant_file

DEMO_PLANT = Path(__file__).parents[3] / "config" / "demo-plant.yaml"


def test_the_catalogue_carries_kinds_and_limits_from_the_plant_file() -> None:
    catalog = tag_catalog(load_plant_file(DEMO_PLANT))
    setpoint = catalog.lookup("press-1", "speed_setpoint")
    assert (setpoint.kind, setpoint.low, setpoint.high, setpoint.unit) == (
        ValueKind.INTEGER,
        0,
        3000,
        "rpm",
    )
    assert catalog.lookup("press-1", "running").kind is ValueKind.BOOL
    assert catalog.lookup("press-1", "motor_temperature").kind is ValueKind.NUMBER
    assert catalog.check_write("press-1", "speed_setpoint", 1500) == 1500
    with pytest.raises(OutOfLimits):
        catalog.check_write("press-1", "speed_setpoint", 3001)
    with pytest.raises(NotWritable):
        catalog.check_write("press-1", "speed", 10)


PLANT_FILE = """\
plant_id: t
devices:
  - id: press-a
    protocol: modbus
    area: line-1
    simulate: true
    modbus: {host: 127.0.0.1}
    tags:
      - {name: running, address: 0, type: bool, writable: true, emergency_values: [false]}
      - {name: pressure, address: 1, type: uint16, writable: true, low: 0, high: 200,
         critical: true, emergency_values: [0]}
      - {name: speed, address: 2, type: uint16, writable: true, low: 0, high: 3000}
  - id: press-b
    protocol: modbus
    modbus: {host: 127.0.0.1}
    tags:
      - {name: speed, address: 2, type: uint16}
"""


def test_the_catalogue_carries_the_command_chain_s_rules(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT_FILE, encoding="utf-8")
    catalog = tag_catalog(load_plant_file(path))

    running = catalog.lookup("press-a", "running")
    assert (running.critical, running.emergency_values) == (False, (False,))
    assert running.is_emergency(False)
    assert not running.is_emergency(True)
    pressure = catalog.lookup("press-a", "pressure")
    assert (pressure.critical, pressure.emergency_values) == (True, (0,))
    assert pressure.is_emergency(0)
    speed = catalog.lookup("press-a", "speed")
    assert (speed.critical, speed.emergency_values) == (False, ())


def test_the_catalogue_knows_each_device_s_area_and_whether_it_is_simulated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT_FILE, encoding="utf-8")
    plant = load_plant_file(path)
    catalog = tag_catalog(plant)
    assert catalog.device_info("press-a") == DeviceInfo(area="line-1", simulated=True)
    assert catalog.device_info("press-b") == DeviceInfo(area="", simulated=False)
    assert catalog.area_of("press-a") == "line-1"
    # A device's own catalogue (its supervisor's) knows only that device.
    own = device_catalog(plant.devices[0])
    assert own.device_info("press-a") == DeviceInfo(area="line-1", simulated=True)
    assert own.device_info("press-b") == DeviceInfo()


def test_the_demo_catalogue_guards_one_setpoint_and_stops_without_a_second_factor() -> None:
    catalog = tag_catalog(load_plant_file(DEMO_PLANT))
    assert catalog.lookup("press-2", "speed_setpoint").critical
    assert not catalog.lookup("press-1", "speed_setpoint").critical
    assert catalog.lookup("press-1", "running").is_emergency(False)
    assert catalog.device_info("press-1") == DeviceInfo(area="press-line", simulated=True)
