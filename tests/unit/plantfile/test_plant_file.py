from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from plantfile.loader import PlantConfigError, load_plant_file, read_plant_file
from plantfile.plant import PlantConfig, Reconnect, reconnect_of

VALID = """
plant_id: 1
devices:
  - id: press-1
    protocol: modbus
    modbus: {host: 127.0.0.1}
    tags:
      - {name: speed, address: 2, type: uint16, unit: rpm}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_seed(tmp_path: Path) -> None:
    plant = load_plant_file(write(tmp_path, VALID))
    assert plant.plant_id == "1"
    assert plant.poll_seconds == 1.0
    assert plant.max_consecutive_fails == 10
    assert plant.force_reconnect_every_sec is None
    device = plant.devices[0]
    assert (device.modbus.port, device.modbus.device_id, device.modbus.timeout_seconds) == (
        502,
        1,
        2.0,
    )
    assert device.tags[0].area == "holding"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (VALID.replace("id: press-1", "id: press.1"), "devices[press.1].id", "pattern"),
        (VALID.replace("type: uint16", "type: uint64"), "devices[press-1].tags[speed].type", ""),
        (
            VALID.replace("type: uint16", "type: uint8"),
            "devices[press-1].tags[speed]",
            "no Modbus register layout",
        ),
        (
            VALID.replace("host: 127.0.0.1", "host: 127.0.0.1, port: 0"),
            "devices[press-1].modbus.port",
            "greater",
        ),
        (
            VALID.replace("unit: rpm}", "unit: rpm, writable: true}"),
            "devices[press-1].tags[speed]",
            "needs both low and high",
        ),
        (
            VALID.replace("unit: rpm}", "unit: rpm, low: 5, high: 1}"),
            "devices[press-1].tags[speed]",
            "above high",
        ),
        (VALID + "      - {name: speed, address: 3, type: int16}\n", "devices[press-1]", "speed"),
        (VALID.replace("protocol: modbus", "protocol: profibus"), "devices[press-1].protocol", ""),
        (VALID.replace("poll_seconds", "x") + "poll_seconds: 0\n", "poll_seconds", "greater than"),
        (VALID.replace("host: 127.0.0.1", "hots: 127.0.0.1"), "devices[press-1].modbus.host", ""),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PlantConfigError) as caught:
        load_plant_file(path)
    assert caught.value.path == str(path)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_duplicate_device_ids_are_refused(tmp_path: Path) -> None:
    device = VALID.split("devices:\n")[1]
    with pytest.raises(PlantConfigError, match="duplicate device id") as caught:
        load_plant_file(write(tmp_path, VALID + device))
    assert caught.value.field == "devices[press-1].id"
    assert caught.value.line == VALID.count("\n") + 1  # the second block, not the first


def line_of(text: str, marker: str) -> int:
    return text[: text.index(marker)].count("\n") + 1


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        (VALID.replace("host: 127.0.0.1", "host: 127.0.0.1, port: 0"), "port: 0"),
        (VALID.replace("unit: rpm}", "unit: rpm, low: 5, high: 1}"), "{name: speed"),
        (VALID.replace("protocol: modbus", "protocol: profibus"), "protocol: profibus"),
        (VALID.replace("poll_seconds", "x") + "poll_seconds: 0\n", "poll_seconds: 0"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, marker: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PlantConfigError) as caught:
        load_plant_file(path)
    assert caught.value.line == line_of(text, marker)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")


def test_one_bad_device_is_left_out_and_the_others_run(tmp_path: Path) -> None:
    bad = "  - {id: oven-1, protocol: modbus, modbus: {host: oven}, tags: []}\n"
    loaded = read_plant_file(write(tmp_path, VALID + bad))
    assert [device.id for device in loaded.plant.devices] == ["press-1"]
    (problem,) = loaded.problems
    assert (problem.field, problem.line) == ("devices[oven-1].tags", VALID.count("\n") + 1)
    assert "at least 1 item" in problem.reason


def test_a_bad_plant_wide_key_fails_the_whole_file(tmp_path: Path) -> None:
    with pytest.raises(PlantConfigError, match="max_consecutive_fails"):
        read_plant_file(write(tmp_path, VALID + "max_consecutive_fails: 0\n"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [("plant_id: [unclosed", "not valid YAML"), ("- a list", "must be a mapping")],
)
def test_unreadable_files_are_named(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(PlantConfigError, match=reason):
        load_plant_file(write(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(PlantConfigError, match="cannot read"):
        load_plant_file(tmp_path / "nope.yaml")


def with_device_keys(text: str, keys: str) -> str:
    """``text`` with ``keys`` (``key: value`` lines) added to the press-1 block."""
    return text.replace("    protocol: modbus\n", f"    protocol: modbus\n{keys}", 1)


def test_reconnect_defaults_to_the_seeds_fixed_five_seconds(tmp_path: Path) -> None:
    plant = load_plant_file(write(tmp_path, VALID))
    assert (plant.reconnect_delay_seconds, plant.reconnect_max_seconds) == (5.0, None)
    assert reconnect_of(plant, plant.devices[0]) == Reconnect(delay=5.0, longest=5.0)


@pytest.mark.parametrize(
    ("plant_keys", "device_keys", "expected"),
    [
        ("reconnect_delay_seconds: 2\n", "", Reconnect(2.0, 2.0)),  # the maximum is the delay
        ("reconnect_max_seconds: 60\n", "", Reconnect(5.0, 60.0)),
        ("reconnect_delay_seconds: 1\nreconnect_max_seconds: 30\n", "", Reconnect(1.0, 30.0)),
        ("", "    reconnect_delay_seconds: 10\n", Reconnect(10.0, 10.0)),
        ("reconnect_max_seconds: 30\n", "    reconnect_delay_seconds: 10\n", Reconnect(10.0, 30.0)),
        (
            "reconnect_max_seconds: 30\n",
            "    reconnect_delay_seconds: 0.5\n    reconnect_max_seconds: 4\n",
            Reconnect(0.5, 4.0),
        ),
    ],
)
def test_a_device_s_reconnect_keys_override_the_plant_s(
    tmp_path: Path, plant_keys: str, device_keys: str, expected: Reconnect
) -> None:
    plant = load_plant_file(write(tmp_path, with_device_keys(VALID, device_keys) + plant_keys))
    assert reconnect_of(plant, plant.devices[0]) == expected


@pytest.mark.parametrize(
    ("plant_keys", "field", "reason"),
    [
        ("reconnect_delay_seconds: 0\n", "reconnect_delay_seconds", "greater than 0"),
        ("reconnect_max_seconds: -1\n", "reconnect_max_seconds", "greater than 0"),
        (
            "reconnect_delay_seconds: 10\nreconnect_max_seconds: 4\n",
            "reconnect_max_seconds",
            "reconnect_max_seconds 4 s is shorter than reconnect_delay_seconds 10 s",
        ),
    ],
)
def test_bad_plant_wide_reconnect_keys_fail_the_whole_file(
    tmp_path: Path, plant_keys: str, field: str, reason: str
) -> None:
    text = VALID + plant_keys
    with pytest.raises(PlantConfigError) as caught:
        read_plant_file(write(tmp_path, text))
    assert (caught.value.field, caught.value.line) == (field, line_of(text, field))
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("plant_keys", "device_keys", "key", "reason"),
    [
        ("", "    reconnect_delay_seconds: 0\n", "reconnect_delay_seconds", "greater than 0"),
        (
            "",
            "    reconnect_delay_seconds: 10\n    reconnect_max_seconds: 4\n",
            "reconnect_max_seconds",
            "reconnect_max_seconds 4 s is shorter than reconnect_delay_seconds 10 s",
        ),
        (
            "reconnect_max_seconds: 8\n",
            "    reconnect_delay_seconds: 10\n",
            "reconnect_delay_seconds",
            "10 s is longer than the plant's reconnect_max_seconds 8 s",
        ),
        (
            "",
            "    reconnect_max_seconds: 2\n",
            "reconnect_max_seconds",
            "2 s is shorter than the plant's reconnect_delay_seconds 5 s",
        ),
    ],
)
def test_a_device_whose_reconnect_keys_do_not_fit_is_left_out_saying_why(
    tmp_path: Path, plant_keys: str, device_keys: str, key: str, reason: str
) -> None:
    other = (
        "  - {id: oven-1, protocol: modbus, modbus: {host: oven},"
        " tags: [{name: t, address: 0, type: uint16}]}\n"
    )
    text = with_device_keys(VALID, device_keys) + other + plant_keys
    loaded = read_plant_file(write(tmp_path, text))

    assert [device.id for device in loaded.plant.devices] == ["oven-1"]
    assert loaded.rejected_ids == {"press-1"}
    (problem,) = loaded.problems
    assert (problem.field, problem.line) == (f"devices[press-1].{key}", line_of(text, f"    {key}"))
    assert reason in problem.reason


def test_a_plant_built_in_code_is_held_to_the_same_reconnect_rule() -> None:
    device = {
        "id": "press-1",
        "protocol": "modbus",
        "modbus": {"host": "plc"},
        "tags": [{"name": "t", "address": 0, "type": "uint16"}],
        "reconnect_delay_seconds": 10,
    }
    with pytest.raises(ValidationError, match="device press-1: reconnect_delay_seconds 10 s"):
        PlantConfig.model_validate(
            {"plant_id": "p", "reconnect_max_seconds": 8, "devices": [device]}
        )
