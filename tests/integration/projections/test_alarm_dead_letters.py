"""An alarm transition the recorder cannot record goes to the dead-letter stream; it goes on.

Each kind of bad transition is published between two good ones of another
alarm, before the recorder runs, so that all three arrive in one batch: the
good ones must be recorded, the bad one dead-lettered with its reason and
counted (and nothing of it recorded), and a later good one recorded too. Real
JetStream (the ALARMS stream) and PostgreSQL (an event store of the test's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from domain.alarm import alarm_id
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.messages import ALARM_SUBJECT, AlarmKind, AlarmPriority, AlarmTransition, format_ts
from eventstore.executor import StoreExecutor
from plantcore.open_application import open_application
from plantcore.streams import ensure_alarm_stream
from projections.consumer import DurableConsumer
from projections.dead_letter import DeadLetters
from reactors.alarm_recorder import ALARM_FEED, ALARM_STREAM, AlarmRecorder
from tests.integration.projections.dead_letter_checks import Refused, assert_dead_lettered
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

GOOD_CONDITION = "motor_temperature_hi"
BAD_CONDITION = "oil_pressure_lo"

BadTransition = Callable[[str, datetime], Refused]


def transition(device: str, at: datetime, **fields: object) -> bytes:
    """A transition of the bad condition, written by hand: the encoder would refuse some."""
    base = {
        "schema": 1, "transition_id": uuid4().hex, "device": device, "condition": BAD_CONDITION,
        "kind": "lo", "priority": "high", "area": "press-line", "tag": "oil_pressure",
        "active": True, "suppressed": False, "latch": False, "value": 1.5, "limit": 2.0,
        "message": "oil pressure low", "ts": format_ts(at),
    }  # fmt: skip
    return json.dumps(base | fields).encode()


CASES = [
    pytest.param(
        lambda device, at: Refused(b"[1, 2]", "malformed", "JSON object"), id="not-an-object"
    ),
    pytest.param(
        # jsonb refuses \u0000: recorded, it would stop the alarm views at every start.
        lambda device, at: Refused(
            transition(device, at, message="oil\x00pressure"), "control_character", "U+0000"
        ),
        id="nul-in-message",
    ),
    pytest.param(
        lambda device, at: Refused(
            transition(device, at, message="oil \ud83d pressure"),
            "control_character",
            "not valid Unicode",
        ),
        id="lone-surrogate-in-message",
    ),
    pytest.param(
        lambda device, at: Refused(
            transition(device, at, condition="oil pressure lo"), "unknown_name", "'oil pressure lo'"
        ),
        id="condition-no-plant-file-can-name",
    ),
    pytest.param(
        lambda device, at: Refused(
            transition(device, at, ts="1969-12-31T23:59:59.000Z"),
            "timestamp_out_of_range",
            "is before 1970",
        ),
        id="before-1970",
    ),
    pytest.param(
        lambda device, at: Refused(
            transition(device, at, ts="9999-12-31T23:59:59.000Z"),
            "timestamp_out_of_range",
            "9999-12-31T23:59:59.000Z is more than",
        ),
        id="year-9999",
    ),
    pytest.param(
        # jsonb has no NaN either.
        lambda device, at: Refused(
            transition(device, at, value=float("nan")), "number_out_of_range", "not a finite double"
        ),
        id="nan-value",
    ),
    pytest.param(
        lambda device, at: Refused(
            transition(device, at, limit=10**400), "malformed", "OverflowError"
        ),
        id="limit-beyond-a-double",
    ),
]


@dataclass
class Recorder:
    app: PlantApplication
    store_executor: StoreExecutor
    consumer: DurableConsumer[AlarmTransition]
    device: str

    @property
    def subject(self) -> str:
        return ALARM_SUBJECT.format(device=self.device)

    async def event_names(self, condition: str) -> list[str]:
        events = await self.store_executor.call(
            self.app.alarm_events, alarm_id(self.device, condition)
        )
        return [type(event).__name__ for event in events]


@pytest.fixture
async def recorder(
    own_database: str, js: JetStreamContext, dead_letters: DeadLetters
) -> AsyncIterator[Recorder]:
    """A recorder of one device's transitions, on an event store of its own, not yet running."""
    await ensure_alarm_stream(js)
    store_executor = StoreExecutor()
    app = await store_executor.call(open_application, own_database, TagCatalog(()))
    device = unique("press")
    durable = unique("recorder")
    consumer = ALARM_FEED.consumer(
        js,
        AlarmRecorder(app, store_executor).record,
        dead_letters=dead_letters,
        durable=durable,
        filter_subject=ALARM_SUBJECT.format(device=device),
    )
    await consumer.ensure()
    try:
        yield Recorder(app, store_executor, consumer, device)
    finally:
        try:
            await consumer.stop()
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(ALARM_STREAM, durable)
        finally:
            app.close()
            store_executor.shutdown()


def good(device: str, at: datetime, *, active: bool) -> bytes:
    return AlarmTransition(
        transition_id=uuid4().hex, device=device, condition=GOOD_CONDITION, kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH, area="press-line", tag="motor_temperature", active=active,
        suppressed=False, latch=False, value=51.5 if active else 46.0, limit=48.0,
        message="motor temperature high", ts=at,
    ).encode()  # fmt: skip


async def ack_floor(js: JetStreamContext, durable: str) -> int:
    info = await js.consumer_info(ALARM_STREAM, durable)
    assert info.ack_floor is not None
    return info.ack_floor.stream_seq or 0


@pytest.mark.parametrize("bad", CASES)
async def test_a_transition_that_cannot_be_recorded_is_dead_lettered_and_recording_goes_on(
    js: JetStreamContext, recorder: Recorder, dead_letters: DeadLetters, bad: BadTransition
) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=10)
    subject, durable = recorder.subject, recorder.consumer.durable
    refused = bad(recorder.device, t0 + timedelta(seconds=1))
    await js.publish(subject, good(recorder.device, t0, active=True))
    refused_seq = (await js.publish(subject, refused.payload)).seq
    await js.publish(subject, good(recorder.device, t0 + timedelta(seconds=2), active=False))

    running = asyncio.create_task(recorder.consumer.run())
    try:
        await assert_dead_lettered(
            js, dead_letters, durable=durable, stream=ALARM_STREAM, subject=subject,
            sequence=refused_seq, refused=refused,
        )  # fmt: skip
        later = await js.publish(
            subject, good(recorder.device, t0 + timedelta(seconds=3), active=True)
        )

        async def all_recorded() -> None:
            assert await ack_floor(js, durable) >= later.seq
            assert await recorder.event_names(GOOD_CONDITION) == [
                "Defined", "Raised", "Cleared", "Raised",
            ]  # fmt: skip

        await eventually(all_recorded)
        assert await recorder.event_names(BAD_CONDITION) == []
        info = await js.consumer_info(ALARM_STREAM, durable)
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
    finally:
        await recorder.consumer.stop()
        await running  # re-raises what made run() fail
