"""Alarm floods: more than ten new alarms within ten minutes in an area, until fewer than five."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.alarm_flood import AlarmFlood, flood_id
from domain.application import PlantApplication
from tests.unit.domain.plant import T0
from tests.unit.domain.test_alarm_source import Source

MINUTE = timedelta(minutes=1)


def _sources(app: PlantApplication, count: int, area: str = "press-hall") -> list[Source]:
    return [Source(app, condition=f"{area}_{i}", area=area) for i in range(count)]


def _raise_one_by_one(sources: list[Source], start: datetime, every: timedelta) -> None:
    for index, source in enumerate(sources):
        source.now = start + index * every
        source.send(active=True)


def _flood_events(app: PlantApplication, area: str = "press-hall") -> list[str]:
    return [type(e).__name__ for e in app.events.get(flood_id(area))]


def _flood(app: PlantApplication, area: str = "press-hall") -> AlarmFlood:
    flood = app.alarm_flood(area)
    assert flood is not None
    return flood


def test_the_eleventh_activation_within_ten_minutes_starts_a_flood(app: PlantApplication) -> None:
    sources = _sources(app, 11)
    _raise_one_by_one(sources[:10], T0, MINUTE / 2)
    assert not _flood(app).flooding
    _raise_one_by_one(sources[10:], T0 + 9 * MINUTE, MINUTE)
    flood = _flood(app)
    assert flood.flooding
    assert flood.started_at == T0 + 9 * MINUTE
    started = list(app.events.get(flood_id("press-hall")))[-1]
    assert type(started).__name__ == "FloodStarted"
    assert started.count == 11  # type: ignore[attr-defined]
    assert started.area == "press-hall"  # type: ignore[attr-defined]
    assert started.actor == "system"  # type: ignore[attr-defined]


def test_eleven_activations_spread_over_more_than_ten_minutes_are_no_flood(
    app: PlantApplication,
) -> None:
    _raise_one_by_one(_sources(app, 11), T0, timedelta(seconds=61))
    assert not _flood(app).flooding
    assert "FloodStarted" not in _flood_events(app)


def test_the_flood_ends_when_fewer_than_five_remain_within_ten_minutes(
    app: PlantApplication,
) -> None:
    _raise_one_by_one(_sources(app, 11), T0, timedelta(seconds=1))
    # The 5th latest activation (6 s) leaves the window at 10 min 6 s.
    ends = T0 + 10 * MINUTE + timedelta(seconds=6)
    assert _flood(app).ends_at() == ends
    assert not app.end_alarm_flood_if_over("press-hall", ends - timedelta(seconds=1))
    assert app.end_alarm_flood_if_over("press-hall", ends + MINUTE)
    ended = list(app.events.get(flood_id("press-hall")))[-1]
    assert type(ended).__name__ == "FloodEnded"
    assert ended.at == ends  # type: ignore[attr-defined]
    assert ended.count == 4  # type: ignore[attr-defined]
    assert not _flood(app).flooding
    assert not app.end_alarm_flood_if_over("press-hall", ends + 2 * MINUTE)


def test_a_flood_is_kept_while_five_or_more_remain(app: PlantApplication) -> None:
    _raise_one_by_one(_sources(app, 11), T0, timedelta(seconds=1))
    # One new alarm every two minutes keeps five in the window: at 12 min, 2 min has
    # just left it and the alarm raised at that very moment takes its place.
    _raise_one_by_one(_more(app, 10), T0 + 2 * MINUTE, 2 * MINUTE)
    assert _flood(app).flooding
    assert "FloodEnded" not in _flood_events(app)
    assert _flood(app).count_at(T0 + 20 * MINUTE) == 5


def _more(app: PlantApplication, count: int) -> list[Source]:
    return [Source(app, condition=f"more_{i}", area="press-hall") for i in range(count)]


def test_a_quiet_area_ends_its_flood_at_the_next_activation(app: PlantApplication) -> None:
    _raise_one_by_one(_sources(app, 11), T0, timedelta(seconds=1))
    late = _more(app, 1)
    _raise_one_by_one(late, T0 + 30 * MINUTE, MINUTE)
    assert _flood_events(app)[-2:] == ["FloodEnded", "ActivationsCounted"]
    assert not _flood(app).flooding


def test_a_flood_within_one_batch_is_found(app: PlantApplication) -> None:
    sources = _sources(app, 12)
    transitions = [
        source.transition(active=True, ts=T0 + index * timedelta(seconds=2))
        for index, source in enumerate(sources)
    ]
    app.record_alarm_transitions(transitions, T0 + MINUTE)
    # The activations up to the 11th, the start, then the 12th.
    assert _flood_events(app) == [
        "CountingStarted",
        "ActivationsCounted",
        "FloodStarted",
        "ActivationsCounted",
    ]
    assert _flood(app).started_at == T0 + timedelta(seconds=20)
    assert len(_flood(app).activations) == 12


def test_areas_are_counted_apart(app: PlantApplication) -> None:
    _raise_one_by_one(_sources(app, 6, area="press-hall"), T0, timedelta(seconds=1))
    _raise_one_by_one(_sources(app, 6, area="paint-shop"), T0, timedelta(seconds=1))
    assert not _flood(app, "press-hall").flooding
    assert not _flood(app, "paint-shop").flooding
    assert app.alarm_flood("assembly") is None


def test_hidden_activations_do_not_count(app: PlantApplication) -> None:
    sources = _sources(app, 11)
    for index, source in enumerate(sources):
        source.now = T0 + index * timedelta(seconds=1)
        source.send(active=True, suppressed=index == 0)
    assert not _flood(app).flooding
    assert len(_flood(app).activations) == 10


def test_every_activation_counts_not_every_alarm(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    for _ in range(12):
        source.tick(1)
        source.send(active=False)
        source.tick(1)
        source.send(active=True)
    # Thirteen activations of one chattering alarm; its twelve clears do not count.
    assert len(_flood(app).activations) == 13
    assert _flood(app).flooding
    assert source.alarm().chattering
