from __future__ import annotations

import math

import pytest

from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.errors import NotWritable, OutOfLimits, UnknownDevice, UnknownTag, ValueNotNumeric
from tests.unit.domain.plant import make_catalog


@pytest.fixture
def catalog() -> TagCatalog:
    return make_catalog()


def test_lookup_devices_and_tags(catalog: TagCatalog) -> None:
    assert catalog.devices() == ["pump1", "valve1"]
    assert [t.tag for t in catalog.tags("pump1")] == ["flow", "running", "speed"]
    assert catalog.lookup("valve1", "position").unit == "%"


def test_unknown_device_and_tag(catalog: TagCatalog) -> None:
    with pytest.raises(UnknownDevice) as device_error:
        catalog.tags("boiler")
    assert device_error.value.device == "boiler"
    with pytest.raises(UnknownDevice):
        catalog.lookup("boiler", "speed")
    with pytest.raises(UnknownTag) as tag_error:
        catalog.check_write("pump1", "torque", 1)
    assert (tag_error.value.device, tag_error.value.tag) == ("pump1", "torque")


def test_read_only_tag_refuses_even_a_good_value(catalog: TagCatalog) -> None:
    with pytest.raises(NotWritable) as exc:
        catalog.check_write("pump1", "flow", 10)
    assert (exc.value.device, exc.value.tag) == ("pump1", "flow")


@pytest.mark.parametrize("value", [0, 0.0, 3000, 3000.0, 1500, 1499.5])
def test_number_within_inclusive_limits(catalog: TagCatalog, value: float) -> None:
    assert catalog.check_write("pump1", "speed", value) == value


@pytest.mark.parametrize("value", [-0.001, 3000.0001, -1, 3001, 1e308])
def test_number_outside_limits(catalog: TagCatalog, value: float) -> None:
    with pytest.raises(OutOfLimits) as exc:
        catalog.check_write("pump1", "speed", value)
    assert (exc.value.value, exc.value.low, exc.value.high) == (value, 0, 3000)
    assert "[0, 3000]" in str(exc.value)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, True, False, "1500", "", None, [1500], {"v": 1}]
)
def test_number_tag_refuses_non_numbers(catalog: TagCatalog, value: object) -> None:
    with pytest.raises(ValueNotNumeric) as exc:
        catalog.check_write("pump1", "speed", value)
    assert exc.value.value is value


def test_integer_tag_accepts_integral_floats_as_ints(catalog: TagCatalog) -> None:
    checked = catalog.check_write("valve1", "position", 5.0)
    assert checked == 5
    assert type(checked) is int
    assert catalog.check_write("valve1", "position", 100) == 100


@pytest.mark.parametrize("value", [5.5, True, "5", math.nan])
def test_integer_tag_refuses_fractions_and_non_numbers(catalog: TagCatalog, value: object) -> None:
    with pytest.raises(ValueNotNumeric):
        catalog.check_write("valve1", "position", value)


def test_integer_tag_limits(catalog: TagCatalog) -> None:
    with pytest.raises(OutOfLimits):
        catalog.check_write("valve1", "position", 101)


@pytest.mark.parametrize("value", [True, False])
def test_bool_tag_accepts_booleans(catalog: TagCatalog, value: bool) -> None:
    assert catalog.check_write("pump1", "running", value) is value


@pytest.mark.parametrize("value", [1, 0, 1.0, "true", None])
def test_bool_tag_refuses_everything_else(catalog: TagCatalog, value: object) -> None:
    with pytest.raises(ValueNotNumeric, match="a boolean"):
        catalog.check_write("pump1", "running", value)


def test_unbounded_limits() -> None:
    catalog = TagCatalog(
        [TagLimits("d", "t", "", writable=True, kind=ValueKind.NUMBER, low=None, high=None)]
    )
    assert catalog.check_write("d", "t", -1e300) == -1e300


def test_a_tag_declared_twice_is_a_config_error() -> None:
    tag = TagLimits("d", "t", "", writable=True, kind=ValueKind.NUMBER, low=None, high=None)
    with pytest.raises(ValueError, match="declared twice"):
        TagCatalog([tag, tag])
