"""The alarm evaluator on its own: samples in, transitions out, on a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices.alarm_evaluator import AlarmEvaluator
from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    Quality,
    Sample,
    TagValue,
    TelemetryBatch,
)
from plantfile.protocols.modbus import ModbusDevice
from tests.unit.devices.fakes import FakeClock

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
BAD = object()  # a sample of bad quality


@dataclass(frozen=True)
class Held:
    """A bad sample holding the tag's last known value, as a supervisor sends while it
    cannot read the tag."""

    value: TagValue


HI: dict[str, Any] = {"kind": "hi", "limit": 48, "deadband": 1, "priority": "high"}


def press(
    temperature: list[dict[str, Any]] | None = None,
    *,
    speed: list[dict[str, Any]] | None = None,
    state: list[dict[str, Any]] | None = None,
    guard: list[dict[str, Any]] | None = None,
    comm_loss: dict[str, Any] | None = None,
) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {
            "id": "press-1",
            "protocol": "modbus",
            "area": "press-line",
            "modbus": {"host": "plc"},
            "comm_loss_alarm": comm_loss,
            "tags": [
                {"name": "running", "address": 0, "type": "bool"},
                {"name": "setpoint", "address": 1, "type": "uint16", "unit": "rpm"},
                {"name": "speed", "address": 2, "type": "uint16", "unit": "rpm",
                 "alarms": speed or []},
                {"name": "temperature", "address": 3, "type": "float32", "unit": "°C",
                 "alarms": temperature or []},
                {"name": "state", "address": 5, "type": "uint16", "alarms": state or []},
                {"name": "guard", "address": 6, "type": "bool", "alarms": guard or []},
            ],
        }
    )  # fmt: skip


class Rig:
    """An evaluator, its clock, and batches stamped at ``T0`` plus the clock's seconds."""

    def __init__(self, device: ModbusDevice) -> None:
        self.clock = FakeClock()
        self.evaluator = AlarmEvaluator(device, self.clock)

    def feed(self, at: float, **values: object) -> list[AlarmTransition]:
        """A batch at ``at`` seconds with these tags (``BAD`` for a bad sample, ``Held``
        for a bad one holding a value)."""
        self.clock.now = at
        ts = T0 + timedelta(seconds=at)
        samples = tuple(_sample(tag, value, ts) for tag, value in values.items())
        return self.evaluator.evaluate(TelemetryBatch("press-1", ts, samples))

    def tick(self, at: float) -> list[AlarmTransition]:
        self.clock.now = at
        return self.evaluator.tick()

    def connection(self, at: float, connected: bool) -> list[AlarmTransition]:
        self.clock.now = at
        return self.evaluator.connection(connected, T0 + timedelta(seconds=at))


def _sample(tag: str, value: object, ts: datetime) -> Sample:
    if value is BAD:
        return Sample(tag, None, Quality.BAD, "", ts)
    if isinstance(value, Held):
        earlier = ts - timedelta(seconds=30)
        return Sample(tag, value.value, Quality.BAD, "", ts, reason="comm_loss", value_ts=earlier)
    return Sample(tag, _tag_value(value), Quality.GOOD, "", ts)


def _tag_value(value: object) -> TagValue:
    assert value is None or isinstance(value, bool | int | float)
    return value


def states(transitions: list[AlarmTransition]) -> list[tuple[str, bool, bool]]:
    return [(t.condition, t.active, t.suppressed) for t in transitions]


def one(transitions: list[AlarmTransition]) -> AlarmTransition:
    assert len(transitions) == 1, transitions
    return transitions[0]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- limits and deadband -------------------------------------------------------------------


def test_the_first_good_value_announces_the_state_even_when_normal() -> None:
    rig = Rig(press([HI]))
    first = one(rig.feed(0, temperature=40.0))
    assert (first.active, first.suppressed, first.ts) == (False, False, at(0))
    assert rig.feed(1, temperature=41.0) == []


