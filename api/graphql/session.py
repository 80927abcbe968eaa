"""Subscriptions live only as long as their session and the access token of their socket.

A subscription is authenticated when it starts; without a bound a token would
keep streaming to its holder for as long as the socket stays open. The stream
ends with an ``unauthenticated`` error when the token expires, and earlier if
its session ends (logout, revocation, a reused refresh token, the operator
disabled): that is checked every ``recheck_seconds`` (15 s by default,
``Services.session_recheck_seconds``). The token is the one the socket holds
at each check: a ``refreshToken`` sent over the socket
(:mod:`api.socket_handler`) carries its subscriptions on to the new token's
expiry, the same one at which the socket itself is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

from api.context import Caller, PlantContext
from support.clock import utc_now

T = TypeVar("T")


async def while_authenticated(
    caller: Caller,
    updates: AsyncGenerator[T, None],
    recheck: Callable[[], Awaitable[Caller]],
    *,
    recheck_seconds: float,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncGenerator[T, None]:
    """Yield ``updates`` while ``recheck()`` does not raise, rechecked at least at each expiry.

    ``recheck()`` checks the token and the session anew and returns the caller
    as they are now, or raises ``unauthenticated``; its ``expires_at`` is when
    to check next at the latest. The next update is awaited as a task that a
    recheck does not cancel: cancelling an async generator's ``anext`` would
    end the generator itself.
    """
    waiting: asyncio.Future[T] | None = None
    try:
        while True:
            remaining = (caller.expires_at - clock()).total_seconds()
            if remaining <= 0:
                # Nothing more is sent on this token: only on one refreshed meanwhile.
                caller = await recheck()
                continue
            if waiting is None:
                waiting = asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({waiting}, timeout=min(remaining, recheck_seconds))
            if not done:
                caller = await recheck()
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
    """``updates`` while ``caller``'s session lasts and its socket's token is valid."""
    return while_authenticated(
        caller,
        updates,
        partial(context.caller, fresh=True),
        recheck_seconds=context.services.session_recheck_seconds,
    )
