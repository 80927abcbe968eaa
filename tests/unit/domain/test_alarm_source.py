"""Source transitions become alarm events exactly once, a whole burst in one atomic save.

Also home of :class:`Source`, the stand-in for a supervisor that the other
alarm tests share: it makes transitions of one condition with fresh ids on a
clock the test moves.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.alarm import Alarm, AlarmState, alarm_id
from domain.application import AlarmChange, PlantApplication
from domain.errors import AlarmNotFound
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from tests.unit.domain.plant import T0


class Source:
    """One alarm condition as its device's supervisor reports it."""

    def __init__(
        self,
        app: PlantApplication,
        *,
        device: str = "press-1",
        condition: str = "temperature_hi",
        area: str = "press-hall",
        latch: bool = False,
    ) -> None:
        self.app = app
        self.now = T0
        self._serial = 0
        self.template = AlarmTransition(
            transition_id="",
            device=device,
            condition=condition,
            kind=AlarmKind.HI,
            priority=AlarmPriority.HIGH,
            area=area,
            tag="temperature",
            active=False,
            suppressed=False,
            latch=latch,
            value=None,
            limit=80.0,
            message="temperature high",
            ts=T0,
        )

    @property
    def alarm_id(self) -> UUID:
        return alarm_id(self.template.device, self.template.condition)

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def transition(
        self, *, active: bool, suppressed: bool = False, **changes: Any
    ) -> AlarmTransition:
        """A new transition (fresh id, the source's clock) of this condition."""
        self._serial += 1
        fields: dict[str, Any] = {
            "transition_id": f"{self.template.device}/{self._serial}",
            "active": active,
            "suppressed": suppressed,
            "value": 85.5 if active else 74.0,
            "ts": self.now,
        }
        return dataclasses.replace(self.template, **(fields | changes))

    def send(self, *, active: bool, suppressed: bool = False) -> list[AlarmChange]:
        return self.record(self.transition(active=active, suppressed=suppressed))

    def record(self, *transitions: AlarmTransition) -> list[AlarmChange]:
        return self.app.record_alarm_transitions(transitions, self.now)

    def alarm(self) -> Alarm:
        return self.app.get_alarm(self.alarm_id)

    def state(self) -> AlarmState:
        return self.alarm().state

    def events(self) -> list[str]:
        return [type(e).__name__ for e in self.app.alarm_events(self.alarm_id)]


@pytest.fixture
def source(app: PlantApplication) -> Source:
    return Source(app)


def test_the_first_activation_defines_and_raises_the_alarm(source: Source) -> None:
    changes = source.send(active=True)
    assert changes == [
        AlarmChange(
            alarm_id=source.alarm_id,
            device="press-1",
            condition="temperature_hi",
            state=AlarmState.UNACK_ACTIVE,
            events=("Defined", "Raised"),
        )
    ]
    alarm = source.alarm()
    assert (alarm.kind, alarm.priority, alarm.area, alarm.tag) == (
        AlarmKind.HI,
        AlarmPriority.HIGH,
        "press-hall",
        "temperature",
    )
    assert (alarm.value, alarm.limit, alarm.message) == (85.5, 80.0, "temperature high")
    assert alarm.raised_at == T0
    assert alarm.annunciated


def test_an_unknown_alarm_that_is_normal_is_not_defined(source: Source) -> None:
    assert source.send(active=False) == []
    with pytest.raises(AlarmNotFound):
        source.alarm()


def test_a_repeated_transition_id_records_nothing(source: Source) -> None:
    raised = source.transition(active=True)
    source.record(raised)
    cleared = source.transition(active=False)
    assert [c.events for c in source.record(cleared)] == [("Cleared",)]
    # Redelivered after the clear: recording it again would raise the alarm anew.
    assert source.record(raised, cleared) == []
    assert source.events() == ["Defined", "Raised", "Cleared"]


def test_a_duplicate_within_one_batch_is_recorded_once(source: Source) -> None:
    raised = source.transition(active=True)
    cleared = source.transition(active=False)
    changes = source.record(raised, cleared, raised)
    assert [c.events for c in changes] == [("Defined", "Raised", "Cleared")]
    assert source.state() is AlarmState.RTN_UNACK


