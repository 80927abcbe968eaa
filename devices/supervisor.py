"""One device's supervisor: the only task that touches its connection.

The connection is a small state machine (:class:`~domain.messages.ConnectionState`)::

    STOPPED ──run()──▶ CONNECTING ──connect ok──▶ CONNECTED ──loss──▶ DISCONNECTED
                         ▲     │                   │    ▲                │
                         │     └──── refused ──────┼────┼──────────────▶ │ retries with backoff
                         └──── scheduled reconnect ┘    └── connect ok ──┘
    (any state) ──cancelled──▶ STOPPED

Every change of state is published as a :class:`DeviceStatus`, and the current
state again as a heartbeat every ``heartbeat_seconds``. While connected the
supervisor polls on a fixed grid (``start + k * period``: a slow cycle skips
ticks instead of drifting) and publishes one :class:`TelemetryBatch` per cycle.
A tag that cannot be read is published ``bad``, holding its last known value
(:mod:`devices.last_known`), with the reason ``read_failed`` (or
``invalid_value``). On a loss it publishes one batch with every tag so held,
reason ``comm_loss``, and a ``disconnected`` status; it tries again at once,
then every ``reconnect_delay_seconds``, the delay growing with jitter up to
``reconnect_max_seconds`` (:mod:`devices.backoff`; both 5 s by default, the
seeds' fixed delay). ``force_reconnect_every_sec`` rotates a healthy
connection; ``max_consecutive_fails`` polls in which no tag read good count as
a loss (seed 003).

An outage is logged when it starts and once more when the device reads good
again, with how long it lasted and how many attempts failed
(:class:`~support.repeated_log.RepeatedLog`), not at every attempt.

The device's alarm conditions (the tags' ``alarms``, the device's
``comm_loss_alarm``) are evaluated here, at the source, by an
:class:`~devices.alarm_evaluator.AlarmEvaluator`: after each batch it
publishes and each change of the connection, and whenever an on- or off-delay
runs out between polls, the supervisor publishes every
:class:`~domain.messages.AlarmTransition` through the sink.

Writes are checked against the tag catalogue when submitted, then wait in a
bounded queue (full: refused at once with ``busy``) that the run loop serves
between polls, on the same connection; while the device is offline they are
answered ``device_offline``. A write the driver fails is ``write_failed`` only
when the device wrote nothing for certain; a connection lost mid-write, or a
write left without an answer that says what became of it, is
``outcome_unknown`` (:func:`_failed_write`), which the dispatcher settles by
reading the tag back. A write left unanswered does not end the session.

Time comes from an injected ``clock`` (monotonic seconds) and ``sleep`` so tests
drive it; sample timestamps are wall-clock UTC.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from devices.alarm_evaluator import AlarmEvaluator
from devices.backoff import Backoff
from devices.device_errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceRequestError,
    WriteOutcomeUnknown,
)
from devices.driver import BAD_READING, Driver, Reading
from devices.last_known import LastKnownValues
from domain.errors import InvalidWrite, NotWritable, OutOfLimits, UnknownDevice, UnknownTag
from domain.messages import (
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    Quality,
    QualityReason,
    Sample,
    TagValue,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
    format_ts,
)
from plantfile.catalog_builder import device_catalog
from plantfile.plant import DeviceConfig, PlantConfig, reconnect_of
from plantfile.tags import TagConfig, TagValueError, to_engineering, to_raw
from support.cancellation import raise_if_cancelling
from support.clock import utc_now
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The wire's resolution (format_ts): two batches of a device closer than this would
# share a history row, and the second, a change of quality, would be lost.
_WIRE_RESOLUTION = timedelta(milliseconds=1)


class TelemetrySink(Protocol):
    """Where a supervisor's output goes. Implementations never raise: they log and count."""

    async def publish_batch(self, batch: TelemetryBatch) -> None: ...

    async def publish_status(self, status: DeviceStatus) -> None: ...

    async def publish_alarm(self, transition: AlarmTransition) -> None: ...