def test_hi_rises_at_the_limit_and_clears_only_below_limit_minus_deadband() -> None:
    rig = Rig(press([HI]))
    rig.feed(0, temperature=47.9)
    raised = one(rig.feed(1, temperature=48.0))
    assert raised == AlarmTransition(
        transition_id=raised.transition_id,
        device="press-1",
        condition="temperature_hi",
        kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH,
        area="press-line",
        tag="temperature",
        active=True,
        suppressed=False,
        latch=False,
        value=48.0,
        limit=48.0,
        message="temperature high: at or above 48 °C",
        ts=at(1),
    )
    assert len(raised.transition_id) == 32
    int(raised.transition_id, 16)
    assert rig.feed(2, temperature=47.5) == []
    assert rig.feed(3, temperature=47.0) == []  # limit - deadband still holds
    cleared = one(rig.feed(4, temperature=46.9))
    assert (cleared.active, cleared.value, cleared.ts) == (False, 46.9, at(4))
    assert cleared.transition_id != raised.transition_id
    # Normal again, it takes the limit itself to rise, not limit - deadband.
    assert rig.feed(5, temperature=47.5) == []
    assert one(rig.feed(6, temperature=48.5)).active


def test_lo_and_lolo_are_independent_conditions_with_their_own_deadband() -> None:
    rig = Rig(
        press(
            [
                {"kind": "lo", "limit": 10, "deadband": 2, "priority": "medium"},
                {"kind": "lolo", "limit": 5, "priority": "high"},
            ]
        )
    )
    assert states(rig.feed(0, temperature=12.0)) == [
        ("temperature_lo", False, False),
        ("temperature_lolo", False, False),
    ]
    assert states(rig.feed(1, temperature=10.0)) == [("temperature_lo", True, False)]
    assert states(rig.feed(2, temperature=4.0)) == [("temperature_lolo", True, False)]
    assert states(rig.feed(3, temperature=5.5)) == [("temperature_lolo", False, False)]
    assert rig.feed(4, temperature=12.0) == []  # lo: limit + deadband still holds
    assert states(rig.feed(5, temperature=12.1)) == [("temperature_lo", False, False)]


# -- delays --------------------------------------------------------------------------------


def test_a_spike_shorter_than_the_on_delay_raises_nothing() -> None:
    rig = Rig(press([{**HI, "on_delay": 2}]))
    rig.feed(0, temperature=40.0)
    assert rig.feed(1, temperature=55.0) == []
    assert rig.evaluator.next_due() == 3.0
    assert rig.feed(2, temperature=45.0) == []
    assert rig.evaluator.next_due() is None
    assert rig.tick(10) == []


def test_the_on_delay_fires_on_a_tick_without_a_new_sample() -> None:
    rig = Rig(press([{**HI, "on_delay": 2}]))
    rig.feed(0, temperature=40.0)
    assert rig.feed(1, temperature=50.0) == []
    assert rig.feed(2, temperature=51.0) == []
    assert rig.tick(2.9) == []
    raised = one(rig.tick(3.0))
    assert (raised.active, raised.ts, raised.value) == (True, at(3), 51.0)
    assert rig.evaluator.next_due() is None


def test_the_off_delay_restarts_when_the_value_returns_in_between() -> None:
    rig = Rig(press([{**HI, "off_delay": 2}]))
    rig.feed(0, temperature=50.0)  # the first state: active, at once (no on-delay)
    assert rig.feed(1, temperature=40.0) == []
    assert rig.feed(2, temperature=49.0) == []  # back above: the off-delay starts over
    assert rig.feed(3, temperature=40.0) == []
    assert rig.tick(4.9) == []
    cleared = one(rig.tick(5.0))
    assert (cleared.active, cleared.ts, cleared.value) == (False, at(5), 40.0)


def test_a_first_state_in_alarm_waits_for_the_on_delay() -> None:
    rig = Rig(press([{**HI, "on_delay": 2, "off_delay": 2}]))
    assert rig.feed(0, temperature=50.0) == []
    assert one(rig.tick(2)).active


# -- deviation, discrete, rate of change ---------------------------------------------------


def test_deviation_from_the_setpoint_tag_with_a_deadband() -> None:
    deviation = {
        "kind": "deviation", "setpoint_tag": "setpoint", "limit": 100, "deadband": 10,
        "priority": "medium",
    }  # fmt: skip
    rig = Rig(press(speed=[deviation]))
    assert states(rig.feed(0, setpoint=1500, speed=1450)) == [("speed_deviation", False, False)]
    raised = one(rig.feed(1, setpoint=1500, speed=1390))
    assert (raised.active, raised.value, raised.limit) == (True, 110.0, 100.0)
    assert raised.message == "speed deviates from setpoint by more than 100 rpm"
    assert rig.feed(2, setpoint=1500, speed=1405) == []  # 95: within the deadband
    assert not one(rig.feed(3, setpoint=1500, speed=1411)).active  # 89
    # A setpoint change alone raises it.
    assert one(rig.feed(4, setpoint=1700, speed=1500)).active
    # A setpoint of bad quality decides nothing.
    assert rig.feed(5, setpoint=BAD, speed=1700) == []