def test_a_transition_that_changes_nothing_records_nothing(source: Source) -> None:
    source.send(active=True)
    source.tick(30)
    # A restarted supervisor reports the condition it still sees.
    assert source.send(active=True) == []
    assert source.events() == ["Defined", "Raised"]


def test_a_batch_is_recorded_whole_or_not_at_all(source: Source, app: PlantApplication) -> None:
    other = Source(app, condition="pressure_hi")
    naive = other.transition(active=True, ts=datetime(2025, 3, 1, 8, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        source.record(source.transition(active=True), naive)
    with pytest.raises(AlarmNotFound):
        source.alarm()


def test_one_batch_is_one_save(source: Source, app: PlantApplication) -> None:
    saves: list[int] = []
    original = app.save

    def counting_save(*objs: Any, **kwargs: Any) -> Any:
        saves.append(len(objs))
        return original(*objs, **kwargs)

    app.save = counting_save  # type: ignore[method-assign]
    others = [Source(app, condition=f"condition_{i}") for i in range(5)]
    changes = app.record_alarm_transitions(
        [s.transition(active=True) for s in (source, *others)], source.now
    )
    assert len(changes) == 6
    # Six alarms and the area's flood, together.
    assert saves == [7]


def test_events_of_a_source_transition_carry_the_device_and_the_source_time(
    source: Source,
) -> None:
    transition = source.transition(active=True)
    source.tick(5)  # recorded 5 s after the source saw it
    source.record(transition)
    raised = source.app.alarm_events(source.alarm_id)[-1]
    assert raised.actor == "device:press-1"  # type: ignore[attr-defined]
    assert raised.at == T0  # type: ignore[attr-defined]
    assert raised.transition_id == transition.transition_id  # type: ignore[attr-defined]


def test_a_source_time_in_the_future_is_taken_as_the_recording_time(source: Source) -> None:
    early = source.transition(active=True, ts=T0 + timedelta(hours=1))
    source.record(early)
    assert source.alarm().raised_at == T0


def test_suppression_by_design_hides_the_alarm_but_it_is_still_recorded(source: Source) -> None:
    changes = source.send(active=True, suppressed=True)
    assert changes[0].events == ("Defined", "Suppressed", "Raised")
    alarm = source.alarm()
    assert alarm.state is AlarmState.SUPPRESSED
    assert alarm.isa_state is AlarmState.UNACK_ACTIVE
    assert not alarm.annunciated
    source.tick(10)
    assert source.send(active=True, suppressed=False)[0].events == ("Unsuppressed",)
    assert source.alarm().annunciated


def test_a_changed_configuration_is_recorded_before_the_transition(source: Source) -> None:
    source.send(active=True)
    source.tick(10)
    moved = source.transition(active=False, priority=AlarmPriority.CRITICAL, area="assembly")
    assert source.record(moved)[0].events == ("Reconfigured", "Cleared")
    alarm = source.alarm()
    assert (alarm.priority, alarm.area) == (AlarmPriority.CRITICAL, "assembly")


def test_only_the_last_thousand_transition_ids_are_kept(source: Source) -> None:
    # On the aggregate alone: a thousand saves would only test the store.
    first = source.transition(active=True)
    alarm = Alarm.define(first, source.now)
    alarm.record(first, source.now)
    for serial in range(1000):
        alarm.record(source.transition(active=serial % 2 == 1), source.tick(61))
    assert alarm.has_recorded("press-1/1001")
    assert not alarm.has_recorded("press-1/1")
    assert alarm.has_recorded("press-1/2")


def test_an_id_of_another_aggregate_is_not_an_alarm(app: PlantApplication) -> None:
    operator = app.find_operator("ana")
    assert operator is not None
    with pytest.raises(AlarmNotFound):
        app.get_alarm(operator.id)


def test_times_must_be_timezone_aware(source: Source) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        source.app.record_alarm_transitions([], datetime(2025, 3, 1))
