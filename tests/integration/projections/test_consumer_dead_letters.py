"""How the durable consumer finds the messages at fault, and never settles one it could not keep.

Handlers of the test's own on real JetStream, as in test_consumer.py: the
projections' own cases are in the other ``*_dead_letters`` tests.
"""

from __future__ import annotations

import contextlib

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from domain.messages import MalformedMessage
from projections.consumer import DurableConsumer
from projections.dead_letter import CONSUMER, REASON, REASON_KIND, DeadLetters
from tests.integration.projections.conftest import STREAM, Consumers, wait_consumed
from tests.integration.projections.dead_letter_checks import dead_lettered, scraped_dead_letters
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


def decode_text(subject: str, data: bytes) -> str:
    text = data.decode()
    if text == "garbage":
        raise MalformedMessage("not a word")
    return text


async def test_a_refused_batch_is_halved_until_the_messages_at_fault_are_found(
    js: JetStreamContext, consumers: Consumers, dead_letters: DeadLetters
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("halves")
    written: list[str] = []

    async def store(items: list[str]) -> None:
        refused = [item for item in items if item.startswith("bad")]
        if refused:  # as a database refuses the whole transaction
            raise ValueError(f"the store refuses {', '.join(refused)}")
        written.extend(items)

    consumer = DurableConsumer(
        js, STREAM, durable, subject, store, decode=decode_text, transient=(ConnectionError,),
        refused=(ValueError,), dead_letters=dead_letters,
    )  # fmt: skip
    await consumer.ensure()
    words = ["one", "two", "bad-1", "three", "four", "five", "bad-2", "six"]
    for word in words:  # published before it runs: one batch
        last = await js.publish(subject, word.encode())

    await consumers.start(consumer)

    letters = await dead_lettered(js, durable, 2)
    await wait_consumed(js, durable, last.seq)
    assert written == ["one", "two", "three", "four", "five", "six"]  # each once, in order
    assert [
        (letter.data, *((letter.headers or {}).get(key) for key in (CONSUMER, REASON_KIND, REASON)))
        for letter in letters
    ] == [
        (b"bad-1", durable, "refused_by_store", "ValueError: the store refuses bad-1"),
        (b"bad-2", durable, "refused_by_store", "ValueError: the store refuses bad-2"),
    ]
    assert scraped_dead_letters(dead_letters) == {(durable, "refused_by_store"): 2.0}
    info = await js.consumer_info(STREAM, durable)
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)


async def test_a_transient_failure_while_halving_retries_only_what_is_not_settled(
    js: JetStreamContext, consumers: Consumers, dead_letters: DeadLetters
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("halves")
    calls: list[list[str]] = []

    async def store(items: list[str]) -> None:
        calls.append(items)
        if "bad" in items:
            raise ValueError("the store refuses bad")
        if items == ["after"] and ["after"] not in calls[:-1]:
            raise ConnectionError("database down")  # the first time only

    consumer = DurableConsumer(
        js, STREAM, durable, subject, store, decode=decode_text, transient=(ConnectionError,),
        refused=(ValueError,), dead_letters=dead_letters, min_backoff_seconds=0.05,
    )  # fmt: skip
    await consumer.ensure()
    for word in ("before", "bad", "after"):
        last = await js.publish(subject, word.encode())

    await consumers.start(consumer)

    await dead_lettered(js, durable, 1)
    await wait_consumed(js, durable, last.seq)
    # The batch, its halves, the refused one alone; then only "after" again.
    assert calls == [
        ["before", "bad", "after"],
        ["before"],
        ["bad", "after"],
        ["bad"],
        ["after"],
        ["after"],
    ]
    info = await js.consumer_info(STREAM, durable)
    assert info.num_ack_pending == 0


async def test_a_message_is_not_settled_until_its_dead_letter_is_stored(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("unsettled")
    # Dead letters into subjects no stream takes yet: every publish of one fails.
    token = unique("dl")
    prefix, stream = f"plant.test-deadletter.{token}", f"DEADLETTER-{token}"
    dead_letters = DeadLetters(js, subject_prefix=prefix, timeout_seconds=1.0)
    decoded: list[str] = []

    def counting_decode(subject: str, data: bytes) -> str:
        decoded.append(data.decode())
        return decode_text(subject, data)

    written: list[str] = []

    async def store(items: list[str]) -> None:
        written.extend(items)

    consumer = DurableConsumer(
        js, STREAM, durable, subject, store, decode=counting_decode,
        transient=(ConnectionError,), dead_letters=dead_letters, min_backoff_seconds=0.05,
    )  # fmt: skip
    await consumers.start(consumer)
    garbage = await js.publish(subject, b"garbage")

    async def delivered_again() -> None:
        assert decoded.count("garbage") >= 2

    await eventually(delivered_again)
    info = await js.consumer_info(STREAM, durable)
    assert info.ack_floor is not None
    assert (info.ack_floor.stream_seq or 0) < garbage.seq  # neither acked nor terminated
    assert dead_letters.counts() == {}

    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
    try:
        [letter] = await dead_lettered(js, durable, 1, stream=stream, subject_prefix=prefix)
        later = await js.publish(subject, b"later")
        await wait_consumed(js, durable, later.seq)
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)

    assert letter.data == b"garbage"
    assert (letter.headers or {})[REASON_KIND] == "malformed"
    assert dead_letters.counts() == {(durable, "malformed"): 1}
    assert written == ["later"]
