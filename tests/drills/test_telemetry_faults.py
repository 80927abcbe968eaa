"""Fault drill: ten presses' telemetry through the failure of every part, nothing lost or doubled.

Ten simulated presses are polled five times a second by a plant core of the
drill's own, each poll carrying the press's read sequence. While they run, in
turn:

1. NATS is stopped for 30 s, then started (same port and store);
2. Redis is restarted (it keeps nothing: the live state must come back);
3. PostgreSQL is restarted;
4. the plant core is killed (SIGKILL) and started again;
5. the history projection's durable consumer is deleted on the NATS server.

After each, and from the first poll on: every number of every press is in the
history exactly once (:mod:`tests.drills.ledger`), Redis holds the latest
sample of every tag, and the supervisors' buffer is empty. The figures of each
fault go to ``var/drills/telemetry.json`` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest

from support.clock import utc_now
from tests.drills.figures import PeakWatch, record_figures
from tests.drills.ledger import (
    SEQUENCE_TAG,
    TAG_NAMES,
    TELEMETRY_STREAM,
    TELEMETRY_SUBJECTS,
    Kill,
    LiveSample,
    gaps,
    live_samples,
    published_copies,
    sequences,
    stored_between,
    unexcused,
)
from tests.drills.stack import DrillStack, PlantSpec, Press
from tests.support import eventually

pytestmark = [pytest.mark.drill, pytest.mark.timeout(480)]

DEVICES = tuple(f"press-{n:02d}" for n in range(1, 11))
POLL_SECONDS = 0.2
NATS_OUTAGE_SECONDS = 30.0
# How long each fault's recovery may take before the drill says what is missing.
RECOVERY_TIMEOUT_SECONDS = 90.0
BUFFER_ENTRIES = "plantcore_buffer_entries"
HISTORY_CONSUMER = "history"


class TelemetryDrill:
    def __init__(self, stack: DrillStack) -> None:
        self.stack = stack
        self.kills: list[Kill] = []
        self.nats_outage: tuple[datetime, datetime] | None = None

    # -- the faults ----------------------------------------------------------------------

    async def stop_nats(self) -> None:
        self.stack.nats.stop()
        stopped = utc_now()
        await asyncio.sleep(NATS_OUTAGE_SECONDS)  # the fault itself lasts this long
        self.stack.nats.start()
        self.nats_outage = (stopped, utc_now())

    async def restart_redis(self) -> None:
        self.stack.redis.restart()

    async def restart_postgres(self) -> None:
        self.stack.postgres.restart()

    async def kill_plantcore(self) -> None:
        at = utc_now()
        self.stack.plantcore.kill()
        self.stack.plantcore.start()
        self.kills.append(Kill(at, utc_now()))

    async def delete_history_consumer(self) -> None:
        nc = await nats.connect(self.stack.nats.url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_consumer(TELEMETRY_STREAM, HISTORY_CONSUMER)
        finally:
            await nc.close()

    # -- what must hold after each -------------------------------------------------------

    async def buffer_entries(self) -> float | None:
        """What the supervisors' buffer holds, None if /metrics does not say."""
        figures = await self.stack.metrics()
        entries = [value for name, value in figures.items() if name.startswith(BUFFER_ENTRIES)]
        return sum(entries) if entries else None

    async def settled(self, healed: datetime) -> dict[str, LiveSample]:
        """Everything since the first poll stored once, the buffer empty, Redis up to date.

        Answers each device's latest sample of the sequence in Redis.
        """
        stack = self.stack
        assert stack.plantcore.pid is not None, (
            f"the plant core stopped: {stack.plantcore.log_file}"
        )
        stored = await sequences(stack)
        assert sorted(stored) == list(DEVICES)
        for device in stored.values():
            assert device.repeated == 0, f"{device}: {device.repeated} numbers stored twice"
            assert device.first == 1, f"{device}: the first polls are missing"
            assert device.last_time >= healed, f"{device}: nothing stored since the fault"
        if any(device.missing for device in stored.values()):
            _, lost = unexcused(await gaps(stack), self.kills)
            assert not lost, f"samples lost: {lost}"
        buffered = await self.buffer_entries()
        assert buffered is not None, f"{BUFFER_ENTRIES} is not on /metrics"
        assert buffered == 0, f"{buffered:g} entries still wait in the buffer"
        latest = {}
        for device in DEVICES:
            live = await live_samples(stack, device)
            assert set(live) == TAG_NAMES, f"{device}: Redis holds {sorted(live)}"
            sequence = live[SEQUENCE_TAG]
            assert sequence.quality == "good", f"{device}: {sequence}"
            # Every tag from the same, latest poll; none older than what the history holds.
            assert {sample.ts for sample in live.values()} == {sequence.ts}, f"{device}: {live}"
            assert isinstance(sequence.value, int)
            assert sequence.value >= stored[device].last, f"{device}: Redis behind the history"
            latest[device] = sequence
        return latest

    async def live_state_is_stored(self, latest: dict[str, LiveSample]) -> None:
        """Each sample Redis shows is one the history holds: the same number at the same time."""
        for device, sample in latest.items():
            rows = await self.stack.fetch(
                "SELECT value FROM samples WHERE device = $1 AND tag = $2 AND time = $3",
                device,
                SEQUENCE_TAG,
                datetime.fromisoformat(sample.ts),
            )
            assert [row["value"] for row in rows] == [sample.value], f"{device}: {sample}"

    async def stored_during_outage(self) -> dict[str, int]:
        assert self.nats_outage is not None
        rows = await self.stack.fetch(
            "SELECT device, count(*) AS polls FROM samples WHERE tag = $1 AND quality = 'good'"
            " AND time > $2 AND time < $3 GROUP BY device",
            SEQUENCE_TAG,
            *self.nats_outage,
        )
        return {row["device"]: row["polls"] for row in rows}


