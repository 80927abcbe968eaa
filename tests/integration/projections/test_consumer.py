"""The durable consumer retries a batch after a transient failure and stops on a bug."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from projections.consumer import DurableConsumer
from tests.integration.projections.conftest import STREAM, Consumers, wait_consumed
from tests.support import unique

pytestmark = pytest.mark.integration


def decode_text(subject: str, data: bytes) -> str:
    return data.decode()


async def test_a_transient_failure_naks_and_the_batch_comes_back(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("retry")
    handled: list[list[str]] = []

    async def flaky(items: list[str]) -> None:
        handled.append(items)
        if len(handled) == 1:
            raise ConnectionError("database down")

    consumer = DurableConsumer(
        js,
        STREAM,
        durable,
        subject,
        flaky,
        decode=decode_text,
        transient=(ConnectionError,),
        min_backoff_seconds=0.05,
    )
    await consumers.start(consumer)
    ack = await js.publish(subject, b"one")

    await wait_consumed(js, durable, ack.seq)
    assert handled == [["one"], ["one"]]
    info = await js.consumer_info(STREAM, durable)
    # The one message, delivered twice: (other subjects' traffic moves the stream
    # sequence the consumer has scanned, so only its own sequence is compared).
    assert info.delivered.consumer_seq == 2
    assert info.num_ack_pending == 0


async def test_any_other_failure_ends_run(js: JetStreamContext) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("bug")

    async def buggy(items: list[str]) -> None:
        raise KeyError("a bug")

    consumer = DurableConsumer(
        js, STREAM, durable, subject, buggy, decode=decode_text, transient=(ConnectionError,)
    )
    run = asyncio.create_task(consumer.run())
    try:
        await js.publish(subject, b"one")
        with pytest.raises(KeyError):
            await asyncio.wait_for(run, timeout=10)
        await consumer.stop()  # returns at once: run() has ended
    finally:
        await js.delete_consumer(STREAM, durable)


async def test_an_existing_durable_resumes_whatever_start_says_now(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("resume")
    handled: list[str] = []

    async def record(items: list[str]) -> None:
        handled.extend(items)

    def consumer(start: DeliverPolicy) -> DurableConsumer[str]:
        return DurableConsumer(
            js,
            STREAM,
            durable,
            subject,
            record,
            decode=decode_text,
            transient=(ConnectionError,),
            start=start,
        )

    await js.publish(subject, b"before")
    first = consumer(DeliverPolicy.NEW)
    await consumers.start(first)  # created now: "before" is in its past
    ack = await js.publish(subject, b"one")
    await wait_consumed(js, durable, ack.seq)
    await consumers.stop(first)
    ack = await js.publish(subject, b"two")

    await consumers.start(consumer(DeliverPolicy.ALL))

    await wait_consumed(js, durable, ack.seq)
    assert handled == ["one", "two"]


async def test_fetch_timeouts_of_either_kind_never_end_the_consumer(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("idle")
    handled: list[str] = []

    async def record(items: list[str]) -> None:
        handled.extend(items)

    # A fetch timeout this short runs out inside nats-py's fetch at every point
    # where it can, including between its two pull requests.
    idle = DurableConsumer(
        js, STREAM, durable, subject, record, decode=decode_text,
        transient=(ConnectionError,), fetch_timeout_seconds=0.001,
    )  # fmt: skip
    await consumers.start(idle)
    await asyncio.sleep(0.5)  # not a wait for a result: time for hundreds of fetches to time out
    ack = await js.publish(subject, b"after the timeouts")

    await wait_consumed(js, durable, ack.seq)
    assert handled == ["after the timeouts"]
