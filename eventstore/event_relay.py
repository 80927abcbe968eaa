"""The event relay: every stored event, once and in log order, on JetStream ``plant.events.>``.

Integrators receive the domain's events from the JetStream stream ``EVENTS``
(see ``docs/nats.md``), each on ``plant.events.<Aggregate>.<Event>``:

- the subject's last two tokens are the event class and the class it is
  nested in, from the stored topic (``domain.command:ControlCommand.Confirmed``
  is ``plant.events.ControlCommand.Confirmed``); a character NATS does not take
  in a token (anything but ASCII letters, digits, ``_`` and ``-``) becomes ``_``,
  and the topic itself is in the ``Plantcore-Topic`` header;
- ``Nats-Msg-Id`` is the event's id, ``<aggregate id>:<version>``. The library
  gives its events no id of their own, and this pair is the primary key of the
  events table: unique, and the same however often the event is published;
- ``Plantcore-Position`` is the event's position in the log (its notification
  id), ``Plantcore-Aggregate-Id`` and ``Plantcore-Version`` the pair above;
- the payload is the event's JSON as stored (decrypted and decompressed first
  should the application ever be configured with a cipher or a compressor;
  this one has neither), byte for byte, except that the value of a credential
  field (``password_hash``, ``totp_secret_sealed``, the clear ``totp_secret`` of
  old ``Registered`` events, ``refresh_hash``, an enrolment token's
  ``token_hash``) is replaced by ``"[redacted]"``
  and the ``Plantcore-Redacted`` header names the fields replaced: NATS is open
  to every integrator, and docs/security.md keeps password hashes out of
  exports. A payload that is not JSON is relayed as it is: integrators see
  every event, readable or not.

Exactly once, in order. The relay reads the log in position order and
publishes one event at a time, awaiting JetStream's acknowledgement before the
next, so the stream holds the events in log order. After each batch it records
its position (a tracking record, :class:`~eventstore.tracking.TrackedPosition`).
On start it resumes after the higher of that position and the
``Plantcore-Position`` of the stream's last message on ``plant.events.>``: the
stream itself says what was stored, so a crash between an acknowledgement and
the position write repeats nothing, however long the restart takes. A publish
whose acknowledgement was lost (a timeout, a dropped connection) is retried
only after reading the stream's last message again, and with the same
``Nats-Msg-Id``, which the stream's duplicate window (10 minutes) stores once.
That last message is also checked against the log at its position: a stream
that holds another event store's events (a database restored from an older
backup, two plant cores on one stream) holds the relay, with an error in the
log, until the stream is this store's again (purged, or another stream
configured), instead of skipping or repeating events silently. It holds
rather than fails: a restart would not mend the stream, and the rest of the
plant core (commands, alarms) does not depend on it.

Gaps in the positions are normal: a transaction that inserts events and rolls
back (a concurrency conflict) has used its sequence numbers all the same. The
relay never waits for a missing position: the library serialises inserts with
a table lock held until commit, so positions become visible in order and a
position not visible once a later one is will never appear.

Why a reader of its own rather than a :class:`~eventstore.log_tail.LogTail`
follower: the tail awaits each follower's callback before it reads on and
wants it back at once, and it starts from the lowest of its followers'
positions. A relay awaiting acknowledgements (or a NATS outage) there would
hold up the command dispatcher, the expiry sweeper and every ``commandStatus``
subscription; and a relay far behind (its first start on a long log, a long
outage) would take all of them back through the log. Handing the batches over
to a queue would keep the tail moving, but an outage would then pile the log
up in memory. With a :class:`~eventstore.notification_reader.NotificationReader`
of its own, the relay only reads the next batch once the last one is in the
stream: strict order, memory bounded by one batch, and a resume point of its
own. It polls every
``poll_interval`` (one indexed query), or at once after :meth:`EventRelay.nudge`.

Failures: while NATS or the event store is unavailable the relay retries
every ``retry_delay``, never skipping an event; it logs a warning when an
outage starts and a line when it ends, not one per attempt. An event NATS
refuses for good (larger than the server's ``max_payload``) is retried the
same way, so the relay stops there with that warning rather than skip it.

One relay per stream: two relays publishing into one stream (two plant cores
sharing NATS) must be given different stream names and subject prefixes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from contextlib import aclosing
from uuid import UUID

import nats.errors
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Notification
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from eventstore.notification_reader import NotificationReader
from eventstore.tracking import PositionStore
from support.cancellation import raise_if_cancelling
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

EVENTS_STREAM = "EVENTS"
EVENTS_SUBJECT_PREFIX = "plant.events"

MSG_ID_HEADER = "Nats-Msg-Id"
POSITION_HEADER = "Plantcore-Position"
AGGREGATE_ID_HEADER = "Plantcore-Aggregate-Id"
VERSION_HEADER = "Plantcore-Version"
TOPIC_HEADER = "Plantcore-Topic"
REDACTED_HEADER = "Plantcore-Redacted"

# Fields whose values are credentials (hashes, sealed or, in v1 events, clear secrets).
CREDENTIAL_FIELDS = (
    "password_hash",
    "totp_secret_sealed",
    "totp_secret",
    "refresh_hash",
    "token_hash",
)
REDACTED = "[redacted]"

# What the relay waits out when it cannot go on (logged once per episode).
NATS_DOWN = "NATS unavailable"
STORE_DOWN = "event store unavailable"
_CREDENTIAL_MARKERS = tuple(f'"{name}"'.encode() for name in CREDENTIAL_FIELDS)

# JetStream's "no message found" (the stream exists, nothing on the subject).
_NO_MESSAGE_FOUND = 10037

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")

# Whatever a NATS request can fail with: not connected, no reply, no stream, refused.
NATS_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, TimeoutError)


class RelayMismatch(RuntimeError):
    """The stream's last message is not the event at its position in this event store."""