@dataclass(frozen=True, slots=True)
class SupervisionPolicy:
    poll_seconds: float = 1.0
    force_reconnect_every_sec: float | None = None
    max_consecutive_fails: int = 10
    heartbeat_seconds: float = 10.0
    # Writes come from operators through the domain's rate limit; more than this
    # waiting means the device is stuck, so further writes are refused as busy.
    write_queue_size: int = 16
    # The plant file's reconnect_delay_seconds and reconnect_max_seconds.
    backoff_base: float = 5.0
    backoff_cap: float = 5.0
    # Where in the period the device's polls fall (0 ≤ phase < 1). A fleet spreads
    # its devices over the period, so they do not all poll in the same instant.
    poll_phase: float = 0.0

    @classmethod
    def for_device(cls, plant: PlantConfig, device: DeviceConfig) -> SupervisionPolicy:
        reconnect = reconnect_of(plant, device)
        return cls(
            poll_seconds=device.poll_seconds or plant.poll_seconds,
            force_reconnect_every_sec=plant.force_reconnect_every_sec,
            max_consecutive_fails=plant.max_consecutive_fails,
            backoff_base=reconnect.delay,
            backoff_cap=reconnect.longest,
            poll_phase=stable_fraction(device.id),
        )


@dataclass(slots=True)
class SupervisorCounters:
    """Monotonic counters for metrics."""

    cycles: int = 0
    failed_cycles: int = 0
    # Read and publish time of the polls, for the poll cycle time metric.
    cycle_seconds_total: float = 0.0
    last_cycle_seconds: float = 0.0
    samples_published: int = 0
    reconnects: int = 0
    writes: int = 0
    writes_refused_busy: int = 0
    # Writes that arrived, or waited, past the deadline their dispatcher set.
    writes_refused_late: int = 0
    alarm_transitions: int = 0


@dataclass(frozen=True, slots=True)
class _WriteJob:
    request: WriteRequest
    reply: asyncio.Future[WriteReply]
    expires_at: float  # on the supervisor's clock; math.inf when the request sets none

    def resolve(self, reply: WriteReply) -> None:
        # The submitter may have given up (cancelled) or been answered already.
        if not self.reply.done():
            self.reply.set_result(reply)


class _SessionEnd(NamedTuple):
    reason: str
    planned: bool  # a scheduled rotation, not a failure: reconnect at once, no bad batch