@dataclass(frozen=True)
class Fault:
    name: str
    injected: str
    inject: Callable[[TelemetryDrill], Awaitable[None]]


FAULTS = (
    Fault(
        "nats_stopped",
        f"NATS stopped for {NATS_OUTAGE_SECONDS:g} s, then started",
        TelemetryDrill.stop_nats,
    ),
    Fault("redis_restarted", "Redis restarted (empty)", TelemetryDrill.restart_redis),
    Fault("postgres_restarted", "PostgreSQL restarted", TelemetryDrill.restart_postgres),
    Fault("plantcore_killed", "plant core SIGKILLed, then started", TelemetryDrill.kill_plantcore),
    Fault(
        "history_consumer_deleted",
        "the history projection's durable consumer deleted on the server",
        TelemetryDrill.delete_history_consumer,
    ),
)


async def last_stream_sequence(stack: DrillStack) -> int:
    info = await stack.stream_info(TELEMETRY_STREAM, TELEMETRY_SUBJECTS)
    assert info.state.last_seq is not None
    return info.state.last_seq


async def run_fault(drill: TelemetryDrill, fault: Fault, buffer: PeakWatch) -> dict[str, Any]:
    stack = drill.stack
    before = {device: seq.last for device, seq in (await sequences(stack)).items()}
    first_message = await last_stream_sequence(stack) + 1
    kills_before = len(drill.kills)
    buffer.take()
    injected = time.monotonic()
    await fault.inject(drill)
    healed, healed_clock = utc_now(), time.monotonic()
    try:
        latest = await eventually(
            partial(drill.settled, healed), timeout=RECOVERY_TIMEOUT_SECONDS, interval=0.25
        )
    except AssertionError as exc:
        raise AssertionError(f"not recovered from {fault.injected}: {exc}") from exc
    recovered = time.monotonic() - healed_clock
    await eventually(partial(drill.live_state_is_stored, latest))

    after = {device: seq.last for device, seq in (await sequences(stack)).items()}
    stored = await stored_between(stack, before, after)
    messages, batches = await published_copies(
        stack, first_message, await last_stream_sequence(stack)
    )
    excused, _ = unexcused(await gaps(stack), drill.kills[kills_before:])
    figures: dict[str, Any] = {
        "fault": fault.name,
        "injected": fault.injected,
        "fault_seconds": round(healed_clock - injected, 1),
        "polls_sent": sum(after[device] - before.get(device, 0) for device in after),
        "polls_stored": sum(stored.values()),
        "lost_at_kill": len(excused),
        "duplicates_absorbed": messages - batches,
        "seconds_to_recover": round(recovered, 1),
        "buffer_peak_entries": buffer.take(),
    }
    if fault.name == "nats_stopped":
        during = await drill.stored_during_outage()
        # Polled while NATS was away, published into the buffer, and in the history now.
        assert sorted(during) == list(DEVICES), f"polls of the outage stored: {during}"
        figures["polls_stored_from_the_outage"] = sum(during.values())
    return figures


async def test_every_poll_is_stored_once_through_each_fault(tmp_path: Path) -> None:
    spec = PlantSpec(presses=[Press(device) for device in DEVICES], poll_seconds=POLL_SECONDS)
    with DrillStack("telemetry", tmp_path, spec) as stack:
        await stack.prepare_database()
        stack.start_plantcore()
        drill = TelemetryDrill(stack)
        await eventually(partial(drill.settled, utc_now()), timeout=RECOVERY_TIMEOUT_SECONDS)
        buffer = PeakWatch(drill.buffer_entries, interval=0.5)
        results = []
        async with buffer.running():
            for fault in FAULTS:
                results.append(await run_fault(drill, fault, buffer))
        record_figures(
            "telemetry",
            {"devices": len(DEVICES), "poll_seconds": POLL_SECONDS, "faults": results},
        )
        for result in results:
            assert result["polls_stored"] == result["polls_sent"] - result["lost_at_kill"], result
