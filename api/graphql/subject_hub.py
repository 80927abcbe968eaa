"""One NATS subscription per subject for every live view of the process that follows it.

A live view subscribes first and reads its snapshot after, so that nothing
published in between is missed: :meth:`SubjectHub.follow` has the follower
receiving every subject's messages when it is entered. However many views
follow a subject, the process holds one NATS subscription to it, opened by
the first and closed when the last leaves; each message is decoded once
(``decode``) and the same value handed to every follower.

Each follower has a queue of its own, so a slow one never holds up the
others: it holds up to :data:`PENDING_MESSAGES_LIMIT` messages per subject it
follows; past that the oldest pending one is dropped, counted
(:attr:`Follower.dropped`) and logged, once each time the follower falls
behind. A subscriber too slow for the stream loses messages, never the
connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

T = TypeVar("T")

# Messages a slow follower may have waiting, per subject it follows, before the oldest go.
PENDING_MESSAGES_LIMIT = 1000


class Follower(Generic[T]):
    """One live view's messages, as ``(subject, decoded value)``, in each subject's order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._pending: deque[tuple[str, T]] = deque()
        self._arrived = asyncio.Event()
        self._behind = False

    def put(self, subject: str, value: T) -> None:
        if len(self._pending) >= self.limit:
            self._pending.popleft()
            self.dropped += 1
            if not self._behind:
                self._behind = True
                log.warning(
                    "a live view too slow for its stream: dropping its oldest messages"
                    " (%d pending, %d dropped so far)",
                    self.limit,
                    self.dropped,
                )
        self._pending.append((subject, value))
        self._arrived.set()

    def pending(self) -> int:
        return len(self._pending)

    def __aiter__(self) -> Follower[T]:
        return self

    async def __anext__(self) -> tuple[str, T]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        item = self._pending.popleft()
        if not self._pending:
            self._behind = False  # caught up: falling behind again is logged again
        return item


@dataclass(eq=False)
class _Shared:
    """A subject's NATS subscription, its decoder and the followers it feeds."""

    decode: Callable[[Msg], Any]
    followers: set[Follower[Any]] = field(default_factory=set)
    subscription: Subscription | None = None

    async def deliver(self, message: Msg) -> None:
        value = self.decode(message)
        for follower in self.followers:
            follower.put(message.subject, value)


class SubjectHub:
    """The process's NATS subscriptions of live views, one per subject and decoder."""

    def __init__(self, nats: NatsClient) -> None:
        self._nats = nats
        self._shared: dict[tuple[str, Callable[[Msg], Any]], _Shared] = {}
        self._lock = asyncio.Lock()

    def subscriptions(self) -> int:
        """How many NATS subscriptions the hub holds now."""
        return len(self._shared)

    def followers(self, subject: str) -> int:
        """How many followers ``subject``'s messages go to now."""
        return sum(len(s.followers) for (name, _), s in self._shared.items() if name == subject)

    @asynccontextmanager
    async def follow(
        self,
        subjects: Sequence[str],
        decode: Callable[[Msg], T],
        *,
        pending_limit: int = PENDING_MESSAGES_LIMIT,
    ) -> AsyncIterator[Follower[T]]:
        """Every message of ``subjects`` from now on, decoded by ``decode`` once for all.

        The follower holds up to ``pending_limit`` messages per subject it follows.
        """
        chosen = list(dict.fromkeys(subjects))
        follower: Follower[T] = Follower(pending_limit * max(1, len(chosen)))
        joined: list[tuple[str, Callable[[Msg], Any]]] = []
        try:
            for subject in chosen:
                key = (subject, decode)
                await self._join(key, follower)
                joined.append(key)
            yield follower
        finally:
            for key in joined:
                await self._leave(key, follower)

    async def _join(self, key: tuple[str, Callable[[Msg], Any]], follower: Follower[Any]) -> None:
        async with self._lock:
            shared = self._shared.get(key)
            if shared is None:
                shared = _Shared(key[1])
                # The NATS client's own pending limit (its default) is not the followers':
                # the callback only queues, and a slow follower must not cost the others.
                shared.subscription = await self._nats.subscribe(key[0], cb=shared.deliver)
                self._shared[key] = shared
            shared.followers.add(follower)

    async def _leave(self, key: tuple[str, Callable[[Msg], Any]], follower: Follower[Any]) -> None:
        # Forgotten at once, even if the unsubscription below is cancelled: a follower
        # that has left is never fed again, and the next to join subscribes anew.
        shared = self._shared[key]
        shared.followers.discard(follower)
        if shared.followers:
            return
        del self._shared[key]
        if shared.subscription is not None:
            await shared.subscription.unsubscribe()