def test_discrete_on_a_bool_and_on_a_state_code() -> None:
    rig = Rig(
        press(
            guard=[{"kind": "discrete", "equals": True, "priority": "critical"}],
            state=[{"kind": "discrete", "equals": 3, "priority": "high", "name": "jammed"}],
        )
    )
    assert states(rig.feed(0, guard=False, state=1)) == [
        ("jammed", False, False),
        ("guard_discrete", False, False),
    ]
    raised = one(rig.feed(1, guard=True, state=1))
    assert (raised.condition, raised.active, raised.value, raised.limit) == (
        "guard_discrete",
        True,
        True,
        None,
    )
    assert raised.message == "guard is true"
    assert states(rig.feed(2, guard=True, state=3)) == [("jammed", True, False)]
    assert states(rig.feed(3, guard=False, state=2)) == [
        ("jammed", False, False),
        ("guard_discrete", False, False),
    ]


def test_rate_of_change_from_consecutive_good_samples() -> None:
    rig = Rig(press([{"kind": "rate_of_change", "limit": 0.5, "priority": "low"}]))
    assert rig.feed(0, temperature=20.0) == []  # one sample has no rate
    assert states(rig.feed(1, temperature=20.4)) == [("temperature_rate_of_change", False, False)]
    raised = one(rig.feed(2, temperature=21.0))
    assert (raised.active, raised.value, raised.limit) == (True, 0.6, 0.5)
    assert raised.message == "temperature changes faster than 0.5 °C/s"
    assert not one(rig.feed(3, temperature=21.3)).active
    # Falling as fast counts too; the rate is per second of the samples' timestamps.
    assert one(rig.feed(5, temperature=19.0)).active  # -1.15 °C/s


def test_a_rate_starts_again_after_a_bad_sample() -> None:
    rig = Rig(press([{"kind": "rate_of_change", "limit": 0.5, "priority": "low"}]))
    rig.feed(0, temperature=20.0)
    rig.feed(1, temperature=20.1)
    assert rig.feed(2, temperature=BAD) == []
    # 30 °C up since the last good sample, but that sample is not consecutive.
    assert rig.feed(3, temperature=50.0) == []
    assert rig.feed(4, temperature=50.2) == []


# -- suppression ---------------------------------------------------------------------------


def test_suppression_by_design_is_announced_when_it_starts_and_when_it_stops() -> None:
    hi = {**HI, "suppress_when": {"tag": "running", "equals": False}}
    rig = Rig(press([hi]))
    assert states(rig.feed(0, running=True, temperature=40.0)) == [("temperature_hi", False, False)]
    suppressed = one(rig.feed(1, running=False, temperature=40.0))
    assert (suppressed.active, suppressed.suppressed, suppressed.ts) == (False, True, at(1))
    # Still evaluated while suppressed: the alarm goes active, hidden.
    assert states(rig.feed(2, running=False, temperature=50.0)) == [("temperature_hi", True, True)]
    assert states(rig.feed(3, running=True, temperature=50.0)) == [("temperature_hi", True, False)]
    # Both changing in one batch make one transition.
    assert states(rig.feed(4, running=False, temperature=40.0)) == [("temperature_hi", False, True)]


def test_an_unknown_suppression_keeps_the_last_one() -> None:
    hi = {**HI, "suppress_when": {"tag": "running", "equals": False}}
    rig = Rig(press([hi]))
    rig.feed(0, running=False, temperature=40.0)
    assert rig.feed(1, running=BAD, temperature=40.0) == []
    assert states(rig.feed(2, running=BAD, temperature=50.0)) == [("temperature_hi", True, True)]


# -- quality -------------------------------------------------------------------------------


def test_bad_quality_neither_raises_nor_clears() -> None:
    rig = Rig(press([{**HI, "off_delay": 1}]))
    assert rig.feed(0, temperature=BAD) == []  # nothing known yet: nothing announced
    assert one(rig.feed(1, temperature=50.0)).active
    assert rig.feed(2, temperature=BAD) == []
    assert rig.tick(10) == []
    assert rig.feed(11, temperature=50.0) == []  # still active: no transition
    assert rig.feed(12, temperature=40.0) == []
    assert rig.feed(12.5, temperature=BAD) == []
    assert rig.tick(20) == []  # the off-delay stopped with the bad sample
    assert rig.feed(21, temperature=40.0) == []  # and starts again from here
    assert not one(rig.tick(22)).active


