"""Every change of the plant's devices is an event: added, removed, changed, and refused blocks."""

from __future__ import annotations

from datetime import timedelta

from domain.plant_configuration import DevicesChange
from tests.unit.domain.plant import T0, make_app

SOURCE = "config/plant.yaml"


def test_the_first_start_records_every_device_as_added() -> None:
    app = make_app()
    change = app.record_plant_configuration(
        plant_id="demo", devices={"press-1": "aa", "oven-1": "bb"}, source=SOURCE,
        problems=[], actor="plantcore", at=T0,
    )  # fmt: skip
    assert change == DevicesChange(added=("oven-1", "press-1"), removed=(), changed=())
    configuration = app.plant_configuration("demo")
    assert configuration is not None
    assert configuration.devices == {"press-1": "aa", "oven-1": "bb"}


def test_only_differences_are_recorded_and_each_says_what_changed() -> None:
    app = make_app()
    record = app.record_plant_configuration
    record(plant_id="demo", devices={"a": "1", "b": "2", "c": "3"}, source=SOURCE,
           problems=[], actor="plantcore", at=T0)  # fmt: skip
    unchanged = record(plant_id="demo", devices={"a": "1", "b": "2", "c": "3"}, source=SOURCE,
                       problems=[], actor="plantcore", at=T0 + timedelta(seconds=1))  # fmt: skip
    assert unchanged is None

    change = record(
        plant_id="demo", devices={"a": "1", "b": "9", "d": "4"}, source=SOURCE,
        problems=["plant.yaml:12: devices[e].tags: too short"], actor="plantcore",
        at=T0 + timedelta(seconds=2),
    )  # fmt: skip

    assert change == DevicesChange(added=("d",), removed=("c",), changed=("b",))
    configuration = app.plant_configuration("demo")
    assert configuration is not None
    events = list(app.events.get(configuration.id))
    assert [type(e).__name__ for e in events] == [
        "HistoryStarted",
        "DevicesChanged",
        "DevicesChanged",
    ]
    last = events[-1]
    assert last.problems == ["plant.yaml:12: devices[e].tags: too short"]  # type: ignore[attr-defined]
    assert last.source == SOURCE  # type: ignore[attr-defined]


def test_a_refused_block_alone_is_a_change_worth_recording() -> None:
    app = make_app()
    devices = {"a": "1"}
    app.record_plant_configuration(plant_id="demo", devices=devices, source=SOURCE,
                                   problems=[], actor="plantcore", at=T0)  # fmt: skip
    refused = app.record_plant_configuration(
        plant_id="demo", devices=devices, source=SOURCE, problems=["bad block"],
        actor="plantcore", at=T0,
    )  # fmt: skip
    assert refused == DevicesChange(added=(), removed=(), changed=())


def test_plants_keep_separate_histories() -> None:
    app = make_app()
    for plant in ("line-1", "line-2"):
        app.record_plant_configuration(plant_id=plant, devices={"a": plant}, source=SOURCE,
                                       problems=[], actor="plantcore", at=T0)  # fmt: skip
    first, second = app.plant_configuration("line-1"), app.plant_configuration("line-2")
    assert first is not None
    assert second is not None
    assert first.id != second.id
    assert first.devices == {"a": "line-1"}
