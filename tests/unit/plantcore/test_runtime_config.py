"""The settings reach the runtime: every PLANTCORE_* knob the README documents has an effect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from devices.plant_file import load_plant_file
from plantcore.runtime import runtime_config
from plantcore.settings import Settings

PLANT = load_plant_file("config/demo-plant.yaml")


def test_the_confirmation_window_and_projection_start_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTCORE_COMMAND_CONFIRM_SECONDS", "45")
    monkeypatch.setenv("PLANTCORE_PROJECTIONS_START", "new")
    monkeypatch.setenv("PLANTCORE_CONSUMER_PREFIX", "line2-")

    config = runtime_config(Settings(), plant=PLANT)

    assert config.confirm_window == timedelta(seconds=45)
    assert config.projections_start == "new"
    assert config.consumer_prefix == "line2-"


def test_the_defaults_keep_thirty_seconds_and_catch_up_from_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("COMMAND_CONFIRM_SECONDS", "PROJECTIONS_START"):
        monkeypatch.delenv(f"PLANTCORE_{name}", raising=False)

    config = runtime_config(Settings(), plant=PLANT)

    assert config.confirm_window == timedelta(seconds=30)
    assert config.projections_start == "retained"


@pytest.mark.parametrize(
    ("name", "value"),
    [("PROJECTIONS_START", "yesterday"), ("COMMAND_CONFIRM_SECONDS", "2")],
)
def test_a_bad_value_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"PLANTCORE_{name}", value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
