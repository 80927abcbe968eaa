"""``plantcore history export`` as the analyst: every row, in batches, and bad input refused.

The history is written as the runtime writes it (through ``samples``), then
exported through the analyst's role. Memory is held constant by construction:
the rows come from a server-side cursor that the test sees open mid-export, and
no batch handed to the writer is larger than the fetch size, however many rows.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from plantcore.cli import main
from plantcore.db_init import InitialisedDatabase
from plantcore.history_export import ExportError, ExportRequest, Format, export_history
from projections.history_views import RAW_COLUMNS

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ROWS_PER_TAG = 3_000
FETCH_SIZE = 250


@pytest.fixture
def history(plant_roles: InitialisedDatabase) -> InitialisedDatabase:
    """Two tags of press-1 at 1 Hz, and one of another device, written as the runtime."""
    with psycopg.connect(plant_roles.runtime_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO samples (time, device, tag, value, quality)"
            " SELECT %s + n * interval '1 second', device, tag, n, 'good'"
            " FROM generate_series(0, %s - 1) AS n,"
            " (VALUES ('press-1', 'speed'), ('press-1', 'temperature'), ('press-2', 'speed'))"
            " AS d (device, tag)",
            (T0, ROWS_PER_TAG),
        )
    return plant_roles


def _request(**changes: object) -> ExportRequest:
    fields: dict[str, object] = {
        "device": "press-1",
        "tags": ("speed", "temperature"),
        "start": T0,
        "end": T0 + timedelta(hours=1),
    }
    fields.update(changes)
    return ExportRequest(**fields)  # type: ignore[arg-type]


def test_an_export_streams_every_row_in_batches_of_the_fetch_size(
    history: InitialisedDatabase, tmp_path: Path
) -> None:
    output = tmp_path / "press-1.csv"
    batches: list[int] = []
    cursors_open: list[int] = []
    with psycopg.connect(history.analyst_url) as conn:

        def on_rows(done: int, total: int) -> None:
            batches.append(done - sum(batches))
            # The rest of the rows wait on the server, in the export's cursor.
            row = conn.execute(
                "SELECT count(*) FROM pg_cursors WHERE name = 'plantcore_history_export'"
            ).fetchone()
            cursors_open.append(row[0] if row else 0)
            assert total == 2 * ROWS_PER_TAG

        written = export_history(
            conn, _request(), output, Format.CSV, fetch_size=FETCH_SIZE, on_rows=on_rows
        )

    assert written == 2 * ROWS_PER_TAG
    assert max(batches) == FETCH_SIZE
    assert len(batches) == -(-written // FETCH_SIZE)
    assert set(cursors_open) == {1}
    with output.open(newline="") as file:
        lines = list(csv.reader(file))
    assert lines[0] == list(RAW_COLUMNS)
    assert len(lines) == 1 + written
    assert lines[1] == [T0.isoformat(), "press-1", "speed", "0.0", "good", ""]
    assert lines[2] == [T0.isoformat(), "press-1", "temperature", "0.0", "good", ""]
    assert lines[-1][:3] == [
        (T0 + timedelta(seconds=ROWS_PER_TAG - 1)).isoformat(),
        "press-1",
        "temperature",
    ]
    assert list(tmp_path.iterdir()) == [output]


@pytest.mark.parametrize(
    ("request_changes", "message"),
    [
        ({"device": "press-9"}, "unknown device 'press-9'"),
        ({"tags": ("speed", "pressure")}, "unknown tag 'pressure' of 'press-1'"),
        ({"start": T0 + timedelta(hours=2)}, "is not before --to"),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(
    history: InitialisedDatabase,
    tmp_path: Path,
    request_changes: dict[str, object],
    message: str,
) -> None:
    with psycopg.connect(history.analyst_url) as conn, pytest.raises(ExportError, match=message):
        export_history(conn, _request(**request_changes), tmp_path / "out.csv", Format.CSV)
    assert list(tmp_path.iterdir()) == []


def test_the_command_exits_2_on_an_unwritable_output_and_0_once_written(
    history: InitialisedDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", history.analyst_url)
    arguments = ["history", "export", "--device", "press-2", "--tags", "speed"]
    arguments += ["--from", "2026-03-01T08:00:00Z", "--to", "2026-03-01T08:00:10+00:00"]

    assert main([*arguments, "--output", str(tmp_path / "missing" / "out.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err

    output = tmp_path / "out.csv"
    assert main([*arguments, "--output", str(output)]) == 0
    assert len(output.read_text().splitlines()) == 1 + 10


def test_parquet_is_written_a_row_group_per_batch(
    history: InitialisedDatabase, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    output = tmp_path / "press-1.parquet"
    with psycopg.connect(history.analyst_url) as conn:
        written = export_history(conn, _request(), output, Format.PARQUET, fetch_size=FETCH_SIZE)

    parquet = pq.ParquetFile(output)
    assert parquet.metadata.num_row_groups == -(-written // FETCH_SIZE)
    table = parquet.read()
    assert table.column_names == list(RAW_COLUMNS)
    assert table.num_rows == written == 2 * ROWS_PER_TAG
    first = table.slice(0, 1).to_pylist()[0]
    assert first == {
        "time": T0,
        "device": "press-1",
        "tag": "speed",
        "value": 0.0,
        "quality": "good",
        "unit": "",
    }
