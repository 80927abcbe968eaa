"""What the dead-letter tests check: the copy in DEADLETTER, and the count in /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import PlantCollector, plant_registry
from projections.dead_letter import (
    CONSUMER,
    DEADLETTER_STREAM,
    DEADLETTER_SUBJECT_PREFIX,
    ORIGINAL_SEQUENCE,
    ORIGINAL_STREAM,
    ORIGINAL_SUBJECT,
    REASON,
    REASON_KIND,
    DeadLetters,
)
from tests.support import eventually


@dataclass(frozen=True)
class Refused:
    """A message a test publishes and expects dead-lettered."""

    payload: bytes
    kind: str
    reason: str  # a part of the reason the header must carry


async def dead_lettered(
    js: JetStreamContext,
    consumer: str,
    count: int,
    *,
    stream: str = DEADLETTER_STREAM,
    subject_prefix: str = DEADLETTER_SUBJECT_PREFIX,
) -> list[Msg]:
    """The messages ``consumer`` dead-lettered, in order, once there are ``count`` of them."""
    subject = f"{subject_prefix}.{consumer}"

    async def all_there() -> None:
        info = await js.stream_info(stream, subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == count

    await eventually(all_there)
    reader = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    try:
        return [await reader.next_msg(timeout=5) for _ in range(count)]
    finally:
        await reader.unsubscribe()


async def assert_dead_lettered(
    js: JetStreamContext,
    dead_letters: DeadLetters,
    *,
    durable: str,
    stream: str,
    subject: str,
    sequence: int,
    refused: Refused,
) -> None:
    """The message is in the DEADLETTER stream, unchanged, saying why; /metrics counts it."""
    [letter] = await dead_lettered(js, durable, 1)
    assert letter.data == refused.payload
    headers = letter.headers or {}
    assert {
        key: headers.get(key) for key in (ORIGINAL_SUBJECT, ORIGINAL_STREAM, ORIGINAL_SEQUENCE)
    } == {
        ORIGINAL_SUBJECT: subject,
        ORIGINAL_STREAM: stream,
        ORIGINAL_SEQUENCE: str(sequence),
    }
    assert (headers.get(CONSUMER), headers.get(REASON_KIND)) == (durable, refused.kind)
    assert refused.reason in headers.get(REASON, ""), headers.get(REASON)
    assert scraped_dead_letters(dead_letters) == {(durable, refused.kind): 1.0}


@dataclass
class _NoCommands:
    """The command figures of a process that has seen no command."""

    requested: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def requests_per_second(self) -> float:
        return 0.0

    def mean_latency_seconds(self) -> float:
        return 0.0


def scraped_dead_letters(dead_letters: DeadLetters) -> dict[tuple[str, str], float]:
    """``plantcore_dead_lettered_messages_total`` as /metrics serves it, by (consumer, kind)."""
    text = generate_latest(plant_registry(PlantCollector(list, _NoCommands(), dead_letters)))
    return {
        (sample.labels["consumer"], sample.labels["kind"]): sample.value
        for family in text_string_to_metric_families(text.decode())
        if family.name == "plantcore_dead_lettered_messages"
        for sample in family.samples
        if sample.name == "plantcore_dead_lettered_messages_total"
    }
