"""``plantcore audit`` as an auditor runs it: verify the log, export it, verify it offline."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.checkpoints import load_public_key, read_checkpoints
from audit.export import position_at
from plantcore.cli import main
from plantcore.open_application import EVENTS_TABLE
from tests.integration.audit.conftest import PlantLog

pytestmark = pytest.mark.integration

NO_DATABASE = "postgresql://nobody@127.0.0.1:9/nowhere"


def plantcore(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantcore", "audit", *args],
        env={**os.environ, "PLANTCORE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_verify_passes_an_intact_log_and_names_the_first_bad_position(
    plant_log: PlantLog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_log.write(20)
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", plant_log.url)

    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("intact: 100 events (positions 1 to 100)")

    plant_log.tamper("DELETE FROM {table} WHERE notification_id = 42")
    plant_log.tamper("UPDATE {table} SET state = 'x'::bytea WHERE notification_id = 90")
    tampered = plantcore("verify", "--quiet", database_url=plant_log.url)
    assert tampered.returncode == 1
    lines = tampered.stdout.splitlines()
    assert lines[0].startswith("TAMPERED: first bad position 42: missing:")
    assert lines[2].startswith("  position 42: missing")
    assert lines[3].startswith("  position 90: changed")


def test_an_export_verifies_offline_against_signed_checkpoints(
    plant_log: PlantLog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", plant_log.url)
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub"
    assert main(["audit", "keygen", "--out", str(private)]) == 0
    public.write_text(capsys.readouterr().out)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    load_public_key(public)
    assert main(["audit", "keygen", "--out", str(private)]) == 2  # never overwrites a key

    checkpoints = tmp_path / "checkpoints.jsonl"
    plant_log.write(12)  # 1-60
    signed = ["audit", "checkpoint", "--signing-key", str(private), "--out", str(checkpoints)]
    assert main([*signed, "--no-nats"]) == 0
    plant_log.write(8)  # 61-100
    assert [checkpoint.position for checkpoint in read_checkpoints(checkpoints)] == [60]

    out = tmp_path / "log.ndjson"
    assert main(["audit", "export", "--from", "21", "--to", "80", "--out", str(out)]) == 0
    assert "exported 60 events (positions 21 to 80)" in capsys.readouterr().err

    offline = ["verify", "--file", str(out), "--checkpoints", str(checkpoints)]
    checked = plantcore(*offline, "--public-key", str(public), database_url=NO_DATABASE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "60 events (positions 21 to 80)" in checked.stdout
    assert "1 of 1 checkpoints match" in checked.stdout

    lines = out.read_text().splitlines()
    event = json.loads(lines[30])  # position 50
    event["data"]["name"] = "someone else"
    lines[30] = json.dumps(event)
    out.write_text("\n".join(lines) + "\n")
    edited = plantcore(*offline, "--public-key", str(public), database_url=NO_DATABASE)
    assert edited.returncode == 1
    assert edited.stdout.startswith("TAMPERED: first bad position 50: changed: line 31")

    monkeypatch.setenv("PLANTCORE_DATABASE_URL", NO_DATABASE)
    assert main(["audit", *offline]) == 2
    assert "--public-key" in capsys.readouterr().err


def test_export_times_select_positions_by_record_time(plant_log: PlantLog) -> None:
    plant_log.write(4)  # 1-20
    between = datetime.now(UTC)
    plant_log.write(4)  # 21-40

    assert position_at(plant_log.url, EVENTS_TABLE, between, end=False) == 21
    assert position_at(plant_log.url, EVENTS_TABLE, between, end=True) == 20
    assert position_at(plant_log.url, EVENTS_TABLE, datetime.now(UTC), end=False) is None
