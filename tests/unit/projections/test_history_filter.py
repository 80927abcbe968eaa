"""The history filter's decisions: deadband, interval, quality, and what memory cannot place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from plantfile.plant import PlantConfig
from plantfile.tags import HistoryPolicy
from projections.history_filter import HistoryFilter, Row, Stored, history_policies

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
POLICY = HistoryPolicy(deadband=0.5, max_interval_seconds=60)


def row(seconds: float, value: float | None, quality: str = "good", tag: str = "temp") -> Row:
    return (T0 + timedelta(seconds=seconds), "press-1", tag, value, quality, "degC")


def kept(history_filter: HistoryFilter, rows: list[Row]) -> list[Row]:
    """What one batch stores, with no stored row before it, and then remembered."""
    selection = history_filter.select(rows, {})
    history_filter.remember(selection)
    return selection.rows


def test_a_sample_is_stored_when_it_moves_past_the_deadband_or_the_interval_passes() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): POLICY})
    rows = [
        row(0, 20.0),  # nothing stored before: stored
        row(1, 20.4),  # within the deadband of 20.0
        row(2, 19.6),
        row(3, 20.6),  # 0.6 from the last stored
        row(30, 20.2),  # 0.4 from 20.6
        row(63, 20.2),  # 60 s after the last stored
    ]

    assert kept(history_filter, rows) == [rows[0], rows[3], rows[5]]


def test_a_change_of_quality_or_of_having_a_value_is_always_stored() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): HistoryPolicy(deadband=100)})
    rows = [
        row(0, 20.0),
        row(1, 20.0, "bad"),
        row(2, 20.0, "bad"),
        row(3, 20.0),
        row(4, None),
        row(5, None),
        row(6, 21.0),
    ]

    assert kept(history_filter, rows) == [rows[0], rows[1], rows[3], rows[4], rows[6]]


def test_tags_without_a_policy_keep_every_sample() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): HistoryPolicy(deadband=100)})
    rows = [row(0, 1.0, tag="speed"), row(1, 1.0, tag="speed"), row(2, 1.0, tag="speed")]

    assert kept(history_filter, rows) == rows
    assert history_filter.unplaced(rows) == []


def test_memory_places_later_samples_and_asks_the_table_for_the_others() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): POLICY})
    first = [row(10, 20.0)]
    # Nothing remembered yet (a start): the table is asked.
    assert history_filter.unplaced(first) == [("press-1", "temp", first[0][0])]
    kept(history_filter, first)

    later, late, same = row(11, 20.1), row(5, 20.1), row(10, 20.0)
    assert history_filter.unplaced([later, late, same]) == [("press-1", "temp", late[0])]


def test_a_late_sample_is_compared_with_the_stored_row_before_it() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): POLICY})
    kept(history_filter, [row(0, 20.0), row(100, 30.0)])
    before = Stored(T0, 20.0, "good")
    close, far = row(50, 20.2), row(51, 25.0)

    selection = history_filter.select(
        [close, far],
        {("press-1", "temp", close[0]): before, ("press-1", "temp", far[0]): before},
    )

    assert selection.rows == [far]
    # What memory holds stays the latest stored sample.
    assert selection.latest == {
        ("press-1", "temp"): Stored(T0 + timedelta(seconds=100), 30.0, "good")
    }


def test_a_batch_delivered_again_is_decided_as_the_first_time() -> None:
    history_filter = HistoryFilter({("press-1", "temp"): POLICY})
    rows = [row(0, 20.0), row(1, 20.1), row(2, 21.0), row(3, 21.1)]
    stored = kept(history_filter, rows)
    table = {(r[1], r[2], r[0]): Stored(r[0], r[3], r[4]) for r in stored}

    def reference(device: str, tag: str, at: datetime) -> Stored:
        return max(
            (s for k, s in table.items() if k[:2] == (device, tag) and k[2] <= at),
            key=lambda s: s.time,
        )

    references = {key: reference(*key) for key in history_filter.unplaced(rows)}
    assert history_filter.select(rows, references).rows == stored


def test_the_policies_are_read_from_the_plant_file_and_follow_its_edits() -> None:
    plant = PlantConfig.model_validate(
        {
            "plant_id": "p",
            "devices": [
                {
                    "id": "press-1",
                    "protocol": "modbus",
                    "modbus": {"host": "127.0.0.1", "port": 502},
                    "tags": [
                        {
                            "name": "temp",
                            "type": "float32",
                            "address": 0,
                            "history": {"deadband": 0.5},
                        },
                        {"name": "speed", "type": "uint16", "address": 2},
                    ],
                }
            ],
        }
    )
    assert history_policies(plant) == {("press-1", "temp"): HistoryPolicy(deadband=0.5)}

    history_filter = HistoryFilter(history_policies(plant))
    history_filter.follow({})
    rows = [row(0, 20.0), row(1, 20.0)]
    assert kept(history_filter, rows) == rows
