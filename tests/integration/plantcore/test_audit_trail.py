"""A running plant core keeps the audit trail: chained events, signed checkpoints, the relay.

One plant core on its own database, with an audit signing key: its event log
is hash-chained from the first event, the chain's head is signed into the
checkpoint file, ``plantcore audit verify`` checks the log against those
checkpoints with the public key alone, and the events reach the EVENTS stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from audit.checkpoints import Checkpoint, generate_signing_key, public_key_text, public_keys
from tests.integration.plantcore.conftest import RunPlant
from tests.support import eventually

pytestmark = pytest.mark.integration

PLANT = "plant_id: audit-trail\npoll_seconds: 1\ndevices: []\n"


async def test_the_running_plant_signs_its_chain_and_relays_its_events(
    tmp_path: Path, own_database: str, run_plant: RunPlant, js: JetStreamContext
) -> None:
    key = generate_signing_key()
    public_file = tmp_path / "signing.pub"
    public_file.write_text(public_key_text(key))
    checkpoints = tmp_path / "checkpoints.jsonl"
    plant_file = tmp_path / "plant.yaml"
    plant_file.write_text(PLANT)

    runtime = await run_plant(
        plant_file,
        audit_signing_key=key,
        audit_checkpoint_file=checkpoints,
        audit_checkpoint_seconds=0.2,
    )

    async def signed() -> Checkpoint:
        lines = checkpoints.read_text().splitlines() if checkpoints.exists() else []
        assert lines, "no checkpoint yet"
        return Checkpoint.from_json(lines[-1])

    checkpoint = await eventually(signed, timeout=20)
    checkpoint.verify(public_keys([key.public_key()]))  # raises unless signed by this key
    assert runtime.app is not None
    end = runtime.app.recorder.max_notification_id() or 0
    assert 0 < checkpoint.position <= end

    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "plantcore", "audit", "verify",
         "--checkpoints", str(checkpoints), "--public-key", str(public_file)],
        env={**os.environ, "PLANTCORE_DATABASE_URL": own_database},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    app = runtime.app

    async def relayed() -> None:
        last = await js.get_last_msg(
            runtime.config.events_stream, f"{runtime.config.events_subject_prefix}.>"
        )
        assert last.headers is not None
        assert int(last.headers["Plantcore-Position"]) == app.recorder.max_notification_id()
        assert json.loads(last.data)  # the event's JSON, as stored

    await eventually(relayed, timeout=20)
