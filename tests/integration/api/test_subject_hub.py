"""The live views' NATS subscriptions, one per subject for the process, on the real NATS."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from api.graphql.subject_hub import Follower, SubjectHub
from tests.support import unique

pytestmark = pytest.mark.integration


def counting() -> tuple[Callable[[Msg], bytes], list[bytes]]:
    """A decoder that records each message it decodes."""
    decoded: list[bytes] = []

    def decode(message: Msg) -> bytes:
        decoded.append(message.data)
        return message.data

    return decode, decoded


async def received(follower: Follower[bytes], count: int) -> list[bytes]:
    return [(await anext(follower))[1] for _ in range(count)]


async def test_followers_of_a_subject_share_one_subscription_and_one_decoding(
    nc: NatsClient,
) -> None:
    hub, subject = SubjectHub(nc), unique("plant.telemetry.hub")
    decode, decoded = counting()
    subscriptions_before = len(nc._subs)
    async with AsyncExitStack() as stack:
        followers = [
            await stack.enter_async_context(hub.follow([subject], decode)) for _ in range(50)
        ]
        assert (hub.subscriptions(), hub.followers(subject)) == (1, 50)
        assert len(nc._subs) == subscriptions_before + 1
        for n in range(3):
            await nc.publish(subject, b"%d" % n)
        for follower in followers:
            assert await received(follower, 3) == [b"0", b"1", b"2"]
        assert decoded == [b"0", b"1", b"2"]  # once each, for all 50
    assert hub.subscriptions() == 0
    assert len(nc._subs) == subscriptions_before


async def test_the_last_follower_to_leave_closes_the_subscription_and_the_next_opens_one(
    nc: NatsClient,
) -> None:
    hub, subject, other = SubjectHub(nc), unique("plant.status.hub"), unique("plant.status.hub")
    decode, _ = counting()
    subscriptions_before = len(nc._subs)
    async with hub.follow([subject, other], decode) as both:
        async with hub.follow([subject], decode) as one:
            assert (hub.subscriptions(), hub.followers(subject), hub.followers(other)) == (2, 2, 1)
        assert (hub.subscriptions(), hub.followers(subject)) == (2, 1)
        await nc.publish(subject, b"still followed")
        assert await received(both, 1) == [b"still followed"]
    assert (hub.subscriptions(), len(nc._subs)) == (0, subscriptions_before)
    async with hub.follow([subject], decode) as again:
        await nc.publish(subject, b"followed anew")
        assert await received(again, 1) == [b"followed anew"]
    assert one.pending() == 0  # it left before anything was published


async def test_a_slow_follower_loses_its_oldest_messages_and_holds_up_nobody(
    nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    hub, subject = SubjectHub(nc), unique("plant.telemetry.hub")
    decode, _ = counting()
    caplog.set_level(logging.WARNING, logger="api.graphql.subject_hub")
    async with (
        hub.follow([subject], decode, pending_limit=3) as slow,
        hub.follow([subject], decode) as quick,
    ):
        for n in range(10):
            await nc.publish(subject, b"%d" % n)
        # The quick one gets all ten as they come, while the slow one reads nothing.
        assert [await received(quick, 1) for _ in range(10)] == [[b"%d" % n] for n in range(10)]
        assert (slow.pending(), slow.dropped) == (3, 7)
        assert await received(slow, 3) == [b"7", b"8", b"9"]  # the newest kept
        warnings = [r for r in caplog.records if "too slow" in r.getMessage()]
        assert len(warnings) == 1  # once while it was behind, not once per message
        # Caught up, it receives again and is warned again only if it falls behind anew.
        for n in range(10, 14):
            await nc.publish(subject, b"%d" % n)
        assert await received(quick, 4) == [b"10", b"11", b"12", b"13"]
        assert (await received(slow, 3), slow.dropped) == ([b"11", b"12", b"13"], 8)
        assert len([r for r in caplog.records if "too slow" in r.getMessage()]) == 2
