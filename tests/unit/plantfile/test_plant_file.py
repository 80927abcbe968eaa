from __future__ import annotations

from pathlib import Path

import pytest

from plantfile.loader import PlantConfigError, load_plant_file, read_plant_file

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