def test_a_held_value_is_not_fresh_it_neither_raises_clears_nor_suppresses() -> None:
    hi = {**HI, "suppress_when": {"tag": "running", "equals": False}}
    rig = Rig(press([hi]))
    rig.feed(0, running=True, temperature=40.0)
    assert rig.feed(1, running=Held(False), temperature=Held(50.0)) == []
    assert states(rig.feed(2, running=True, temperature=50.0)) == [("temperature_hi", True, False)]
    assert rig.feed(3, temperature=Held(40.0)) == []
    assert rig.tick(10) == []


def test_an_on_delay_interrupted_by_a_bad_sample_starts_over() -> None:
    rig = Rig(press([{**HI, "on_delay": 2}]))
    rig.feed(0, temperature=40.0)
    rig.feed(1, temperature=50.0)
    rig.feed(2, temperature=BAD)
    assert rig.feed(2.5, temperature=50.0) == []
    assert rig.tick(3) == []
    assert rig.tick(4.4) == []
    raised = one(rig.tick(4.5))
    assert (raised.active, raised.ts) == (True, at(4.5))


def test_tags_missing_from_a_batch_are_not_evaluated() -> None:
    rig = Rig(press([HI]))
    rig.feed(0, temperature=50.0)
    assert rig.feed(1, running=True) == []


# -- communication loss --------------------------------------------------------------------


def test_comm_loss_after_its_delay_and_back_at_once() -> None:
    rig = Rig(press(comm_loss={"priority": "critical", "on_delay": 5}))
    assert rig.evaluator.conditions == ("comm_loss",)
    normal = one(rig.connection(0, connected=True))
    assert (normal.condition, normal.active, normal.kind) == ("comm_loss", False, "comm_loss")
    assert rig.connection(10, connected=False) == []
    assert rig.evaluator.next_due() == 15
    assert rig.tick(14.9) == []
    lost = one(rig.tick(15))
    assert lost == AlarmTransition(
        transition_id=lost.transition_id,
        device="press-1",
        condition="comm_loss",
        kind=AlarmKind.COMM_LOSS,
        priority=AlarmPriority.CRITICAL,
        area="press-line",
        tag="",
        active=True,
        suppressed=False,
        latch=False,
        value=None,
        limit=None,
        message="communication with press-1 lost",
        ts=at(15),
    )
    back = one(rig.connection(20, connected=True))
    assert (back.active, back.ts) == (False, at(20))


def test_a_connection_back_within_the_delay_raises_nothing() -> None:
    rig = Rig(press(comm_loss={"priority": "high", "on_delay": 5}))
    rig.connection(0, connected=True)
    assert rig.connection(1, connected=False) == []
    assert rig.connection(3, connected=True) == []
    assert rig.tick(60) == []


def test_a_device_never_reached_raises_its_comm_loss() -> None:
    rig = Rig(press(comm_loss={"priority": "high"}))
    assert one(rig.connection(0, connected=False)).active


# -- the rest ------------------------------------------------------------------------------


def test_latch_is_passed_on_and_every_transition_has_its_own_id() -> None:
    rig = Rig(press([{**HI, "latch": True}]))
    transitions = [
        *rig.feed(0, temperature=40.0),
        *rig.feed(1, temperature=50.0),
        *rig.feed(2, temperature=40.0),
        *rig.feed(3, temperature=50.0),
    ]
    assert [t.active for t in transitions] == [False, True, False, True]
    assert all(t.latch for t in transitions)
    assert len({t.transition_id for t in transitions}) == 4


def test_a_device_without_alarms_evaluates_nothing() -> None:
    rig = Rig(press())
    assert rig.evaluator.conditions == ()
    assert rig.feed(0, temperature=99.0, running=True) == []
    assert rig.connection(1, connected=False) == []
    assert rig.evaluator.next_due() is None


@pytest.mark.parametrize("value", [48, 48.0])
def test_integers_and_floats_compare_alike(value: float) -> None:
    rig = Rig(press([HI]))
    assert one(rig.feed(0, temperature=value)).active
