"""A plant core refuses to start on a buffer another process holds, before it touches anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.credentials import TokenSettings
from api.secrets import SecretBox, generate_key
from devices.outbox import EntryKind, Outbox, OutboxLocked
from plantcore.runtime import PlantRuntime, RuntimeConfig
from plantfile.loader import load_plant_file

PLANT = load_plant_file("config/demo-plant.yaml")


async def test_a_second_plant_core_on_the_same_buffer_is_refused_at_once(tmp_path: Path) -> None:
    held = Outbox.open(tmp_path, max_bytes=1024)
    config = RuntimeConfig(
        # Nothing answers here: the refusal must come before any connection is tried.
        database_url="postgresql://nobody@127.0.0.1:9/none",
        nats_url="nats://127.0.0.1:9",
        redis_url="redis://127.0.0.1:9/0",
        plant=PLANT,
        tokens=TokenSettings(secret="s" * 48, audience="plantcore"),
        secrets=SecretBox.from_text(generate_key()),
        http_host="127.0.0.1",
        http_port=0,
        buffer_dir=tmp_path,
    )
    try:
        with pytest.raises(OutboxLocked, match="PLANTCORE_BUFFER_DIR"):
            await PlantRuntime(config).run()
        # Its holder goes on undisturbed.
        assert held.append(EntryKind.TELEMETRY, "press-1", "plant.telemetry.press-1", "m1", b"{}")
        assert len(held) == 1
    finally:
        held.close()
