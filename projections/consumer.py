"""A durable JetStream pull consumer that feeds one projection.

What it promises to the projection's handler:

- At least once. A message is acked only after the handler has returned, so the
  handler must have committed its write by then. The consumer is durable
  (explicit ack), so a restart resumes after the last acked message. Where it
  starts the first time, when the durable is created, is the caller's ``start``.
- Redelivery happens. A message is delivered again after a transient failure, and
  may then arrive after newer ones: handlers are idempotent and order-safe.
- One bad message never stops the consumer, and is never dropped silently. A
  message the decoder refuses (it raises ``ValueError``: a
  :class:`~domain.messages.MalformedMessage`, or an
  :class:`~projections.storable.Unstorable` for data no store should take), and
  a message whose data the handler refuses (it raises one of the projection's
  ``refused`` exception types, such as a PostgreSQL data error), is copied to
  the dead-letter stream with the reason (:mod:`projections.dead_letter`), then
  terminated (never redelivered). When the handler refuses a batch, the batch is
  halved until the messages at fault are found: the others are written and
  acked, each once. If the dead letter cannot be stored, the message is not
  settled: it is nak'ed and comes back, as after a transient failure.
- A transient failure (one of the projection's ``transient`` exception types,
  such as its database being down) naks what is not yet settled with a delay, is
  logged, and the loop backs off exponentially before fetching again. Any other
  exception is a bug: it propagates out of :meth:`DurableConsumer.run`, and
  JetStream redelivers the unacked batch after ``ack_wait`` once the projection
  runs again.
- A handler that does not return within ``handler_timeout`` (half of
  ``ack_wait`` unless told) is cancelled, and that is a transient failure too:
  a store that stops answering holds the consumer up for a bounded time, and
  its messages are nak'ed before JetStream would deliver them again
  (docs/decisions/0034-projections-ride-out-their-stores-outages.md). The handler's
  own clean-up after the cancel must be bounded as well: the read models' pool
  has a statement timeout for that.
- What it did is counted in :attr:`DurableConsumer.counters`.
- In-flight work is bounded by ``max_ack_pending``: JetStream stops delivering
  when that many messages wait for their ack.
- NATS itself away (stopped, restarting, unreachable): a fetch that fails is
  logged and tried again with the same backoff while the client reconnects,
  and the consumer goes on where it stopped.
- A durable deleted on the server while the consumer runs (an operator's
  mistake, a server that lost it) is made again when a fetch finds nothing,
  from the first message this consumer has not settled: nothing is skipped,
  and what it had acked is not handed over again.

Each consumer of the plant (the live state, the history, the alarm recorder)
is described once by a :class:`Feed`: the stream and subjects it reads, its
durable name, how it decodes a message, which failures are transient and which
mean the store refuses the data. :meth:`Feed.consumer` makes its
:class:`DurableConsumer`. A new durable starts, unless told otherwise, from
everything the stream still retains.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from domain.messages import MalformedMessage
from projections.dead_letter import DeadLetterNotStored, DeadLetters, Refusal, RefusalKind
from projections.storable import Unstorable
from support.cancellation import raise_if_cancelling

log = logging.getLogger(__name__)

T = TypeVar("T")

# Turns a message into what the handler wants, None for a message the projection
# ignores (acked at once), or raises ValueError (MalformedMessage, Unstorable) for
# one it refuses. OverflowError counts as such a refusal too: a decoder is a pure
# function of the bytes, and Python raises it for a number or a date it cannot hold.
Decoder = Callable[[str, bytes], T | None]
Handler = Callable[[list[T]], Awaitable[object]]

# What a fetch or a consumer lookup fails with while NATS is away: JetStream's 503
# as the server stops, a closed or reconnecting connection, a request timed out.
NATS_UNAVAILABLE: tuple[type[Exception], ...] = (nats.errors.Error,)


class HandlerTimedOut(Exception):
    """The handler did not return within the consumer's handler timeout, and was cancelled."""


@dataclass
class ConsumerCounters:
    """What a consumer has done since it started."""

    # Fetches that found nothing new within the fetch timeout.
    fetch_timeouts: int = 0
    # Batches left unsettled after a transient failure (a timed-out handler among them).
    transient_failures: int = 0
    # Messages nak'ed after those failures, to come back after the backoff.
    naked: int = 0


