"""The periodic checkpoint task: signs the head when it moves, to the file and to JetStream."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from audit.chain_check import verify_database
from audit.checkpoints import (
    Checkpoint,
    CheckpointWriter,
    audit_stream_config,
    generate_signing_key,
    public_keys,
    read_checkpoints,
    run_checkpoints,
)
from plantcore.open_application import EVENTS_TABLE
from plantcore.streams import ensure_audit_stream
from tests.integration.audit.conftest import PlantLog
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


async def test_run_checkpoints_signs_each_new_head_once(
    plant_log: PlantLog, nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    name = unique("AUDIT_TEST").replace("-", "_")
    subject = f"test.audit.{name}"
    await ensure_audit_stream(js, audit_stream_config(name, [subject]))
    await ensure_audit_stream(js, audit_stream_config(name, [subject]))  # idempotent
    key = generate_signing_key()
    path = tmp_path / "checkpoints.jsonl"
    stop = asyncio.Event()
    await asyncio.to_thread(plant_log.write, 1, 20)  # 1-20, one transaction
    task = asyncio.create_task(
        run_checkpoints(
            plant_log.url,
            EVENTS_TABLE,
            key,
            CheckpointWriter(path, js, subject=subject),
            interval=0.05,
            stop=stop,
        )
    )
    try:

        async def signed(position: int) -> list[Checkpoint]:
            checkpoints = read_checkpoints(path) if path.exists() else []
            assert checkpoints
            assert checkpoints[-1].position == position
            return checkpoints

        await eventually(lambda: signed(20))
        await asyncio.to_thread(plant_log.write, 1, 10)  # 21-30, one transaction
        checkpoints = await eventually(lambda: signed(30))
        # Ticks while the head stood still signed nothing more.
        assert [checkpoint.position for checkpoint in checkpoints] == [20, 30]
    finally:
        stop.set()
        await task

    try:
        info = await js.stream_info(name)
        assert info.state.messages == 2
        last = await js.get_last_msg(name, subject)
        assert last.data is not None
        assert Checkpoint.from_json(last.data) == checkpoints[-1]
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)

    keys = public_keys([key.public_key()])
    for checkpoint in checkpoints:
        checkpoint.verify(keys)
    report = await asyncio.to_thread(
        verify_database,
        plant_log.url,
        EVENTS_TABLE,
        expected=[checkpoint.as_expected() for checkpoint in checkpoints],
    )
    assert report.intact
    assert report.checkpoints_matched == 2


async def test_a_restarted_task_does_not_repeat_the_last_checkpoint(
    plant_log: PlantLog, tmp_path: Path
) -> None:
    key = generate_signing_key()
    writer = CheckpointWriter(tmp_path / "checkpoints.jsonl")
    await asyncio.to_thread(plant_log.write, 2)
    for _ in range(2):  # two runs of one tick each (stop is set from the start)
        stop = asyncio.Event()
        stop.set()
        await run_checkpoints(plant_log.url, EVENTS_TABLE, key, writer, interval=1, stop=stop)
    assert writer.path is not None
    assert [checkpoint.position for checkpoint in read_checkpoints(writer.path)] == [10]