# -- the message of one event -----------------------------------------------------------------


def subject_token(name: str) -> str:
    """``name`` as one NATS subject token: other characters than ``[A-Za-z0-9_-]`` become ``_``."""
    return _UNSAFE.sub("_", name) or "_"


def event_subject(topic: str, prefix: str = EVENTS_SUBJECT_PREFIX) -> str:
    """The subject of an event of stored ``topic``: ``<prefix>.<Aggregate>.<Event>``.

    ``<Event>`` is the event class's name and ``<Aggregate>`` the class it is
    nested in; for an event class at a module's top level, the module's last
    name.
    """
    module, _, path = topic.rpartition(":")
    names = path.split(".")
    aggregate = names[-2] if len(names) > 1 else module.rsplit(".", 1)[-1]
    return f"{prefix}.{subject_token(aggregate)}.{subject_token(names[-1])}"


def event_id(notification: Notification) -> str:
    """The event's id, ``<originator_id>:<originator_version>``: unique and stable."""
    return f"{notification.originator_id}:{notification.originator_version}"


def _header_value(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def event_headers(notification: Notification, redacted: Sequence[str] = ()) -> dict[str, str]:
    headers = {
        MSG_ID_HEADER: event_id(notification),
        POSITION_HEADER: str(notification.id),
        AGGREGATE_ID_HEADER: str(notification.originator_id),
        VERSION_HEADER: str(notification.originator_version),
        TOPIC_HEADER: _header_value(notification.topic),
    }
    if redacted:
        headers[REDACTED_HEADER] = ",".join(redacted)
    return headers


def redact_credentials(state: bytes) -> tuple[bytes, tuple[str, ...]]:
    """The payload with credential values replaced, and the names of the fields replaced.

    Unchanged, byte for byte, when it has no credential field or is not a JSON object.
    """
    if not any(marker in state for marker in _CREDENTIAL_MARKERS):
        return state, ()
    try:
        fields = json.loads(state)
    except ValueError:  # not JSON (nor UTF-8): relayed as it is
        return state, ()
    if not isinstance(fields, dict):
        return state, ()
    redacted = tuple(name for name in CREDENTIAL_FIELDS if name in fields)
    if not redacted:
        return state, ()
    for name in redacted:
        fields[name] = REDACTED
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode(), redacted


def last_position(message: RawStreamMsg) -> int:
    """The ``Plantcore-Position`` of a message of the stream."""
    value = str((message.headers or {}).get(POSITION_HEADER, ""))
    if not value.isdecimal():
        raise RelayMismatch(
            f"message {message.seq} of stream {message.stream} on {message.subject} has no "
            f"{POSITION_HEADER} header: it was not published by the event relay"
        )
    return int(value)


# -- the relay ---------------------------------------------------------------------------------


class EventRelay:
    """Publishes every event of ``app``'s log, in order, to a JetStream stream (module doc)."""

    def __init__(
        self,
        app: Application[UUID],
        store_executor: StoreExecutor,
        js: JetStreamContext,
        position: PositionStore,
        *,
        stream: str = EVENTS_STREAM,
        subject_prefix: str = EVENTS_SUBJECT_PREFIX,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        retry_delay: float = 1.0,
        publish_timeout: float = 5.0,
    ) -> None:
        if not all(_TOKEN.fullmatch(token) for token in subject_prefix.split(".")):
            raise ValueError(f"not a subject prefix of plain tokens: {subject_prefix!r}")
        self._app = app
        self._store_executor = store_executor
        self._js = js
        self._tracked = position
        self._stream = stream
        self._prefix = subject_prefix
        self._retry_delay = retry_delay
        self._publish_timeout = publish_timeout
        self._reader = NotificationReader(
            app,
            store_executor,
            on_store_failure=self._store_failure,
            on_store_recovered=self._event_store_recovered,
            batch_size=batch_size,
            poll_interval=poll_interval,
            retry_delay=retry_delay,
        )
        self._position: int | None = None
        self._saved = 0
        # Problems the relay waits out, each logged when it starts and when it is over.
        self._waits = RepeatedLog(log, "event relay:")
        self._mismatch = RepeatedLog(log, "event relay:", level=logging.ERROR)
        self._mismatch_problem = f"stream {stream} does not match this event store"
        #: Events stored in the stream by this relay (acknowledged as new).
        self.published = 0
        #: Publishes the stream acknowledged as duplicates (stored before, within its window).
        self.duplicates = 0
        #: Failed attempts, at NATS or at the event store, each retried.
        self.retries = 0

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def subjects(self) -> str:
        """The wildcard of every subject the relay publishes on, e.g. ``plant.events.>``."""
        return f"{self._prefix}.>"

    @property
    def position(self) -> int | None:
        """The position of the last event in the stream, ``None`` before the relay has started."""
        return self._position

    def nudge(self) -> None:
        """Read the log now instead of at the next poll."""
        self._reader.nudge()

    async def run(self) -> None:
        """Relay until cancelled."""
        position = await self._start_position()
        self._position = position
        async with aclosing(self._reader.batches(position)) as batches:
            async for batch in batches:
                for notification in batch:
                    await self._relay(notification)
                    self._position = notification.id
                await self._save(batch[-1].id)

    # -- where to start ----------------------------------------------------------------------

    async def _start_position(self) -> int:
        while True:
            raise_if_cancelling()
            try:
                tracked = await self._tracked.load()
                break
            except TRANSIENT_STORE_ERRORS as exc:
                await self._store_failed(exc)
        self._waits.ended(STORE_DOWN)
        self._saved = tracked
        published = await self._stream_position()
        if published > tracked:
            log.info(
                "event relay: resuming after position %d, the last in stream %s"
                " (position %d was recorded)", published, self._stream, tracked,
            )  # fmt: skip
        return max(tracked, published)

    async def _stream_position(self) -> int:
        """The position of the stream's last event, checked against the log (0 for none).

        Holds, retrying, while that last message is not this event store's.
        """
        while True:
            message = await self._last_message()
            if message is None:
                self._mismatch.ended(self._mismatch_problem)
                return 0
            try:
                position = await self._checked_position(message)
            except RelayMismatch as exc:
                self.retries += 1
                self._mismatch.happened(self._mismatch_problem, _detail(exc))
                await asyncio.sleep(self._retry_delay)
                continue
            self._mismatch.ended(self._mismatch_problem)
            return position

    async def _checked_position(self, message: RawStreamMsg) -> int:
        position = last_position(message)
        while True:
            raise_if_cancelling()
            try:
                found = await self._store_executor.call(
                    self._app.recorder.select_notifications, position, 1
                )
                break
            except TRANSIENT_STORE_ERRORS as exc:
                await self._store_failed(exc)
        self._waits.ended(STORE_DOWN)
        published_id = (message.headers or {}).get(MSG_ID_HEADER)
        if not found or found[0].id != position or event_id(found[0]) != published_id:
            raise RelayMismatch(
                f"its last message ({published_id} at position {position}) is not an event "
                "of this event store at that position: a stream of another store, or a store "
                "restored from an older backup. Give this plant core a stream of its own, or "
                "purge this one"
            )
        return position

    async def _last_message(self) -> RawStreamMsg | None:
        while True:
            raise_if_cancelling()
            try:
                message = await self._js.get_last_msg(self._stream, self.subjects)
            except NotFoundError as exc:
                if exc.err_code == _NO_MESSAGE_FOUND:
                    self._waits.ended(NATS_DOWN)
                    return None
                await self._nats_failed(exc)  # no such stream (yet)
            except NATS_ERRORS as exc:
                await self._nats_failed(exc)
            else:
                self._waits.ended(NATS_DOWN)
                return message

    # -- publishing --------------------------------------------------------------------------

    async def _relay(self, notification: Notification) -> None:
        payload, redacted = redact_credentials(self._stored_json(notification))
        subject = event_subject(notification.topic, self._prefix)
        resync = False
        while True:
            raise_if_cancelling()
            try:
                # After a failed attempt the event may be stored all the same (only
                # its acknowledgement lost): the stream says so, window or not.
                if resync and await self._stream_position() >= notification.id:
                    self.published += 1
                    return
                ack = await self._js.publish(
                    subject,
                    payload,
                    timeout=self._publish_timeout,
                    stream=self._stream,
                    headers=event_headers(notification, redacted),
                )
            except NATS_ERRORS as exc:
                resync = True
                await self._nats_failed(exc)
                continue
            self._waits.ended(NATS_DOWN)
            if ack.duplicate:
                self.duplicates += 1
            else:
                self.published += 1
            return

    def _stored_json(self, notification: Notification) -> bytes:
        mapper = self._app.mapper
        state = notification.state
        if mapper.cipher is None and mapper.compressor is None:
            return state
        try:
            if mapper.cipher is not None:
                state = mapper.cipher.decrypt(state)
            if mapper.compressor is not None:
                state = mapper.compressor.decompress(state)
        except Exception:
            log.exception(
                "event relay: event %s could not be decoded; relayed as stored",
                event_id(notification),
            )
            return notification.state
        return state

    # -- bookkeeping -------------------------------------------------------------------------

    async def _save(self, position: int) -> None:
        if position <= self._saved:
            return
        try:
            await self._tracked.save(position)
        except TRANSIENT_STORE_ERRORS as exc:
            # The stream holds the position too: it is saved again after the next batch.
            self.retries += 1
            self._waits.happened(STORE_DOWN, _detail(exc))
            return
        except IntegrityError:
            # Moved further already (by a write of a relay stopped just before this one).
            log.info("event relay: recorded position already past %d", position)
        self._waits.ended(STORE_DOWN)
        self._saved = position

    async def _nats_failed(self, exc: BaseException) -> None:
        self.retries += 1
        self._waits.happened(NATS_DOWN, _detail(exc))
        await asyncio.sleep(self._retry_delay)

    async def _store_failed(self, exc: BaseException) -> None:
        self._store_failure(exc)
        await asyncio.sleep(self._retry_delay)

    def _store_failure(self, exc: BaseException) -> None:
        self.retries += 1
        self._waits.happened(STORE_DOWN, _detail(exc))

    def _event_store_recovered(self) -> None:
        self._waits.ended(STORE_DOWN)


def _detail(exc: BaseException) -> str:
    return str(exc) or repr(exc)
