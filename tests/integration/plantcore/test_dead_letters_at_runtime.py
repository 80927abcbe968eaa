"""A running plant core meets messages it cannot store: it dead-letters them, counts them, runs on.

Before dead letters, a NUL in a tag name stopped the history projection, and
with it ``plantcore run``, at every start, until the message was purged by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import redis.asyncio as aioredis
import yaml
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from domain.messages import ALARM_SUBJECT, Quality, Sample, TelemetryBatch, format_ts
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX, REASON_KIND
from projections.live_reader import read_device
from tests.integration.plantcore.conftest import RunPlant
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


def scraped_dead_letters(metrics: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["consumer"], sample.labels["kind"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "plantcore_dead_lettered_messages"
        for sample in family.samples
    }


async def test_messages_that_cannot_be_stored_are_dead_lettered_and_the_core_runs_on(
    tmp_path: Path, run_plant: RunPlant, js: JetStreamContext, redis_client: aioredis.Redis
) -> None:
    plant_file = tmp_path / "plant.yaml"
    plant_file.write_text(yaml.safe_dump({"plant_id": "dead-letters", "devices": []}))
    runtime = await run_plant(plant_file)
    device = unique("press")
    now = datetime.now(UTC).replace(microsecond=0)  # as the wire format keeps it

    async def serving() -> None:
        assert runtime.server is not None
        assert runtime.server.started

    await eventually(serving)
    prefix = runtime.config.consumer_prefix
    nul_tag = json.dumps({
        "schema": 1, "device": device, "ts": format_ts(now),
        "samples": [{"tag": "spe\u0000ed", "value": 1, "quality": "good", "ts": format_ts(now)}],
    }).encode()  # fmt: skip
    await js.publish(f"plant.telemetry.{device}", nul_tag)
    before_1970 = json.dumps({
        "schema": 1, "transition_id": uuid4().hex, "device": device, "condition": "speed_hi",
        "kind": "hi", "priority": "high", "tag": "speed", "active": True, "suppressed": False,
        "latch": False, "value": 2.0, "limit": 1.0, "ts": "1969-12-31T23:00:00.000Z",
    }).encode()  # fmt: skip
    await js.publish(ALARM_SUBJECT.format(device=device), before_1970)

    expected = {
        (f"{prefix}history", "control_character"): 1.0,
        (f"{prefix}live-state", "control_character"): 1.0,
        (f"{prefix}alarm-recorder", "timestamp_out_of_range"): 1.0,
    }
    try:

        async def counted() -> None:
            assert runtime.server is not None
            # Set when a part ends on its own and the runtime stops every other.
            assert not runtime.server.should_exit, "the plant core is stopping"
            async with httpx.AsyncClient(base_url=runtime.api_url) as http:
                metrics = (await http.get("/metrics")).text
            assert scraped_dead_letters(metrics) == expected

        await eventually(counted)
        for (consumer, kind), _ in expected.items():
            letter = await js.get_last_msg(
                DEADLETTER_STREAM, f"{DEADLETTER_SUBJECT_PREFIX}.{consumer}"
            )
            assert (letter.headers or {}).get(REASON_KIND) == kind

        sample = Sample("speed", 2, Quality.GOOD, "rpm", now)
        await js.publish(
            f"plant.telemetry.{device}", TelemetryBatch(device, now, (sample,)).encode()
        )

        async def applied() -> None:
            assert await read_device(redis_client, device) == [sample]

        await eventually(applied)
        # Still serving: a runtime whose projection had failed would have stopped the API.
        await counted()
    finally:
        await redis_client.delete(f"plant:live:{device}")
        await redis_client.srem("plant:devices", device)
        for consumer, _ in expected:
            await js.purge_stream(
                DEADLETTER_STREAM, subject=f"{DEADLETTER_SUBJECT_PREFIX}.{consumer}"
            )
