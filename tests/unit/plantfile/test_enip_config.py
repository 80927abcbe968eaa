from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import ValidationError

from plantfile.protocols.enip import (
    LOGIX_TYPES,
    EnipConnection,
    EnipDevice,
    EnipTag,
    check_declarations,
    declared_path,
)
from plantfile.tags import DataType
from simulators.enip_server import PRESS_TAGS


def device(*tags: dict[str, Any], **enip: Any) -> EnipDevice:
    return EnipDevice.model_validate(
        {
            "id": "press-1",
            "protocol": "enip",
            "enip": {"host": "10.0.0.5", **enip},
            "tags": list(tags) or [{"name": "speed", "tag": "Press.Speed", "type": "float32"}],
        }
    )


def tag(logix_name: str, data_type: str = "int32", name: str = "t") -> dict[str, Any]:
    return {"name": name, "tag": logix_name, "type": data_type}


def test_defaults_follow_the_seed() -> None:
    connection = device().enip
    assert (connection.port, connection.slot, connection.timeout_seconds) == (44818, 0, 2.0)
    assert connection.path == "10.0.0.5:44818/0"
    assert EnipConnection(host="plc-7", port=2222, slot=3).path == "plc-7:2222/3"


@pytest.mark.parametrize(
    ("data_type", "logix_type"),
    [
        ("bool", "BOOL"),
        ("int8", "SINT"),
        ("int16", "INT"),
        ("int32", "DINT"),
        ("uint8", "USINT"),
        ("uint16", "UINT"),
        ("uint32", "UDINT"),
        ("float32", "REAL"),
        ("float64", "LREAL"),
    ],
)
def test_every_data_type_has_its_logix_type(data_type: DataType, logix_type: str) -> None:
    assert EnipTag.model_validate(tag("Counts", data_type)).logix_type == logix_type


def test_the_type_map_covers_every_data_type() -> None:
    assert set(LOGIX_TYPES) == set(get_args(DataType))


@pytest.mark.parametrize(
    "logix_name",
    [
        "Speed",
        "_Local",
        "Press.Speed",
        "Speeds[3]",
        "Grid[1,2]",
        "Cube[1,2,3].Value",
        "Line[2].Press.Rolls[0].Speed",
        "Program:MainProgram.Count",
        "A" * 40,
    ],
)
def test_logix_tag_names_are_accepted(logix_name: str) -> None:
    assert EnipTag.model_validate(tag(logix_name)).tag == logix_name


@pytest.mark.parametrize(
    "logix_name",
    [
        "",
        "1Speed",
        "Press..Speed",
        "Press.",
        ".Speed",
        "Status.3",  # a bit of an integer: declare the integer instead
        "Speeds[a]",
        "Speeds[]",
        "Speeds[1,2,3,4]",
        "Press Speed",
        "Press-Speed",
        "Program:.Count",
        "Program:Main",
        "A" * 41,
        "Speed;DROP",
    ],
)
def test_other_names_are_refused(logix_name: str) -> None:
    with pytest.raises(ValidationError, match="tag"):
        EnipTag.model_validate(tag(logix_name))


@pytest.mark.parametrize(
    ("enip", "field"),
    [
        ({"host": "fe80::1"}, "host"),
        ({"host": "10.0.0.5/1"}, "host"),
        ({"host": ""}, "host"),
        ({"port": 0}, "port"),
        ({"port": 65535}, "port"),
        ({"slot": -1}, "slot"),
        ({"slot": 17}, "slot"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"rack": 0}, "rack"),
    ],
)
def test_the_connection_block_is_checked(enip: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        device(**enip)
    assert field in {str(part) for error in caught.value.errors() for part in error["loc"]}


def test_a_tag_needs_its_logix_name_and_no_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="tag"):
        EnipTag.model_validate({"name": "t", "type": "int32"})
    with pytest.raises(ValidationError, match="address"):
        EnipTag.model_validate({**tag("Speed"), "address": 3})


def test_models_are_frozen() -> None:
    config = device()
    with pytest.raises(ValidationError):
        config.enip.slot = 2  # type: ignore[misc]


def test_declared_paths_drop_indices_and_case() -> None:
    assert declared_path("Line[2].Press.Rolls[0,1].Speed") == "line.press.rolls.speed"
    assert declared_path("Program:Main.Count") == "program:main.count"


def test_elements_of_one_array_share_their_type() -> None:
    config = device(tag("Speeds[1]", name="a"), tag("Speeds[2]", name="b"))
    assert check_declarations(config.tags) == {"speeds": "DINT"}
    with pytest.raises(ValidationError, match="declared both DINT and REAL"):
        device(tag("Speeds[1]", name="a"), tag("Speeds[2]", "float32", name="b"))


def test_one_controller_tag_has_one_type_whatever_the_case() -> None:
    with pytest.raises(ValidationError, match="declared both"):
        device(tag("Press.Speed", name="a"), tag("press.speed", "int16", name="b"))


def test_a_tag_is_not_both_a_value_and_a_structure() -> None:
    with pytest.raises(ValidationError, match=r"press is declared DINT but press\.speed"):
        device(tag("Press", name="a"), tag("Press.Speed", name="b"))
    with pytest.raises(ValidationError, match="is its member"):
        device(tag("Program:Main.Press", name="a"), tag("Program:Main.Press.Speed", name="b"))
    # A program name is a scope, not a tag: its tags are not its members.
    config = device(tag("Program:Main.Press", name="a"), tag("Program:Main.Count", name="b"))
    assert len(config.tags) == 2


def test_tag_names_stay_unique() -> None:
    with pytest.raises(ValidationError, match="duplicate tag name"):
        device(tag("Press.Speed", name="a"), tag("Press.Count", name="a"))


def test_the_simulated_press_is_a_valid_device() -> None:
    config = device(*(plc.tag.model_dump() for plc in PRESS_TAGS))
    assert [t.name for t in config.tags] == [
        "running",
        "speed_setpoint",
        "speed",
        "motor_temperature",
        "produced_count",
    ]
    writable = {t.name for t in config.tags if t.writable}
    assert writable == {"running", "speed_setpoint"}
