"""Alarm conditions in the plant file: what is accepted, and where a refusal points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.messages import AlarmPriority
from plantfile.alarm_conditions import condition_message, condition_name, tag_conditions
from plantfile.loader import PlantConfigError, load_plant_file
from plantfile.protocols.modbus import ModbusDevice

PLANT = """\
plant_id: test
devices:
  - id: press-1
    protocol: modbus
    area: press-line
    modbus: {host: 127.0.0.1}
    comm_loss_alarm: {priority: high, on_delay: 5}
    tags:
      - {name: running, address: 0, type: bool}
      - {name: speed_setpoint, address: 1, type: uint16, unit: rpm}
      - {name: speed, address: 2, type: uint16, unit: rpm,
         alarms: [{kind: deviation, setpoint_tag: speed_setpoint, limit: 100, priority: medium}]}
      - name: motor_temperature
        address: 3
        type: float32
        unit: °C
        description: Motor winding temperature
        alarms:
          - kind: hi
            limit: 48
            deadband: 1
            on_delay: 2
            off_delay: 2
            priority: high
            suppress_when: {tag: running, equals: false}
          - {kind: hihi, limit: 70, priority: critical, latch: true}
          - {name: temperature_climb, kind: rate_of_change, limit: 0.5, priority: low}
      - {name: state, address: 5, type: uint16,
         alarms: [{kind: discrete, equals: 3, priority: high, message: Press jammed}]}
      - {name: guard_open, address: 6, type: bool,
         alarms: [{kind: discrete, equals: true, priority: critical}]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> PlantConfigError:
    with pytest.raises(PlantConfigError) as caught:
        load_plant_file(write(tmp_path, text))
    return caught.value


def line_of(text: str, marker: str) -> int:
    return text[: text.index(marker)].count("\n") + 1


def device(**changes: Any) -> ModbusDevice:
    temperature: dict[str, Any] = {"name": "temperature", "address": 3, "type": "float32"}
    temperature.update(changes)
    return ModbusDevice.model_validate(
        {
            "id": "press-1",
            "protocol": "modbus",
            "modbus": {"host": "plc"},
            "tags": [{"name": "running", "address": 0, "type": "bool"}, temperature],
        }
    )


def test_every_kind_of_condition_is_read_with_its_defaults(tmp_path: Path) -> None:
    press = load_plant_file(write(tmp_path, PLANT)).devices[0]
    names = {b.name: b for b in tag_conditions(press.tags)}
    assert list(names) == [
        "speed_deviation",
        "motor_temperature_hi",
        "motor_temperature_hihi",
        "temperature_climb",
        "state_discrete",
        "guard_open_discrete",
    ]
    hi = names["motor_temperature_hi"].condition
    assert (hi.limit, hi.deadband, hi.on_delay, hi.off_delay, hi.latch) == (48, 1, 2, 2, False)
    assert hi.priority is AlarmPriority.HIGH
    assert hi.suppress_when is not None
    assert (hi.suppress_when.tag, hi.suppress_when.equals) == ("running", False)
    assert names["motor_temperature_hihi"].condition.latch is True
    assert names["state_discrete"].condition.equals == 3
    assert names["guard_open_discrete"].condition.equals is True
    assert press.comm_loss_alarm is not None
    assert (press.comm_loss_alarm.priority, press.comm_loss_alarm.on_delay) == ("high", 5)


def test_messages_are_generated_unless_given(tmp_path: Path) -> None:
    press = load_plant_file(write(tmp_path, PLANT)).devices[0]
    messages = {b.name: condition_message(b.tag, b.condition) for b in tag_conditions(press.tags)}
    assert messages == {
        "speed_deviation": "speed deviates from speed_setpoint by more than 100 rpm",
        "motor_temperature_hi": "Motor winding temperature high: at or above 48 °C",
        "motor_temperature_hihi": "Motor winding temperature very high: at or above 70 °C",
        "temperature_climb": "Motor winding temperature changes faster than 0.5 °C/s",
        "state_discrete": "Press jammed",
        "guard_open_discrete": "guard_open is true",
    }


def test_a_device_without_alarms_has_none() -> None:
    press = device()
    assert press.comm_loss_alarm is None
    assert list(tag_conditions(press.tags)) == []


def test_hi_and_lo_limits_are_independent_conditions() -> None:
    # No ordering is enforced: a hi below a lo is the plant engineer's choice.
    press = device(
        alarms=[
            {"kind": "hi", "limit": 10, "priority": "low"},
            {"kind": "lo", "limit": 20, "priority": "low"},
            {"kind": "lolo", "limit": 30, "priority": "low"},
        ]
    )
    assert [b.name for b in tag_conditions(press.tags)] == [
        "temperature_hi",
        "temperature_lo",
        "temperature_lolo",
    ]


@pytest.mark.parametrize(
    ("condition", "field", "reason"),
    [
        ({"kind": "hi", "priority": "high"}, "limit", "a hi alarm needs a limit"),
        ({"kind": "lolo", "priority": "high"}, "limit", "a lolo alarm needs a limit"),
        (
            {"kind": "deviation", "limit": 5, "priority": "high"},
            "setpoint_tag",
            "needs the setpoint tag",
        ),
        ({"kind": "deviation", "setpoint_tag": "x", "priority": "high"}, "limit", "needs a limit"),
        (
            {"kind": "deviation", "setpoint_tag": "x", "limit": -1, "priority": "high"},
            "limit",
            "cannot be negative",
        ),
        ({"kind": "rate_of_change", "limit": 0, "priority": "high"}, "limit", "above 0"),
        ({"kind": "discrete", "priority": "high"}, "equals", "needs the abnormal value"),
        (
            {"kind": "discrete", "equals": 1, "limit": 3, "priority": "high"},
            "limit",
            "has no limit",
        ),
        (
            {"kind": "discrete", "equals": 1, "deadband": 1, "priority": "high"},
            "deadband",
            "no deadband",
        ),
        ({"kind": "hi", "limit": 1, "equals": 1, "priority": "high"}, "equals", "only a discrete"),
        (
            {"kind": "hi", "limit": 1, "setpoint_tag": "running", "priority": "high"},
            "setpoint_tag",
            "only a deviation",
        ),
        ({"kind": "hi", "limit": 1, "deadband": -1, "priority": "high"}, "deadband", ""),
        ({"kind": "hi", "limit": 1, "on_delay": -1, "priority": "high"}, "on_delay", ""),
        ({"kind": "hi", "limit": 1, "off_delay": -1, "priority": "high"}, "off_delay", ""),
        ({"kind": "hi", "limit": 1}, "priority", "required"),
        ({"kind": "hi", "limit": 1, "priority": "urgent"}, "priority", ""),
        ({"kind": "high", "limit": 1, "priority": "high"}, "kind", ""),
        ({"kind": "hi", "limit": 1, "priority": "high", "colour": "red"}, "colour", ""),
        ({"kind": "hi", "limit": 1, "priority": "high", "name": "a b"}, "name", "pattern"),
        (
            {"kind": "rate_of_change", "limit": 1, "deadband": 2, "priority": "high"},
            "deadband",
            "larger than the limit",
        ),
    ],
)
def test_a_condition_is_refused_at_its_field(
    condition: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        device(alarms=[condition])
    first = caught.value.errors()[0]
    assert first["loc"] == ("tags", 1, "alarms", 0, field)
    assert reason in first["msg"]


@pytest.mark.parametrize(
    ("replace", "by", "field", "reason"),
    [
        (
            "suppress_when: {tag: running, equals: false}",
            "suppress_when: {tag: runing, equals: false}",
            "devices[press-1].tags[motor_temperature].alarms[0].suppress_when.tag",
            "no tag 'runing' in device press-1",
        ),
        (
            "suppress_when: {tag: running, equals: false}",
            "suppress_when: {tag: running, equals: 0}",
            "devices[press-1].tags[motor_temperature].alarms[0].suppress_when.equals",
            "'running' is a bool: the value must be true or false",
        ),
        (
            "setpoint_tag: speed_setpoint",
            "setpoint_tag: speed_set",
            "devices[press-1].tags[speed].alarms[0].setpoint_tag",
            "no tag 'speed_set' in device press-1",
        ),
        (
            "setpoint_tag: speed_setpoint",
            "setpoint_tag: speed",
            "devices[press-1].tags[speed].alarms[0].setpoint_tag",
            "cannot be the tag itself",
        ),
        (
            "setpoint_tag: speed_setpoint",
            "setpoint_tag: running",
            "devices[press-1].tags[speed].alarms[0].setpoint_tag",
            "is a bool",
        ),
        (
            "name: temperature_climb",
            "name: motor_temperature_hi",
            "devices[press-1].tags[motor_temperature].alarms[motor_temperature_hi].name",
            "duplicate alarm name 'motor_temperature_hi' in device press-1",
        ),
        (
            "name: temperature_climb",
            "name: comm_loss",
            "devices[press-1].tags[motor_temperature].alarms[comm_loss].name",
            "the communication-loss alarm's",
        ),
        (
            "equals: true, priority: critical",
            "equals: 1, priority: critical",
            "devices[press-1].tags[guard_open].alarms[0].equals",
            "'guard_open' is a bool",
        ),
        (
            "equals: 3, priority: high",
            "equals: true, priority: high",
            "devices[press-1].tags[state].alarms[0].equals",
            "'state' is a number",
        ),
        (
            "kind: discrete, equals: true, priority: critical",
            "kind: hi, limit: 1, priority: critical",
            "devices[press-1].tags[guard_open].alarms[0].kind",
            "a bool tag can only have discrete alarms",
        ),
        (
            "            deadband: 1\n",
            "            deadband: -1\n",
            "devices[press-1].tags[motor_temperature].alarms[0].deadband",
            "greater than or equal to 0",
        ),
        (
            "comm_loss_alarm: {priority: high, on_delay: 5}",
            "comm_loss_alarm: {priority: high, on_delay: -5}",
            "devices[press-1].comm_loss_alarm.on_delay",
            "greater than or equal to 0",
        ),
        (
            "comm_loss_alarm: {priority: high, on_delay: 5}",
            "comm_loss_alarm: {on_delay: 5}",
            "devices[press-1].comm_loss_alarm.priority",
            "required",
        ),
    ],
)
def test_plant_file_errors_in_alarms_name_the_file_line_and_field(
    tmp_path: Path, replace: str, by: str, field: str, reason: str
) -> None:
    assert replace in PLANT
    text = PLANT.replace(replace, by)
    problem = refusal(tmp_path, text)
    assert problem.field == field
    assert reason in problem.reason
    assert problem.path == str(tmp_path / "plant.yaml")
    assert problem.line == line_of(text, by)  # each replacement is on the field's line


def test_a_missing_limit_points_at_the_alarm(tmp_path: Path) -> None:
    text = PLANT.replace("            limit: 48\n", "")
    problem = refusal(tmp_path, text)
    assert problem.field == "devices[press-1].tags[motor_temperature].alarms[0].limit"
    assert problem.reason.endswith("a hi alarm needs a limit")
    assert problem.line == line_of(text, "- kind: hi")


def test_an_unknown_suppression_tag_points_at_its_line(tmp_path: Path) -> None:
    text = PLANT.replace("{tag: running, equals: false}", "{tag: runing, equals: false}")
    problem = refusal(tmp_path, text)
    assert problem.line == line_of(text, "suppress_when:")
    assert str(problem).startswith(
        f"{tmp_path / 'plant.yaml'}:{problem.line}: "
        "devices[press-1].tags[motor_temperature].alarms[0].suppress_when.tag: "
    )


def test_names_default_to_the_tag_and_the_kind() -> None:
    press = device(alarms=[{"kind": "hi", "limit": 1, "priority": "low"}])
    (bound,) = tag_conditions(press.tags)
    assert condition_name("temperature", bound.condition) == bound.name == "temperature_hi"


def test_two_unnamed_conditions_of_one_kind_collide() -> None:
    with pytest.raises(ValidationError, match="duplicate alarm name 'temperature_hi'"):
        device(
            alarms=[
                {"kind": "hi", "limit": 1, "priority": "low"},
                {"kind": "hi", "limit": 2, "priority": "high"},
            ]
        )


def test_the_device_fingerprint_follows_its_alarms(tmp_path: Path) -> None:
    # A changed alarm restarts the device's supervisor when the plant file is reloaded.
    before = load_plant_file(write(tmp_path, PLANT)).device_fingerprints()
    after = load_plant_file(
        write(tmp_path, PLANT.replace("limit: 48", "limit: 50"))
    ).device_fingerprints()
    assert before["press-1"] != after["press-1"]
