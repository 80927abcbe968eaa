"""Subscriptions live only as long as the access token they were opened with.

A subscription is authenticated once, when it starts; without this bound a
token revoked by expiry would keep streaming to its holder for as long as the
socket stays open. At the token's ``expires_at`` the stream ends with an
``unauthenticated`` error, and the client subscribes again with a fresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TypeVar

from graphql import GraphQLError

from api.auth import Principal
from api.context import UNAUTHENTICATED

T = TypeVar("T")

EXPIRED_MESSAGE = "access token expired: subscribe again with a fresh token"


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def while_authenticated(
    user: Principal, updates: AsyncGenerator[T, None], clock: Callable[[], datetime] = _utc_now
) -> AsyncIterator[T]:
    """Yield ``updates`` until ``user``'s token expires, then raise ``unauthenticated``."""
    try:
        while True:
            remaining = (user.expires_at - clock()).total_seconds()
            if remaining <= 0:
                raise GraphQLError(EXPIRED_MESSAGE, extensions={"code": UNAUTHENTICATED})
            try:
                update = await asyncio.wait_for(anext(updates), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                continue  # the loop's check raises: the token has just expired
            yield update
    finally:
        with contextlib.suppress(RuntimeError):  # already closed by the timeout's cancel
            await updates.aclose()