class DurableConsumer(Generic[T]):
    """Fetches batches from a durable pull consumer, hands them to ``handler``, acks.

    ``refused`` are the handler's exceptions that mean its store refuses the data;
    the messages at fault go to ``dead_letters`` (a publisher of its own on ``js``
    unless one is given).

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
        refused: tuple[type[Exception], ...] = (),
        dead_letters: DeadLetters | None = None,
        start: DeliverPolicy = DeliverPolicy.ALL,
        batch: int = 256,
        max_ack_pending: int = 1024,
        ack_wait_seconds: float = 30.0,
        handler_timeout_seconds: float | None = None,
        fetch_timeout_seconds: float = 5.0,
        min_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        if not 0 < batch <= max_ack_pending:
            raise ValueError(f"batch {batch} must be between 1 and max_ack_pending")
        if handler_timeout_seconds is None:
            handler_timeout_seconds = ack_wait_seconds / 2
        if not 0 < handler_timeout_seconds < ack_wait_seconds:
            raise ValueError(
                f"handler timeout {handler_timeout_seconds} s must be positive and shorter"
                f" than ack_wait ({ack_wait_seconds} s)"
            )
        self._js = js
        self._stream = stream
        self._durable = durable
        self._handler = handler
        self._decode = decode
        self._transient = transient
        # All leave the messages unsettled, to come back after a pause.
        self._retried: tuple[type[Exception], ...] = (
            *transient,
            DeadLetterNotStored,
            HandlerTimedOut,
        )
        self._refused = refused
        self._dead_letters = dead_letters or DeadLetters(js)
        self._batch = batch
        self._handler_timeout = handler_timeout_seconds
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
        self._nats_failures = 0
        self.counters = ConsumerCounters()
        # Where a durable deleted on the server resumes: the stream sequence of the first
        # message not settled here (nak'ed ones, else the one after the last seen).
        self._unsettled: set[int] = set()
        self._next_unseen = 1
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
            info = await self._js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            info = await self._js.add_consumer(self._stream, self._config)
        self._resume_after(info)

    async def run(self) -> None:
        """Consume until :meth:`stop`; creates the durable consumer if it does not exist."""
        await self.ensure()
        sub = await self._js.pull_subscribe_bind(durable=self._durable, stream=self._stream)
        self._running = True
        try:
            while not self._stopping.is_set():
                raise_if_cancelling()  # nats-py's fetch may have swallowed our cancel
                try:
                    msgs = await self._next_batch(sub)
                    if not msgs and await self._made_again():
                        sub = await self._bound_again(sub)
                except NATS_UNAVAILABLE as exc:
                    await self._nats_unavailable(exc)
                    # A fetch from a durable already gone is refused as if NATS were
                    # away (503, no responders): ask, once NATS may answer again.
                    with contextlib.suppress(*NATS_UNAVAILABLE):
                        if await self._made_again():
                            sub = await self._bound_again(sub)
                    continue
                self._nats_failures = 0
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

    async def _nats_unavailable(self, exc: Exception) -> None:
        self._nats_failures += 1
        delay = min(self._max_backoff, self._min_backoff * 2 ** (self._nats_failures - 1))
        log.warning(
            "%s: NATS unavailable (failure %d in a row), fetching again in %.1f s: %r",
            self._durable,
            self._nats_failures,
            delay,
            exc,
        )
        await self._pause(delay)

    def _resume_after(self, info: ConsumerInfo) -> None:
        """Nothing this consumer settles from now on comes before the durable's ack floor."""
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else None
        self._next_unseen = max(self._next_unseen, (floor or 0) + 1)

    async def _bound_again(
        self, sub: JetStreamContext.PullSubscription
    ) -> JetStreamContext.PullSubscription:
        await sub.unsubscribe()
        return await self._js.pull_subscribe_bind(durable=self._durable, stream=self._stream)

    async def _made_again(self) -> bool:
        """Make the durable again if the server no longer has it; whether it had to.

        A fetch from a deleted durable waits out its timeout with nothing, as
        from an idle one, or is refused as if NATS were away: only after one
        of those is it worth asking.
        """
        try:
            info = await self._js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            pass
        else:
            self._resume_after(info)
            return False
        start = min(self._unsettled, default=self._next_unseen)
        log.warning(
            "%s: the durable consumer is gone from the server; made again from sequence %d",
            self._durable,
            start,
        )
        config = dataclasses.replace(
            self._config,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
        )
        await self._js.add_consumer(self._stream, config)
        return True

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
            self.counters.fetch_timeouts += 1
            return []

    async def _process(self, msgs: list[Msg]) -> None:
        settled: set[int] = set()  # id() of the messages acked or dead-lettered
        try:
            writes: list[tuple[Msg, T]] = []
            for msg in msgs:
                try:
                    item = self._decode(msg.subject, msg.data)
                except (ValueError, OverflowError) as exc:
                    await self._dead_letter(msg, _decoding_refusal(exc), settled)
                    continue
                if item is None:
                    await self._ack(msg, settled)
                else:
                    writes.append((msg, item))
            await self._write(writes, settled)
        except self._retried as exc:
            unsettled = [msg for msg in msgs if id(msg) not in settled]
            self._failures += 1
            self.counters.transient_failures += 1
            delay = min(self._max_backoff, self._min_backoff * 2 ** (self._failures - 1))
            log.warning(
                "%s: %d messages not written (failure %d in a row), retrying in %.1f s: %r",
                self._durable,
                len(unsettled),
                self._failures,
                delay,
                exc,
            )
            for msg in unsettled:
                await msg.nak(delay=delay)
                self._unsettled.add(msg.metadata.sequence.stream)
            self.counters.naked += len(unsettled)
            await self._pause(delay)
            return
        self._failures = 0

    async def _write(self, part: list[tuple[Msg, T]], settled: set[int]) -> None:
        """Hand ``part`` to the handler and ack it; if the data is refused, halve it.

        The halves go in order, the first before the second, so a handler sees
        a device's messages in the order of the stream; it is idempotent, so
        writing again what a refused batch may have half-written is safe.
        """
        if not part:
            return
        try:
            await self._handle([item for _, item in part])
        except self._refused as exc:
            if isinstance(exc, self._transient):
                raise
            if len(part) > 1:
                middle = len(part) // 2
                await self._write(part[:middle], settled)
                await self._write(part[middle:], settled)
            else:
                reason = f"{type(exc).__name__}: {exc}"
                await self._dead_letter(
                    part[0][0], Refusal(RefusalKind.REFUSED_BY_STORE, reason), settled
                )
            return
        for msg, _ in part:
            await self._ack(msg, settled)

    async def _handle(self, items: list[T]) -> None:
        deadline = asyncio.timeout(self._handler_timeout)
        try:
            async with deadline:
                await self._handler(items)
        except TimeoutError as exc:
            if deadline.expired():  # ours, not a timeout the handler raised itself
                raise HandlerTimedOut(
                    f"{len(items)} messages not handled within {self._handler_timeout} s"
                ) from exc
            raise

    async def _dead_letter(self, msg: Msg, refusal: Refusal, settled: set[int]) -> None:
        await self._dead_letters.put(msg, self._durable, refusal)
        await msg.term()
        self._settled(msg, settled)

    async def _ack(self, msg: Msg, settled: set[int]) -> None:
        await msg.ack()
        self._settled(msg, settled)

    def _settled(self, msg: Msg, settled: set[int]) -> None:
        settled.add(id(msg))
        position = msg.metadata.sequence.stream
        self._unsettled.discard(position)
        self._next_unseen = max(self._next_unseen, position + 1)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _decoding_refusal(exc: ValueError | OverflowError) -> Refusal:
    if isinstance(exc, Unstorable):
        return Refusal(exc.kind, str(exc))
    # Our own reasons read on their own; Python's need the exception's name.
    reason = str(exc) if isinstance(exc, MalformedMessage) else f"{type(exc).__name__}: {exc}"
    return Refusal(RefusalKind.MALFORMED, reason)


