"""The durable consumer retries a batch after a transient failure and stops on a bug."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from plantcore.streams import ensure_telemetry_stream
from projections.consumer import DurableConsumer
from tests.integration.projections.conftest import STREAM, Consumers, wait_consumed
from tests.private_services import private_nats
from tests.support import eventually, unique

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

    async def timed_out_many_times() -> None:
        assert idle.counters.fetch_timeouts >= 100

    await eventually(timed_out_many_times)
    ack = await js.publish(subject, b"after the timeouts")

    await wait_consumed(js, durable, ack.seq)
    assert handled == ["after the timeouts"]


async def test_a_handler_that_hangs_is_cancelled_and_its_batch_comes_back(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("hang")
    handled: list[list[str]] = []

    async def hangs_once(items: list[str]) -> None:
        handled.append(items)
        if len(handled) == 1:
            await asyncio.Event().wait()  # a store that stops answering

    consumer = DurableConsumer(
        js, STREAM, durable, subject, hangs_once, decode=decode_text,
        transient=(ConnectionError,), ack_wait_seconds=5, handler_timeout_seconds=0.2,
        min_backoff_seconds=0.05,
    )  # fmt: skip
    await consumers.start(consumer)
    ack = await js.publish(subject, b"one")

    await wait_consumed(js, durable, ack.seq)
    assert handled == [["one"], ["one"]]
    assert (consumer.counters.transient_failures, consumer.counters.naked) == (1, 1)
    # Delivered twice: to the handler that hung, and again after the nak.
    info = await js.consumer_info(STREAM, durable)
    assert info.delivered.consumer_seq == 2


async def test_a_handler_timeout_must_be_shorter_than_the_ack_wait(js: JetStreamContext) -> None:
    with pytest.raises(ValueError, match="shorter than ack_wait"):
        DurableConsumer(
            js, STREAM, unique("slow"), "plant.telemetry.x", lambda items: asyncio.sleep(0),
            decode=decode_text, transient=(ConnectionError,), ack_wait_seconds=2,
            handler_timeout_seconds=2,
        )  # fmt: skip


async def test_a_durable_deleted_on_the_server_is_made_again_where_it_left_off(
    js: JetStreamContext, consumers: Consumers
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("deleted")
    handled: list[str] = []
    lost: list[str] = []

    async def record(items: list[str]) -> None:
        handled.extend(items)
        if items == ["three"] and not lost:
            lost.append("three")  # a store down as the durable goes: it must come back
            raise ConnectionError("database down")

    consumer = DurableConsumer(
        js, STREAM, durable, subject, record, decode=decode_text,
        transient=(ConnectionError,), fetch_timeout_seconds=0.2, min_backoff_seconds=0.2,
    )  # fmt: skip
    await consumers.start(consumer)
    await js.publish(subject, b"one")
    ack = await js.publish(subject, b"two")
    await wait_consumed(js, durable, ack.seq)

    await js.publish(subject, b"three")

    async def refused_once() -> None:
        assert lost == ["three"]

    await eventually(refused_once)
    # An operator's mistake, or a server that lost it: the consumer is gone.
    await js.delete_consumer(STREAM, durable)
    await js.publish(subject, b"four")

    async def resumed() -> None:
        assert handled[-1:] == ["four"]

    await eventually(resumed)
    # Nothing it had acked again, and the message it had not settled, once more.
    assert handled == ["one", "two", "three", "three", "four"]
    info = await js.consumer_info(STREAM, durable)
    assert info.config.filter_subject == subject


async def test_a_durable_deleted_between_two_fetches_is_made_again(
    js: JetStreamContext, consumers: Consumers
) -> None:
    """The first fetch after the durable went finds it gone, whether it times out or is
    refused as if NATS were away (a 503, as the telemetry drill saw under load)."""
    subject = f"plant.telemetry.{unique('press')}"
    durable = unique("deleted")
    handled: list[str] = []
    deleted = asyncio.Event()

    async def record(items: list[str]) -> None:
        handled.extend(items)
        if items == ["two"] and not deleted.is_set():
            # The durable goes while this batch is in hand: the next fetch is the first after.
            await js.delete_consumer(STREAM, durable)
            deleted.set()
            raise ConnectionError("database down")

    consumer = DurableConsumer(
        js, STREAM, durable, subject, record, decode=decode_text,
        transient=(ConnectionError,), fetch_timeout_seconds=5, min_backoff_seconds=0.2,
    )  # fmt: skip
    await consumers.start(consumer)
    ack = await js.publish(subject, b"one")
    await wait_consumed(js, durable, ack.seq)
    await js.publish(subject, b"two")
    await asyncio.wait_for(deleted.wait(), timeout=30)  # a deadlock guard, not a measurement
    await js.publish(subject, b"three")

    async def resumed() -> None:
        assert handled[-1:] == ["three"]

    await eventually(resumed)
    assert handled == ["one", "two", "two", "three"]


async def test_nats_going_away_and_coming_back_never_ends_the_consumer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    subject = f"plant.telemetry.{unique('press')}"
    handled: list[str] = []

    async def record(items: list[str]) -> None:
        handled.extend(items)

    with private_nats(tmp_path) as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            js = nc.jetstream()
            await ensure_telemetry_stream(js)
            consumer = DurableConsumer(
                js, STREAM, unique("away"), subject, record, decode=decode_text,
                transient=(ConnectionError,), fetch_timeout_seconds=0.2, min_backoff_seconds=0.05,
            )  # fmt: skip
            running = asyncio.create_task(consumer.run())
            await js.publish(subject, b"before")

            async def handled_all(*items: str) -> None:
                assert not running.done(), running
                assert handled == list(items)

            await eventually(partial(handled_all, "before"))
            server.stop()

            async def fetch_failed() -> None:
                assert "NATS unavailable" in caplog.text

            await eventually(fetch_failed)
            server.start()

            async def reconnected() -> None:
                assert nc.is_connected

            await eventually(reconnected)
            await js.publish(subject, b"after")
            await eventually(partial(handled_all, "before", "after"), timeout=15)
            await consumer.stop()
            await running
        finally:
            await nc.close()
