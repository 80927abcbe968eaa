"""GraphiQL and introspection: off for ``plantcore run`` unless set, on for the demo unless set."""

from __future__ import annotations

import pytest

from api.secrets import generate_key
from plantcore.demo import explorable
from plantcore.runtime import runtime_config
from plantcore.settings import Settings
from plantfile.loader import load_plant_file

PLANT = load_plant_file("config/demo-plant.yaml")


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTCORE_SECRETS_KEY", generate_key())
    for name in ("PLANTCORE_GRAPHIQL", "PLANTCORE_INTROSPECTION"):
        monkeypatch.delenv(name, raising=False)


def test_plantcore_run_serves_neither_unless_set() -> None:
    config = runtime_config(Settings(), plant=PLANT)
    assert (config.graphiql, config.introspection) == (False, False)


@pytest.mark.parametrize("name", ["graphiql", "introspection"])
def test_each_is_turned_on_by_its_own_setting(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"PLANTCORE_{name.upper()}", "true")
    config = runtime_config(Settings(), plant=PLANT)
    assert {"graphiql": config.graphiql, "introspection": config.introspection} == {
        "graphiql": name == "graphiql",
        "introspection": name == "introspection",
    }


def test_the_demo_serves_both_unless_a_setting_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = runtime_config(explorable(Settings()), plant=PLANT)
    assert (demo.graphiql, demo.introspection) == (True, True)
    monkeypatch.setenv("PLANTCORE_INTROSPECTION", "false")
    told = runtime_config(explorable(Settings()), plant=PLANT)
    assert (told.graphiql, told.introspection) == (True, False)
