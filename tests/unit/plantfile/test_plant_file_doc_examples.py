"""Every device example of docs/plant-file.md is a device block the models accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from plantfile.plant import AnyDevice

PLANT_FILE_MD = Path(__file__).resolve().parents[3] / "docs" / "plant-file.md"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_DEVICE: TypeAdapter[AnyDevice] = TypeAdapter(AnyDevice)


def device_examples() -> list[Any]:
    """The examples that are whole device blocks: a list item with an id."""
    blocks = _YAML_BLOCK.findall(PLANT_FILE_MD.read_text(encoding="utf-8"))
    examples = [yaml.safe_load(block) for block in blocks if block.startswith("  - id: ")]
    return [device for example in examples for device in example]


def test_the_page_has_a_device_example_of_every_protocol() -> None:
    protocols = {example["protocol"] for example in device_examples()}
    assert protocols == {"modbus", "opcua", "mqtt", "s7", "enip"}


@pytest.mark.parametrize(
    "example", device_examples(), ids=lambda example: f"{example['id']}-{example['protocol']}"
)
def test_a_device_example_is_valid(example: Any) -> None:
    assert _DEVICE.validate_python(example).id == example["id"]
