"""An export verifies offline from its anchor; an edited, cut or reordered file does not."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.chain_check import Kind
from audit.checkpoints import Checkpoint, generate_signing_key
from audit.export import ExportFormatError, verify_file, write_export
from eventstore.chain import ZERO_HASH, ChainRow
from tests.unit.audit.chains import chain

AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def export(path: Path, rows: list[ChainRow], anchor: ChainRow | None = None) -> Path:
    with path.open("w", encoding="utf-8") as out:
        write_export(
            out,
            rows,
            table="plantapplication_events",
            asked=(rows[0].position, rows[-1].position),
            first_position=rows[0].position,
            last_position=rows[-1].position,
            anchor_position=None if anchor is None else anchor.position,
            anchor_hash=ZERO_HASH if anchor is None else (anchor.chain_hash or ZERO_HASH),
            exported_at=AT,
        )
    return path


def edit(path: Path, position: int, **changes: object) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record.get("position") == position:
            record.update(changes)
            lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def findings(path: Path) -> list[tuple[Kind, int]]:
    return [(finding.kind, finding.position) for finding in verify_file(path).findings]


def test_an_export_round_trips_and_verifies(tmp_path: Path) -> None:
    rows = chain(range(1, 201))
    path = export(tmp_path / "log.ndjson", rows[100:], anchor=rows[99])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["anchor"] == {"position": 100, "chain_hash": rows[99].chain_hash.hex()}  # type: ignore[union-attr]
    assert lines[1]["data"] == json.loads(rows[100].state)  # type: ignore[arg-type]
    assert lines[-1] == {
        "type": "trailer",
        "count": 100,
        "last_position": 200,
        "last_hash": rows[-1].chain_hash.hex(),  # type: ignore[union-attr]
    }

    report = verify_file(path)
    assert report.intact
    assert (report.rows, report.first_position, report.last_position) == (100, 101, 200)


def test_an_edited_state_is_changed_at_its_position(tmp_path: Path) -> None:
    rows = chain(range(1, 51))
    path = export(tmp_path / "log.ndjson", rows)
    forged = base64.b64encode(b'{"n": 17, "note": "nothing happened"}').decode()
    edit(path, 17, state=forged, data={"n": 17, "note": "nothing happened"})
    assert findings(path) == [(Kind.CHANGED, 17)]


def test_edited_readable_data_is_caught_though_the_state_is_intact(tmp_path: Path) -> None:
    rows = chain(range(1, 51))
    path = export(tmp_path / "log.ndjson", rows)
    edit(path, 23, data={"n": 23, "note": "something else"})
    report = verify_file(path)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.CHANGED, 23)]
    assert "decoded data" in report.findings[0].explanation


def test_a_removed_line_is_missing(tmp_path: Path) -> None:
    path = export(tmp_path / "log.ndjson", chain(range(1, 51)))
    lines = path.read_text().splitlines()
    del lines[30]  # position 30
    path.write_text("\n".join(lines) + "\n")
    assert (Kind.MISSING, 30) in findings(path)


def test_a_cut_export_is_missing_its_end(tmp_path: Path) -> None:
    path = export(tmp_path / "log.ndjson", chain(range(1, 51)))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:41]) + "\n")  # header + 40 events, no trailer
    assert findings(path) == [(Kind.MISSING, 40)]


def test_moved_lines_are_reordered(tmp_path: Path) -> None:
    path = export(tmp_path / "log.ndjson", chain(range(1, 51)))
    lines = path.read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]  # positions 10 and 11
    path.write_text("\n".join(lines) + "\n")
    assert (Kind.REORDERED, 10) in findings(path)


def test_checkpoints_in_range_and_at_the_anchor_are_checked(tmp_path: Path) -> None:
    key = generate_signing_key()
    rows = chain(range(1, 101))
    path = export(tmp_path / "log.ndjson", rows[50:], anchor=rows[49])
    signed = [
        Checkpoint.sign(key, p, rows[p - 1].chain_hash or ZERO_HASH, AT) for p in (20, 50, 90)
    ]
    report = verify_file(path, key.public_key(), signed)
    assert report.intact
    # 20 is before the export's anchor: not checked; 50 is the anchor itself.
    assert (report.checkpoints_matched, report.checkpoints_checked) == (2, 2)

    lying = [Checkpoint.sign(key, 90, bytes(32), AT)]
    found = verify_file(path, key.public_key(), lying).findings
    assert [(f.kind, f.position) for f in found] == [(Kind.CHECKPOINT_MISMATCH, 90)]

    forged = [Checkpoint.sign(generate_signing_key(), 90, bytes(32), AT)]
    found = verify_file(path, key.public_key(), forged).findings
    assert [(f.kind, f.position) for f in found] == [(Kind.BAD_CHECKPOINT, 90)]

    with pytest.raises(ValueError, match="public key"):
        verify_file(path, None, signed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"type": "event"}\n', "not the header"),
        ("HEADER\n", "not JSON"),
    ],
)
def test_a_file_that_is_no_export_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "log.ndjson"
    path.write_text(text)
    with pytest.raises(ExportFormatError, match=message):
        verify_file(path)


def test_a_garbled_event_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = export(tmp_path / "log.ndjson", chain(range(1, 11)))
    edit(path, 4, originator_id="not-a-uuid")
    with pytest.raises(ExportFormatError, match="line 5: a malformed event"):
        verify_file(path)
