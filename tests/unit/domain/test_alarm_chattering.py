"""Chattering: three activations within a minute flag an alarm; a quiet minute lowers the flag."""

from __future__ import annotations

from datetime import timedelta

from domain.application import PlantApplication
from tests.unit.domain.plant import T0
from tests.unit.domain.test_alarm_source import Source


def _activate_at(source: Source, *seconds: float) -> list[tuple[str, ...]]:
    """Raise and clear the alarm at each of ``seconds`` after T0; the events of each raise."""
    recorded = []
    for second in seconds:
        source.now = T0 + timedelta(seconds=second)
        recorded.append(source.send(active=True)[0].events)
        source.tick(1)
        source.send(active=False)
    return recorded


def test_the_third_activation_within_a_minute_flags_it(app: PlantApplication) -> None:
    source = Source(app)
    recorded = _activate_at(source, 0, 20, 40)
    assert recorded[-1] == ("Raised", "ChatteringStarted")
    alarm = source.alarm()
    assert alarm.chattering
    assert alarm.chattering_since == T0 + timedelta(seconds=40)
    started = app.alarm_events(source.alarm_id)[-2]
    assert type(started).__name__ == "ChatteringStarted"
    assert started.count == 3  # type: ignore[attr-defined]
    assert started.actor == "system"  # type: ignore[attr-defined]


def test_two_activations_a_minute_are_not_chattering(app: PlantApplication) -> None:
    source = Source(app)
    _activate_at(source, 0, 30, 60, 90, 120)
    assert not source.alarm().chattering
    assert "ChatteringStarted" not in source.events()


def test_a_quiet_minute_after_the_flag_lowers_it(app: PlantApplication) -> None:
    source = Source(app)
    _activate_at(source, 0, 20, 40)
    # The quiet minute starts at the flag (40 s): it completes at 100 s.
    assert not app.end_alarm_chattering_if_quiet(source.alarm_id, T0 + timedelta(seconds=99))
    assert app.end_alarm_chattering_if_quiet(source.alarm_id, T0 + timedelta(seconds=130))
    ended = app.alarm_events(source.alarm_id)[-1]
    assert type(ended).__name__ == "ChatteringEnded"
    assert ended.at == T0 + timedelta(seconds=100)  # type: ignore[attr-defined]
    assert ended.actor == "system"  # type: ignore[attr-defined]
    assert not source.alarm().chattering
    assert not app.end_alarm_chattering_if_quiet(source.alarm_id, T0 + timedelta(minutes=5))


def test_an_alarm_that_keeps_chattering_stays_flagged(app: PlantApplication) -> None:
    source = Source(app)
    _activate_at(source, *range(0, 300, 20))
    assert source.events().count("ChatteringStarted") == 1
    assert "ChatteringEnded" not in source.events()
    # The three last activations (240, 260, 280 s) leave the window a minute after 240 s.
    assert source.alarm().chattering_ends_at() == T0 + timedelta(seconds=300)


def test_the_next_activation_after_a_quiet_minute_records_the_end_first(
    app: PlantApplication,
) -> None:
    source = Source(app)
    _activate_at(source, 0, 20, 40)
    assert _activate_at(source, 200) == [("ChatteringEnded", "Raised")]
    ended = app.alarm_events(source.alarm_id)[-3]
    assert ended.at == T0 + timedelta(seconds=100)  # type: ignore[attr-defined]


def test_a_late_backlog_is_judged_by_the_source_times(app: PlantApplication) -> None:
    spaced, bunched = Source(app, condition="spaced"), Source(app, condition="bunched")
    transitions = [
        source.transition(active=active, ts=T0 + timedelta(seconds=second * step))
        for source, step in ((spaced, 30), (bunched, 5))
        for second, active in enumerate([True, False, True, False, True, False])
    ]
    # Delivered together, ten minutes late.
    app.record_alarm_transitions(transitions, T0 + timedelta(minutes=10))
    assert not spaced.alarm().chattering
    assert "ChatteringStarted" in bunched.events()
