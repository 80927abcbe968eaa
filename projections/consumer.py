"""A durable JetStream pull consumer that feeds one projection.

What it promises to the projection's handler:

- At least once. A message is acked only after the handler has returned, so the
  handler must have committed its write by then. The consumer is durable
  (explicit ack), so a restart resumes after the last acked message. Where it
  starts the first time, when the durable is created, is the caller's ``start``.
- Redelivery happens. A message is delivered again after a transient failure, and
  may then arrive after newer ones: handlers are idempotent and order-safe.
- Malformed payloads never block the stream: the decoder's
  :class:`~domain.messages.MalformedMessage` is logged with the subject and the
  reason, and the message is terminated (never redelivered). Nothing else is dropped.
- A transient failure (one of the projection's ``transient`` exception types,
  such as its database being down) naks the batch with a delay, is logged, and
  the loop backs off exponentially before fetching again. Any other exception is a
  bug: it propagates out of :meth:`DurableConsumer.run`, and JetStream redelivers
  the unacked batch after ``ack_wait`` once the projection runs again.
- In-flight work is bounded by ``max_ack_pending``: JetStream stops delivering
  when that many messages wait for their ack.

Each consumer of the plant (the live state, the history, the alarm recorder)
is described once by a :class:`Feed`: the stream and subjects it reads, its
durable name, how it decodes a message and which failures are transient.
:meth:`Feed.consumer` makes its :class:`DurableConsumer`. A new durable starts,
unless told otherwise, from everything the stream still retains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from domain.messages import MalformedMessage
from support.cancellation import raise_if_cancelling

log = logging.getLogger(__name__)

T = TypeVar("T")

# Turns a message into what the handler wants, None for a message the projection
# ignores (acked with its batch), or raises MalformedMessage.
Decoder = Callable[[str, bytes], T | None]
Handler = Callable[[list[T]], Awaitable[object]]


class DurableConsumer(Generic[T]):
    """Fetches batches from a durable pull consumer, hands them to ``handler``, acks.

    One instance runs once: :meth:`run` until :meth:`stop` (or cancellation);
    to resume later, make a new one with the same ``durable`` name.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        filter_subject: str,
        handler: Handler[T],
        *,
        decode: Decoder[T],
        transient: tuple[type[Exception], ...],
        start: DeliverPolicy = DeliverPolicy.ALL,
        batch: int = 256,
        max_ack_pending: int = 1024,
        ack_wait_seconds: float = 30.0,
        fetch_timeout_seconds: float = 5.0,
        min_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        if not 0 < batch <= max_ack_pending:
            raise ValueError(f"batch {batch} must be between 1 and max_ack_pending")
        self._js = js
        self._stream = stream
        self._durable = durable
        self._handler = handler
        self._decode = decode
        self._transient = transient
        self._batch = batch
        self._fetch_timeout = fetch_timeout_seconds
        self._min_backoff = min_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._config = ConsumerConfig(
            durable_name=durable,
            filter_subject=filter_subject,
            deliver_policy=start,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_seconds,
            max_ack_pending=max_ack_pending,
        )
        self._failures = 0
        self._stopping = asyncio.Event()
        self._running = False
        self._stopped = asyncio.Event()

    @property
    def durable(self) -> str:
        return self._durable

    async def ensure(self) -> None:
        """Create the durable consumer unless it exists; from then on, nothing is missed.

        An existing durable is left as it is, so it resumes where it stopped whatever
        ``start`` says now: the start position only applies to a new one.
        """
        try:
            await self._js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            await self._js.add_consumer(self._stream, self._config)

    async def run(self) -> None:
        """Consume until :meth:`stop`; creates the durable consumer if it does not exist."""
        await self.ensure()
        sub = await self._js.pull_subscribe_bind(durable=self._durable, stream=self._stream)
        self._running = True
        try:
            while not self._stopping.is_set():
                raise_if_cancelling()  # nats-py's fetch may have swallowed our cancel
                msgs = await self._next_batch(sub)
                if msgs:
                    await self._process(msgs)
        finally:
            # Without interest on its inbox the server drops our waiting pull
            # request, so nothing published from now on is delivered to us.
            await sub.unsubscribe()
            self._stopped.set()

    async def stop(self) -> None:
        """Finish (and ack) the batch in hand, then return once :meth:`run` has exited."""
        self._stopping.set()
        if self._running:
            await self._stopped.wait()

    async def _next_batch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        fetch = asyncio.ensure_future(sub.fetch(self._batch, timeout=self._fetch_timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            fetch.cancel()  # no-op when it has finished
            await asyncio.wait({fetch, stopping})
        if fetch.cancelled():
            return []
        try:
            return fetch.result()
        except TimeoutError:
            # Nothing new within the fetch timeout. nats-py raises its own
            # TimeoutError or, when the deadline runs out between its two pull
            # requests, asyncio's: both are this builtin.
            return []

    async def _process(self, msgs: list[Msg]) -> None:
        accepted: list[Msg] = []
        items: list[T] = []
        for msg in msgs:
            try:
                item = self._decode(msg.subject, msg.data)
            except MalformedMessage as exc:
                log.warning(
                    "%s: dropping malformed message on %s (stream seq %d): %s",
                    self._durable,
                    msg.subject,
                    msg.metadata.sequence.stream,
                    exc,
                )
                await msg.term()
                continue
            accepted.append(msg)
            if item is not None:
                items.append(item)
        try:
            if items:
                await self._handler(items)
        except self._transient as exc:
            self._failures += 1
            delay = min(self._max_backoff, self._min_backoff * 2 ** (self._failures - 1))
            log.warning(
                "%s: %d messages not written (failure %d in a row), retrying in %.1f s: %r",
                self._durable,
                len(accepted),
                self._failures,
                delay,
                exc,
            )
            for msg in accepted:
                await msg.nak(delay=delay)
            await self._pause(delay)
            return
        self._failures = 0
        for msg in accepted:
            await msg.ack()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


@dataclass(frozen=True, slots=True)
class Feed(Generic[T]):
    """What one consumer of the plant reads, and how (see the module's docstring)."""

    stream: str
    durable: str
    filter_subject: str
    decode: Decoder[T]
    transient: tuple[type[Exception], ...]

    def consumer(
        self,
        js: JetStreamContext,
        handler: Handler[T],
        *,
        stream: str | None = None,
        durable: str | None = None,
        filter_subject: str | None = None,
        start: DeliverPolicy = DeliverPolicy.ALL,
        batch: int = 256,
        min_backoff_seconds: float = 0.5,
    ) -> DurableConsumer[T]:
        """The durable consumer that hands this feed to ``handler``; ``await .run()`` it.

        ``stream``, ``durable`` and ``filter_subject`` replace the feed's own (a
        prefixed durable name, a test's subject). Up to four batches wait for
        their acknowledgement, and never fewer than 1024 messages.
        """
        return DurableConsumer(
            js,
            stream or self.stream,
            durable or self.durable,
            filter_subject or self.filter_subject,
            handler,
            decode=self.decode,
            transient=self.transient,
            start=start,
            batch=batch,
            max_ack_pending=max(batch * 4, 1024),
            min_backoff_seconds=min_backoff_seconds,
        )
