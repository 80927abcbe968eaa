"""The demo plant file and the simulators describe the same presses, tag for tag."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from plantfile.loader import load_plant_file
from plantfile.plant import DeviceConfig
from plantfile.tags import TagConfig
from simulators.enip_server import PRESS_TAGS
from simulators.modbus_server import PRESS_REGISTERS
from simulators.mqtt_sensor import DEMO_PREFIX, press_tags
from simulators.opcua_server import PRESS_VARIABLES as OPCUA_VARIABLES
from simulators.s7_server import PRESS_VARIABLES

DEMO_PLANT = Path(__file__).parents[3] / "config" / "demo-plant.yaml"

SIMULATED: dict[str, Sequence[TagConfig]] = {
    "modbus": [register.tag for register in PRESS_REGISTERS],
    "s7": [variable.tag for variable in PRESS_VARIABLES],
    "enip": [plc_tag.tag for plc_tag in PRESS_TAGS],
    "mqtt": press_tags(DEMO_PREFIX),
    "opcua": [variable.tag for variable in OPCUA_VARIABLES],
}


def demo_devices() -> dict[str, DeviceConfig]:
    return {device.protocol: device for device in load_plant_file(DEMO_PLANT).devices}


def test_the_demo_plant_has_one_press_of_each_protocol() -> None:
    assert sorted(demo_devices()) == sorted(SIMULATED)


@pytest.mark.parametrize("protocol", sorted(SIMULATED))
def test_each_demo_press_matches_its_simulator(protocol: str) -> None:
    device = demo_devices()[protocol]
    # Descriptions are prose; subscribing, alarms and the command chain's rules (critical,
    # emergency values) are the plant core's, not the device's.
    client_side = {"description", "subscribe", "alarms", "critical", "emergency_values"}
    declared = {tag.name: tag.model_dump(exclude=client_side) for tag in device.tags}
    simulated = {tag.name: tag.model_dump(exclude=client_side) for tag in SIMULATED[protocol]}
    assert declared == simulated


def test_the_demo_stops_every_press_without_a_second_factor_and_guards_one_setpoint() -> None:
    devices = load_plant_file(DEMO_PLANT).devices
    tags = {(device.id, tag.name): tag for device in devices for tag in device.tags}
    emergency = {key: tag.emergency_values for key, tag in tags.items() if tag.emergency_values}
    assert emergency == {(device.id, "running"): (False,) for device in devices}
    assert [key for key, tag in tags.items() if tag.critical] == [("press-2", "speed_setpoint")]
    # The README's first command, by the demo's only operator, needs no second person.
    assert not tags[("press-1", "speed_setpoint")].critical