class DeviceSupervisor:
    def __init__(
        self,
        config: DeviceConfig,
        driver: Driver,
        sink: TelemetrySink,
        *,
        policy: SupervisionPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._config = config
        self._driver = driver
        self._sink = sink
        self._policy = policy or SupervisionPolicy()
        self._clock = clock
        # Deadlines of writes are wall-clock times set by the dispatcher (see WriteRequest).
        self._wall_clock = wall_clock
        self._sleep = sleep
        # A lost device is tried again at once: most losses are a dropped socket.
        self._backoff = Backoff(
            self._policy.backoff_base, self._policy.backoff_cap, rng or random.Random(),
            immediate_first=True,
        )  # fmt: skip
        self._outage = RepeatedLog(log, "outage of device", clock=clock)
        self._last_known = LastKnownValues()
        self._last_batch_ts: datetime | None = None
        self._catalog = device_catalog(config)
        self._alarms = AlarmEvaluator(config, clock)
        self._writes: asyncio.Queue[_WriteJob] = asyncio.Queue(
            maxsize=self._policy.write_queue_size
        )
        self._write_queued = asyncio.Event()
        self._state = ConnectionState.STOPPED
        self._detail = ""
        self._ever_connected = False
        self._next_heartbeat = 0.0
        self.counters = SupervisorCounters()

    @property
    def device_id(self) -> str:
        return self._config.id

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def queued_writes(self) -> int:
        return self._writes.qsize()

    async def run(self) -> None:
        """Supervise the device until cancelled."""
        self._next_heartbeat = self._clock() + self._policy.heartbeat_seconds
        await self._set_state(ConnectionState.CONNECTING, "starting")
        try:
            while True:
                raise_if_cancelling()
                end = await self._session()
                if end.planned:
                    await self._set_state(ConnectionState.CONNECTING, end.reason)
                    continue
                await self._lost(end.reason)
                await self._idle_until(self._clock() + self._backoff.next_delay())
        finally:
            self._state = ConnectionState.STOPPED
            self._refuse_queued("supervisor stopped")
            await self._driver.close()
            await self._publish_status()

    async def submit_write(self, request: WriteRequest) -> WriteReply:
        """Check the request, queue it for the run loop and wait for its reply."""
        refusal = self._check(request) or self._late(request)
        if refusal is not None:
            return refusal
        if self._state is ConnectionState.STOPPED:
            return _offline(request, "supervisor is not running")
        expires_at = (
            math.inf
            if request.expires_in_ms is None
            else self._clock() + request.expires_in_ms / 1000.0
        )
        job = _WriteJob(request, asyncio.get_running_loop().create_future(), expires_at)
        try:
            self._writes.put_nowait(job)
            self._write_queued.set()
        except asyncio.QueueFull:
            self.counters.writes_refused_busy += 1
            return WriteReply.failure(
                request.tag, WriteErrorKind.BUSY, f"{self._writes.maxsize} writes already waiting"
            )
        return await job.reply

    # -- the connection ------------------------------------------------------------------

    async def _session(self) -> _SessionEnd:
        """Connect, then poll and serve writes until the connection ends; say why it ended."""
        try:
            await self._driver.connect()
            return await self._connected()
        except DeviceConnectionError as exc:
            return _SessionEnd(exc.reason, planned=False)
        except Exception as exc:
            # The one place that must survive a driver's unknown failure (a bug, an
            # unexpected library error): it is a connection loss, never a dead device.
            log.exception("device %s: driver failed unexpectedly", self.device_id)
            return _SessionEnd(f"driver failure: {exc!r}", planned=False)
        finally:
            await self._driver.close()

    async def _connected(self) -> _SessionEnd:
        policy = self._policy
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        await self._set_state(ConnectionState.CONNECTED, "")
        if self.device_id not in self._outage:  # during an outage, its end says it
            log.info("device %s: connected", self.device_id)
        connected_at = self._clock()
        next_poll = connected_at + policy.poll_phase * policy.poll_seconds
        fails = 0
        while True:
            raise_if_cancelling()
            rotate = policy.force_reconnect_every_sec
            if rotate is not None and self._clock() - connected_at >= rotate:
                return _SessionEnd(f"scheduled reconnect after {rotate:g} s", planned=True)
            await self._idle_until(next_poll)
            if await self._poll():
                fails = 0
                self._backoff.reset()
                self._outage.ended(self.device_id)
            else:
                fails += 1
                if fails >= policy.max_consecutive_fails:
                    return _SessionEnd(f"{fails} consecutive polls without a good value", False)
            next_poll = next_tick(next_poll, policy.poll_seconds, self._clock())

    async def _lost(self, reason: str) -> None:
        self._outage.happened(self.device_id, reason)
        if self._state is not ConnectionState.DISCONNECTED:
            ts = self._batch_ts()
            held = tuple(
                self._last_known.held(tag, QualityReason.COMM_LOSS, ts) for tag in self._config.tags
            )
            await self._publish(TelemetryBatch(self.device_id, ts, held))
        await self._set_state(ConnectionState.DISCONNECTED, reason)

    async def _poll(self) -> bool:
        """Read every tag once and publish the batch; whether any tag read good."""
        started = self._clock()
        readings = await self._driver.read(self._config.tags)
        ts = self._batch_ts()
        samples = tuple(
            self._sample(tag, readings.get(tag.name, BAD_READING), ts) for tag in self._config.tags
        )
        await self._publish(TelemetryBatch(self.device_id, ts, samples))
        elapsed = self._clock() - started
        self.counters.cycles += 1
        self.counters.cycle_seconds_total += elapsed
        self.counters.last_cycle_seconds = elapsed
        good = any(sample.quality is Quality.GOOD for sample in samples)
        if not good:
            self.counters.failed_cycles += 1
        return good

    # -- waiting, writes and heartbeats ----------------------------------------------------

    async def _idle_until(self, deadline: float) -> None:
        """Wait for ``deadline``, serving writes as they come and heartbeats when due."""
        while True:
            raise_if_cancelling()
            now = self._clock()
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self._policy.heartbeat_seconds
                await self._publish_status()
            alarm_due = self._alarms.next_due()
            if alarm_due is not None and now >= alarm_due:
                await self._publish_alarms(self._alarms.tick())
                alarm_due = self._alarms.next_due()
            if now >= deadline:
                return
            if self._writes.empty():
                wake = min(deadline, self._next_heartbeat)
                if alarm_due is not None:
                    wake = min(wake, alarm_due)
                await self._wait_for_write(wake - now)
            else:
                # No await between taking a job and _serve_write: a taken job is always answered.
                await self._serve_write(self._writes.get_nowait())

    async def _wait_for_write(self, wait_seconds: float) -> None:
        """Return when a write is queued, or after ``wait_seconds`` of the injected sleep."""
        self._write_queued.clear()
        signal = asyncio.ensure_future(self._write_queued.wait())
        timer = asyncio.ensure_future(self._sleep(wait_seconds))
        try:
            await asyncio.wait({signal, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
            timer.cancel()

    async def _serve_write(self, job: _WriteJob) -> None:
        if job.reply.done():
            return
        request = job.request
        if self._clock() >= job.expires_at:
            job.resolve(
                WriteReply.failure(
                    request.tag,
                    WriteErrorKind.EXPIRED,
                    f"not written: waited over {request.expires_in_ms} ms for the device",
                )
            )
            return
        late = self._late(request)
        if late is not None:
            job.resolve(late)
            return
        # Answers the submitter if the driver fails unexpectedly or the supervisor is stopped.
        reply = WriteReply.failure(
            request.tag, WriteErrorKind.OUTCOME_UNKNOWN, "write interrupted, outcome unknown"
        )
        try:
            reply = await self._execute(request)
        except DeviceConnectionError as exc:
            reply = _failed_write(request.tag, exc)
            raise
        finally:
            job.resolve(reply)

    async def _execute(self, request: WriteRequest) -> WriteReply:
        if self._state is not ConnectionState.CONNECTED:
            return _offline(request, f"device {self.device_id} is offline: {self._detail}")
        tag = self._config.tag(request.tag)
        assert tag is not None  # _check() refused unknown tags before queueing
        if request.op == "write":
            try:
                await self._driver.write(tag, to_raw(tag, request.value))
            except TagValueError as exc:
                return WriteReply.failure(tag.name, WriteErrorKind.OUT_OF_LIMITS, str(exc))
            except (DeviceRequestError, WriteOutcomeUnknown) as exc:
                return _failed_write(tag.name, exc)  # the connection is still up
            self.counters.writes += 1
        readings = await self._driver.read([tag])
        value, not_good = _engineering(tag, readings.get(tag.name, BAD_READING))
        if not_good is not None:
            kind = (
                WriteErrorKind.OUTCOME_UNKNOWN
                if request.op == "write"
                else WriteErrorKind.WRITE_FAILED
            )
            return WriteReply.failure(tag.name, kind, "read-back failed")
        return WriteReply(ok=True, tag=tag.name, read_back=value)

    def _check(self, request: WriteRequest) -> WriteReply | None:
        """The second safety net behind the domain's: the same catalogue, checked again here."""
        try:
            if request.op == "read":
                self._catalog.lookup(self.device_id, request.tag)
            else:
                self._catalog.check_write(self.device_id, request.tag, request.value)
        except InvalidWrite as exc:
            return WriteReply.failure(request.tag, _refusal_kind(exc), str(exc))
        return None

    def _late(self, request: WriteRequest) -> WriteReply | None:
        """The refusal of a write its dispatcher has given up on (past its deadline)."""
        if request.op != "write" or not request.past_deadline(self._wall_clock()):
            return None
        self.counters.writes_refused_late += 1
        assert request.deadline is not None  # past_deadline() is False without one
        log.warning(
            "%s: write of %s for command %s refused: its deadline %s has passed",
            self.device_id, request.tag, request.command_id, format_ts(request.deadline),
        )  # fmt: skip
        return WriteReply.failure(
            request.tag,
            WriteErrorKind.EXPIRED,
            f"not written: its deadline {format_ts(request.deadline)} has passed"
            " (the dispatcher no longer waits for it)",
        )

    def _refuse_queued(self, reason: str) -> None:
        while not self._writes.empty():
            job = self._writes.get_nowait()
            job.resolve(_offline(job.request, reason))

    # -- samples and publishing ----------------------------------------------------------

    def _sample(self, tag: TagConfig, reading: Reading, ts: datetime) -> Sample:
        value, not_good = _engineering(tag, reading)
        if not_good is not None:
            return self._last_known.held(tag, not_good, ts)
        return self._last_known.good(tag, value, ts)

    def _batch_ts(self) -> datetime:
        """Now, and always later on the wire than the device's previous batch."""
        ts = utc_now()
        previous = self._last_batch_ts
        if previous is not None and ts < previous + _WIRE_RESOLUTION:
            ts = previous + _WIRE_RESOLUTION
        self._last_batch_ts = ts
        return ts

    async def _set_state(self, state: ConnectionState, detail: str) -> None:
        changed = state is not self._state
        self._state, self._detail = state, detail
        if changed:
            await self._publish_status()
            if state in (ConnectionState.CONNECTED, ConnectionState.DISCONNECTED):
                connected = state is ConnectionState.CONNECTED
                await self._publish_alarms(self._alarms.connection(connected, utc_now()))

    async def _publish_status(self) -> None:
        await self._sink.publish_status(
            DeviceStatus(
                device=self.device_id,
                state=self._state,
                ts=utc_now(),
                detail=self._detail,
                reconnects=self.counters.reconnects,
            )
        )

    async def _publish(self, batch: TelemetryBatch) -> None:
        await self._sink.publish_batch(batch)
        self.counters.samples_published += len(batch.samples)
        await self._publish_alarms(self._alarms.evaluate(batch))

    async def _publish_alarms(self, transitions: list[AlarmTransition]) -> None:
        for transition in transitions:
            await self._sink.publish_alarm(transition)
            self.counters.alarm_transitions += 1


def stable_fraction(name: str) -> float:
    """A number in [0, 1) that depends only on ``name``: the same phase after every restart."""
    return zlib.crc32(name.encode()) / 2**32


def next_tick(previous: float, period: float, now: float) -> float:
    """The first time on the grid ``previous + k * period`` after ``now`` (missed ticks skipped)."""
    return previous + max(1, math.floor((now - previous) / period) + 1) * period


def _engineering(tag: TagConfig, reading: Reading) -> tuple[TagValue, QualityReason | None]:
    """The engineering value of a good reading, or None and why the reading is not good."""
    if reading.quality is not Quality.GOOD or reading.value is None:
        return None, QualityReason.READ_FAILED
    value = to_engineering(tag, reading.value)
    # A float register can hold NaN or infinity, which JSON (and the sample contract) cannot.
    if isinstance(value, float) and not math.isfinite(value):
        return None, QualityReason.INVALID_VALUE
    return value, None


def _refusal_kind(error: InvalidWrite) -> WriteErrorKind:
    if isinstance(error, UnknownTag | UnknownDevice):
        return WriteErrorKind.UNKNOWN_TAG
    if isinstance(error, NotWritable):
        return WriteErrorKind.NOT_WRITABLE
    if isinstance(error, OutOfLimits):
        return WriteErrorKind.OUT_OF_LIMITS
    return WriteErrorKind.BAD_REQUEST  # ValueNotNumeric: the value's type does not fit the tag


def _failed_write(tag: str, error: DeviceError) -> WriteReply:
    """The reply to a request the driver failed: ``write_failed`` only when the device wrote
    nothing for certain; otherwise it may have, and only reading the tag back tells."""
    if isinstance(error, DeviceRequestError):
        return WriteReply.failure(tag, WriteErrorKind.WRITE_FAILED, error.reason)
    if isinstance(error, DeviceConnectionError):
        why = f"connection lost: {error.reason}"
    else:
        why = f"outcome unknown: {error.reason}"
    return WriteReply.failure(tag, WriteErrorKind.OUTCOME_UNKNOWN, why)


def _offline(request: WriteRequest, reason: str) -> WriteReply:
    return WriteReply.failure(request.tag, WriteErrorKind.DEVICE_OFFLINE, reason)
