"""Subscriptions live only as long as the session and the access token they were opened with.

A subscription is authenticated when it starts; without a bound a token would
keep streaming to its holder for as long as the socket stays open. The stream
ends with an ``unauthenticated`` error at the token's ``expires_at``, and
earlier if its session ends (logout, revocation, a reused refresh token, the
operator disabled): that is checked every ``recheck_seconds`` (15 s by default,
``Services.session_recheck_seconds``). The client then
subscribes again with a fresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

from graphql import GraphQLError

from api.context import UNAUTHENTICATED, Caller, PlantContext
from support.clock import utc_now

T = TypeVar("T")

EXPIRED_MESSAGE = "access token expired: subscribe again with a fresh token"


async def while_authenticated(
    caller: Caller,
    updates: AsyncGenerator[T, None],
    recheck: Callable[[], Awaitable[object]],
    *,
    recheck_seconds: float,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[T]:
    """Yield ``updates`` while ``caller``'s token lasts and ``recheck()`` does not raise.

    The next update is awaited as a task that a recheck does not cancel:
    cancelling an async generator's ``anext`` would end the generator itself.
    """
    waiting: asyncio.Future[T] | None = None
    try:
        while True:
            remaining = (caller.expires_at - clock()).total_seconds()
            if remaining <= 0:
                raise GraphQLError(EXPIRED_MESSAGE, extensions={"code": UNAUTHENTICATED})
            if waiting is None:
                waiting = asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({waiting}, timeout=min(remaining, recheck_seconds))
            if not done:
                # Raises unauthenticated if the session ended meanwhile; the loop's
                # check covers the token's own expiry.
                await recheck()
                continue
            ready, waiting = waiting, None
            try:
                update = ready.result()
            except StopAsyncIteration:
                return
            yield update
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await waiting
        with contextlib.suppress(RuntimeError):  # already closed by the cancel
            await updates.aclose()


def for_session(
    context: PlantContext, caller: Caller, updates: AsyncGenerator[T, None]
) -> AsyncIterator[T]:
    """``updates`` for as long as ``caller``'s session and token last, rechecked as configured."""
    return while_authenticated(
        caller,
        updates,
        partial(context.caller, fresh=True),
        recheck_seconds=context.services.session_recheck_seconds,
    )
