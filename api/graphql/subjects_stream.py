"""The messages of several NATS subjects as one stream, subscribed before anything is read.

A live view subscribes first and reads its snapshot after, so that nothing
published in between is missed; :func:`subjects_stream` opens every
subscription when it is entered. A subscriber too slow for the stream loses
the oldest pending messages of a subject (the NATS client's pending limit),
never the connection: the handoff to the reader holds one message at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

# Messages a slow subscriber may have waiting, per subject, before NATS drops them.
PENDING_MESSAGES_LIMIT = 1000


async def _forever(handoff: asyncio.Queue[Msg]) -> AsyncIterator[Msg]:
    while True:
        yield await handoff.get()


@asynccontextmanager
async def subjects_stream(
    nats: NatsClient, subjects: Sequence[str]
) -> AsyncIterator[AsyncIterator[Msg]]:
    """Every message of ``subjects``, in the order each subject delivers it."""
    handoff: asyncio.Queue[Msg] = asyncio.Queue(maxsize=1)
    subscriptions = []
    try:
        for subject in subjects:
            subscriptions.append(
                await nats.subscribe(
                    subject, cb=handoff.put, pending_msgs_limit=PENDING_MESSAGES_LIMIT
                )
            )
        yield _forever(handoff)
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
