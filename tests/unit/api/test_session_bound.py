"""Subscriptions end with their session or token, and rechecks do not disturb the stream.

The recheck stands for the context's: it checks the socket's token and the
session anew, and answers the caller as they are now, or raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import pytest
from graphql import GraphQLError

from api.context import Caller
from api.graphql.session import while_authenticated
from tests.support import eventually


def caller(expires_in: timedelta = timedelta(minutes=15)) -> Caller:
    return Caller(
        username="ana",
        full_name="Ana",
        session_id="s1",
        roles=("operator",),
        scopes=("plant",),
        expires_at=datetime.now(UTC) + expires_in,
    )


async def paced(items: int, gate: asyncio.Queue[None]) -> AsyncGenerator[int, None]:
    """Yields one item each time the test opens the gate."""
    for item in range(items):
        await gate.get()
        yield item


async def test_quiet_periods_are_rechecked_without_ending_the_stream() -> None:
    gate: asyncio.Queue[None] = asyncio.Queue()
    rechecks: list[int] = []
    released = asyncio.Event()

    async def recheck() -> Caller:
        rechecks.append(1)
        if len(rechecks) == 3:
            released.set()
        return ana

    ana = caller()
    stream = while_authenticated(ana, paced(2, gate), recheck, recheck_seconds=0.01)
    first = asyncio.ensure_future(anext(stream))
    await released.wait()  # three rechecks while the source was quiet
    gate.put_nowait(None)
    assert await first == 0
    gate.put_nowait(None)
    assert await anext(stream) == 1  # the source generator survived the rechecks
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_an_ended_session_ends_the_stream_as_unauthenticated() -> None:
    gate: asyncio.Queue[None] = asyncio.Queue()
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            async for item in paced(10, gate):
                yield item
        finally:
            closed.set()

    async def session_ended() -> Caller:
        raise GraphQLError("session ended: log in again", extensions={"code": "unauthenticated"})

    stream = while_authenticated(caller(), source(), session_ended, recheck_seconds=0.01)
    with pytest.raises(GraphQLError) as ended:
        await anext(stream)
    assert ended.value.extensions == {"code": "unauthenticated"}
    await stream.aclose()
    assert closed.is_set()  # the subscription's source was released


class TokenCheck:
    """A recheck answering the newest of ``valid`` while it lasts, as the socket's key would."""

    def __init__(self, *valid: Caller) -> None:
        self.valid = valid
        self.answered: list[Caller] = []

    async def __call__(self) -> Caller:
        newest = self.valid[-1]
        if newest.expires_at <= datetime.now(UTC):
            raise GraphQLError("token expired", extensions={"code": "unauthenticated"})
        self.answered.append(newest)
        return newest


async def test_an_expired_token_ends_the_stream() -> None:
    short = caller(expires_in=timedelta(milliseconds=50))
    gate: asyncio.Queue[None] = asyncio.Queue()
    stream = while_authenticated(short, paced(1, gate), TokenCheck(short), recheck_seconds=5)
    with pytest.raises(GraphQLError, match="token expired"):
        await anext(stream)


async def test_a_token_refreshed_meanwhile_carries_the_stream_past_the_first_expiry() -> None:
    short = caller(expires_in=timedelta(milliseconds=50))
    check = TokenCheck(short, caller())
    gate: asyncio.Queue[None] = asyncio.Queue()
    stream = while_authenticated(short, paced(1, gate), check, recheck_seconds=5)
    first = asyncio.ensure_future(anext(stream))

    async def rechecked_at_the_first_expiry() -> None:
        assert check.answered

    await eventually(rechecked_at_the_first_expiry)
    gate.put_nowait(None)
    assert await first == 0
