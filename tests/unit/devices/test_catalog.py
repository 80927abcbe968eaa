from __future__ import annotations

from pathlib import Path

import pytest

from devices.catalog import tag_catalog
from devices.plant_file import load_plant_file
from domain.catalog import ValueKind
from domain.errors import NotWritable, OutOfLimits

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
