"""Shelving is bounded: at most the application's maximum, and it ends by itself at ``until``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.alarm import AlarmState
from domain.application import PlantApplication
from domain.errors import ShelveRefused
from tests.unit.domain.plant import T0, make_catalog
from tests.unit.domain.test_alarm_source import Source

HOUR = timedelta(hours=1)


def _shelved(source: Source, duration: timedelta = HOUR) -> None:
    source.app.shelve_alarm(
        alarm_id=source.alarm_id,
        actor="ana",
        reason="level transmitter drifts",
        duration=duration,
        at=source.now,
    )


def test_the_longest_shelve_is_eight_hours_by_default(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    with pytest.raises(ShelveRefused, match="at most 8:00:00"):
        _shelved(source, 8 * HOUR + timedelta(seconds=1))
    _shelved(source, 8 * HOUR)
    assert source.alarm().shelved_until == T0 + 8 * HOUR


def test_the_longest_shelve_is_the_applications_setting() -> None:
    app = PlantApplication(make_catalog(), max_shelve=timedelta(minutes=30))
    source = Source(app)
    source.send(active=True)
    with pytest.raises(ShelveRefused) as refused:
        _shelved(source, timedelta(minutes=31))
    assert refused.value.code == "bad_duration"
    _shelved(source, timedelta(minutes=30))


def test_a_shelve_records_who_why_and_until_when(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    source.tick(5)
    _shelved(source)
    shelved = app.alarm_events(source.alarm_id)[-1]
    assert type(shelved).__name__ == "Shelved"
    assert shelved.actor == "ana"  # type: ignore[attr-defined]
    assert shelved.at == T0 + timedelta(seconds=5)  # type: ignore[attr-defined]
    assert shelved.until == T0 + timedelta(seconds=5) + HOUR  # type: ignore[attr-defined]
    assert shelved.reason == "level transmitter drifts"  # type: ignore[attr-defined]
    alarm = source.alarm()
    assert alarm.state is AlarmState.SHELVED
    assert alarm.shelve_reason == "level transmitter drifts"
    assert not alarm.annunciated


def test_the_alarm_unshelves_itself_at_until(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    _shelved(source)
    assert not app.unshelve_if_due(source.alarm_id, T0 + HOUR - timedelta(seconds=1))
    assert source.state() is AlarmState.SHELVED
    assert app.unshelve_if_due(source.alarm_id, T0 + HOUR + timedelta(minutes=3))
    unshelved = app.alarm_events(source.alarm_id)[-1]
    assert type(unshelved).__name__ == "Unshelved"
    assert unshelved.actor == "system"  # type: ignore[attr-defined]
    assert unshelved.at == T0 + HOUR  # type: ignore[attr-defined]
    assert source.state() is AlarmState.UNACK_ACTIVE
    assert not app.unshelve_if_due(source.alarm_id, T0 + 2 * HOUR)


def test_a_shelved_alarm_keeps_recording_and_shows_what_happened_meanwhile(
    app: PlantApplication,
) -> None:
    source = Source(app)
    source.send(active=True)
    source.tick(1)
    source.send(active=False)
    _shelved(source)
    source.tick(60)
    assert source.send(active=True)[0].events == ("Raised",)
    assert source.alarm().state is AlarmState.SHELVED
    app.unshelve_alarm(alarm_id=source.alarm_id, actor="bob", at=source.tick(60))
    assert source.events()[-1] == "Unshelved"
    assert source.state() is AlarmState.UNACK_ACTIVE


def test_the_next_transition_after_until_unshelves_it_first(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    _shelved(source)
    source.now = T0 + 2 * HOUR
    assert source.send(active=False)[0].events == ("Unshelved", "Cleared")
    assert source.state() is AlarmState.RTN_UNACK


def test_an_operator_acting_after_until_finds_it_unshelved(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    _shelved(source)
    source.now = T0 + 2 * HOUR
    # The sweeper has not come by yet: shelving again is a new shelve, not "already shelved".
    _shelved(source)
    assert source.events()[-2:] == ["Unshelved", "Shelved"]
    assert source.alarm().shelved_until == T0 + 3 * HOUR