@dataclass(frozen=True, slots=True)
class Feed(Generic[T]):
    """What one consumer of the plant reads, and how (see the module's docstring)."""

    stream: str
    durable: str
    filter_subject: str
    decode: Decoder[T]
    transient: tuple[type[Exception], ...]
    # What the handler raises when its store refuses the data itself, and only
    # that: those messages are dead-lettered, while anything else is a bug.
    refused: tuple[type[Exception], ...]

    def consumer(
        self,
        js: JetStreamContext,
        handler: Handler[T],
        *,
        dead_letters: DeadLetters | None = None,
        stream: str | None = None,
        durable: str | None = None,
        filter_subject: str | None = None,
        start: DeliverPolicy = DeliverPolicy.ALL,
        batch: int = 256,
        ack_wait_seconds: float = 30.0,
        min_backoff_seconds: float = 0.5,
    ) -> DurableConsumer[T]:
        """The durable consumer that hands this feed to ``handler``; ``await .run()`` it.

        ``stream``, ``durable`` and ``filter_subject`` replace the feed's own (a
        prefixed durable name, a test's subject). Up to four batches wait for
        their acknowledgement, and never fewer than 1024 messages. Refused
        messages go to ``dead_letters``, by default a publisher of the
        consumer's own into the ``DEADLETTER`` stream; a process shares one, so
        that ``/metrics`` counts them all.
        """
        return DurableConsumer(
            js,
            stream or self.stream,
            durable or self.durable,
            filter_subject or self.filter_subject,
            handler,
            decode=self.decode,
            transient=self.transient,
            refused=self.refused,
            dead_letters=dead_letters,
            start=start,
            batch=batch,
            max_ack_pending=max(batch * 4, 1024),
            ack_wait_seconds=ack_wait_seconds,
            min_backoff_seconds=min_backoff_seconds,
        )
