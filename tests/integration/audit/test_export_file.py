"""An export holds what the event log holds (password hashes, sealed TOTP secrets): its file is
its owner's alone from the first byte, like a key's (see tests/unit/plantcore/test_key_files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantcore.cli import main
from tests.integration.audit.conftest import PlantLog
from tests.private_files import watching_files

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_an_export_is_created_exclusively_with_mode_0600(
    plant_log: PlantLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    umask: int,
) -> None:
    plant_log.write(2)
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", plant_log.url)
    out = tmp_path / "log.ndjson"
    with watching_files(umask=umask) as watch:
        assert main(["audit", "export", "--out", str(out)]) == 0
    watch.assert_private(out)
    assert "exported 10 events" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["log.ndjson"]
