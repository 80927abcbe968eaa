"""The event relay on the real PostgreSQL and NATS: every event once, in order, whatever happens.

Each test has an event store of its own (a fresh database, so "every event of
the log" is exactly what the test wrote) and a stream and subject prefix of
its own on the shared NATS, deleted afterwards; the NATS outage test runs a
NATS server of its own that it stops and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from uuid import UUID, uuid4

import nats
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Notification, StoredEvent, TrackingRecorder
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from domain.application import PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.errors import DomainError
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from eventstore.event_relay import (
    REDACTED,
    EventRelay,
    event_id,
    event_subject,
    redact_credentials,
)
from eventstore.executor import StoreExecutor
from eventstore.postgres import event_store_env
from eventstore.tracking import PositionStore, TrackedPosition
from plantcore.streams import ensure_event_stream
from tests.support import eventually, free_port, nats_server, unique

AREA = "press-line"
RELAY_LOG = "eventstore.event_relay"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EventLog:
    """This test's event store, the relay's stream on NATS, and what it takes to compare them."""

    app: PlantApplication
    store_executor: StoreExecutor
    tracking: TrackingRecorder
    database_url: str
    device: str
    stream: str
    prefix: str
    relays: list[tuple[EventRelay, asyncio.Task[None]]] = field(default_factory=list)

    def relay(
        self,
        js: JetStreamContext,
        *,
        name: str = "event-relay",
        store_executor: StoreExecutor | None = None,
        position: PositionStore | None = None,
        batch_size: int = 200,
        publish_timeout: float = 5.0,
    ) -> EventRelay:
        store_executor = store_executor or self.store_executor
        return EventRelay(
            self.app,
            store_executor,
            js,
            position or TrackedPosition(self.tracking, store_executor, name),
            stream=self.stream,
            subject_prefix=self.prefix,
            batch_size=batch_size,
            poll_interval=0.02,
            retry_delay=0.05,
            publish_timeout=publish_timeout,
        )

    def start(self, relay: EventRelay) -> asyncio.Task[None]:
        task = asyncio.create_task(relay.run())
        self.relays.append((relay, task))
        return task

    async def notifications(self) -> list[Notification]:
        return list(
            await self.store_executor.call(self.app.recorder.select_notifications, 0, 100_000)
        )

    async def end(self) -> int:
        return await self.store_executor.call(self.app.recorder.max_notification_id) or 0

    async def burn_positions(self, count: int) -> None:
        """Use up ``count`` positions the way a rolled-back insert does: no event gets them."""

        def nextval() -> None:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                for _ in range(count):
                    conn.execute(
                        "SELECT nextval(pg_get_serial_sequence("
                        "'plantapplication_events', 'notification_id'))"
                    )

        await self.store_executor.call(nextval)

    def conflicting_insert(self) -> None:
        """An insert through the library that conflicts and rolls back, leaving a gap."""
        last = self.app.recorder.select_notifications(self.app.recorder.max_notification_id(), 1)[0]
        with contextlib.suppress(IntegrityError):
            self.app.recorder.insert_events(
                [StoredEvent(last.originator_id, last.originator_version, "x:Y.Z", b"{}")]
            )
            raise AssertionError("the conflicting insert was accepted")

    # -- writing through the domain --------------------------------------------------------

    def register(self, username: str) -> None:
        self.app.register_operator(
            username=username,
            full_name="Relay Test",
            roles=["operator"],
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            totp_secret_sealed="aesgcm:v1:c2VhbGVk",
            actor="admin",
            at=now(),
        )

    def configure(self, plant: str, generation: int) -> None:
        self.app.record_plant_configuration(
            plant_id=plant,
            devices={self.device: f"fingerprint-{generation}"},
            source="test",
            problems=[],
            actor="plantcore",
            at=now(),
        )


@pytest.fixture
async def event_log(own_database: str, nc: NatsClient) -> AsyncIterator[EventLog]:
    device = unique("press")
    catalog = TagCatalog(
        [TagLimits(device, "speed_setpoint", "rpm", True, ValueKind.NUMBER, 0.0, 1800.0)],
        {device: DeviceInfo(area=AREA)},
    )
    store_executor = StoreExecutor(max_workers=4)
    app = await store_executor.call(
        partial(PlantApplication, catalog, env=event_store_env(own_database, pool_size=6))
    )
    tracking = await store_executor.call(app.factory.tracking_recorder)
    token = uuid.uuid4().hex[:10]
    log = EventLog(
        app,
        store_executor,
        tracking,
        own_database,
        device,
        f"EVENTS-{token}",
        f"plant.test-{token}",
    )
    try:
        yield log
    finally:
        for _, task in log.relays:
            task.cancel()
        await asyncio.gather(*(task for _, task in log.relays), return_exceptions=True)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(log.stream)
        await store_executor.call(app.close)
        store_executor.shutdown()


async def stream_messages(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    info = await js.stream_info(stream)
    assert info.state.first_seq is not None
    first, last = info.state.first_seq, info.state.last_seq or 0
    return [await js.get_msg(stream, seq) for seq in range(first, last + 1)] if last else []


def expected(notification: Notification, prefix: str) -> tuple[str, str, str, bytes]:
    payload, _ = redact_credentials(notification.state)
    return (
        str(notification.id),
        event_id(notification),
        event_subject(notification.topic, prefix),
        payload,
    )


def relayed(message: RawStreamMsg) -> tuple[str, str, str, bytes]:
    headers = message.headers or {}
    assert message.subject is not None
    assert message.data is not None
    return (
        headers["Plantcore-Position"],
        headers["Nats-Msg-Id"],
        message.subject,
        message.data,
    )


async def assert_stream_is_the_log(js: JetStreamContext, log: EventLog) -> None:
    """The stream holds exactly the log's events, in log order, each once."""
    messages = await stream_messages(js, log.stream)
    notifications = await log.notifications()
    assert [relayed(m) for m in messages] == [expected(n, log.prefix) for n in notifications]


async def relayed_up_to(relay: EventRelay, log: EventLog) -> None:
    end = await log.end()

    async def probe() -> None:
        assert relay.position is not None
        assert relay.position >= end

    await eventually(probe)


# -- every event, its subject, headers and payload -----------------------------------------------


async def test_every_event_arrives_once_in_order_with_its_subject_and_headers(
    event_log: EventLog, nc: NatsClient
) -> None:
    log = event_log
    js = nc.jetstream()
    await ensure_event_stream(js, log.stream, 1, subject_prefix=log.prefix)
    relay = log.relay(js)
    log.start(relay)

    # Operators, a command, an alarm, the plant's configuration: whatever the domain records.
    ana = unique("ana")
    await log.store_executor.call(log.register, ana)
    await log.store_executor.call(
        partial(
            log.app.grant_permission,
            username=ana,
            scope=f"device:{log.device}",
            actor="admin",
            at=now(),
        )
    )
    with contextlib.suppress(DomainError):  # refused or not, the request is on record
        ticket = await log.store_executor.call(
            partial(
                log.app.request_command,
                actor=ana,
                device=log.device,
                tag="speed_setpoint",
                value=900,
                at=now(),
            )
        )
        await log.store_executor.call(
            partial(log.app.cancel_command, actor=ana, command_id=ticket.command_id, at=now())
        )
    alarm = AlarmTransition(
        transition_id=uuid4().hex, device=log.device, condition="speed_hi",
        kind=AlarmKind.HI, priority=AlarmPriority.HIGH, area=AREA, tag="speed_setpoint",
        active=True, suppressed=False, latch=False, value=1750.0, limit=1700.0,
        message="speed high", ts=now(),
    )  # fmt: skip
    await log.store_executor.call(log.app.record_alarm_transitions, [alarm], now())
    await log.store_executor.call(log.configure, "plant-a", 1)
    # An event whose payload no one can read, under a topic no class has: relayed all the same.
    odd = StoredEvent(uuid4(), 1, "legacy.module:Old Thing.Was*Renamed", b"\xff\xfe not json")
    await log.store_executor.call(log.app.recorder.insert_events, [odd])

    await relayed_up_to(relay, log)
    await assert_stream_is_the_log(js, log)

    notifications = await log.notifications()
    topics = {n.topic.rpartition(":")[2] for n in notifications}
    assert {"Operator.Registered", "Operator.PermissionGranted", "ControlCommand.Requested"} <= (
        topics
    )
    assert any(topic.startswith("Alarm.") for topic in topics)
    assert any(topic.startswith("PlantConfiguration.") for topic in topics)

    messages = await stream_messages(js, log.stream)
    by_id = {(m.headers or {})["Nats-Msg-Id"]: m for m in messages}
    for notification in notifications:
        headers = by_id[event_id(notification)].headers or {}
        assert headers["Plantcore-Aggregate-Id"] == str(notification.originator_id)
        assert headers["Plantcore-Version"] == str(notification.originator_version)
        assert headers["Plantcore-Topic"] == notification.topic

    [registered] = [m for m in messages if m.subject == f"{log.prefix}.Operator.Registered"]
    assert registered.data is not None
    assert b"argon2id" not in registered.data
    assert b'"password_hash":"[redacted]"' in registered.data.replace(b" ", b"")
    assert REDACTED.encode() in registered.data
    assert (registered.headers or {})["Plantcore-Redacted"] == "password_hash,totp_secret_sealed"

    [strange] = [
        m for m in messages if (m.headers or {})["Nats-Msg-Id"] == f"{odd.originator_id}:1"
    ]
    assert strange.subject == f"{log.prefix}.Old_Thing.Was_Renamed"
    assert strange.data == b"\xff\xfe not json"

    # The position is recorded after the acknowledgements.
    async def recorded() -> None:
        stored = await log.store_executor.call(log.tracking.max_tracking_id, "event-relay")
        assert stored == notifications[-1].id

    await eventually(recorded)
    assert (relay.published, relay.duplicates) == (len(notifications), 0)


# -- gaps ----------------------------------------------------------------------------------------


async def test_gaps_left_by_rolled_back_inserts_are_crossed_without_waiting(
    event_log: EventLog, nc: NatsClient
) -> None:
    log = event_log
    js = nc.jetstream()
    await ensure_event_stream(js, log.stream, 1, subject_prefix=log.prefix)
    await log.store_executor.call(log.configure, "plant-a", 1)
    # A gap in the history the relay starts with ...
    await log.store_executor.call(log.conflicting_insert)
    await log.store_executor.call(log.configure, "plant-a", 2)
    relay = log.relay(js)
    log.start(relay)
    await relayed_up_to(relay, log)

    # ... and gaps made while it follows the log: a conflict, then positions burnt outright.
    await log.store_executor.call(log.conflicting_insert)
    await log.burn_positions(3)
    await log.store_executor.call(log.configure, "plant-a", 3)
    await log.burn_positions(2)
    await log.store_executor.call(log.configure, "plant-a", 4)

    ids = [n.id for n in await log.notifications()]
    assert len(ids) < ids[-1], ids  # there are gaps
    missing = sorted(set(range(1, ids[-1] + 1)) - set(ids))
    assert len(missing) == 1 + 1 + 3 + 2

    end = ids[-1]

    async def crossed() -> None:
        assert relay.position == end

    # Polling every 20 ms, a relay waiting for a missing position would still be waiting.
    await eventually(crossed, timeout=3.0)
    await assert_stream_is_the_log(js, log)


# -- killed and restarted under load -------------------------------------------------------------


class Forgetful:
    """A position store that loads the recorded position but never records one.

    A relay on it acknowledges events and then "dies" before every position
    write: its successor must learn from the stream what was published.
    """

    def __init__(self, position: TrackedPosition) -> None:
        self._position = position

    async def load(self) -> int:
        return await self._position.load()

    async def save(self, position: int) -> None:
        return None


class Writer:
    """A thread appending events through the domain until stopped: configurations,
    operators (two events in one transaction) and, now and then, a rolled-back insert."""

    def __init__(self, log: EventLog, minimum: int) -> None:
        self._log = log
        self._minimum = minimum
        self.stop = threading.Event()
        self.operations = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="event-writer")

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join()

    def join(self) -> None:
        self.stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self.stop.is_set() or self.operations < self._minimum:
                n = self.operations
                if n % 10 == 3:
                    self._log.register(f"op-{n}-{uuid.uuid4().hex[:6]}")
                elif n % 15 == 7:
                    self._log.conflicting_insert()
                else:
                    self._log.configure(f"plant-{n % 12}", n)
                self.operations += 1
        except BaseException as exc:
            self.error = exc


async def test_the_relay_killed_and_restarted_under_load_loses_nothing_and_repeats_nothing(
    event_log: EventLog, nc: NatsClient
) -> None:
    log = event_log
    js = nc.jetstream()
    await ensure_event_stream(js, log.stream, 1, subject_prefix=log.prefix)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 8
    forgetful_turn = rng.randrange(1, kills)
    duplicates = 0
    acked_not_recorded = 0

    with Writer(log, minimum=300) as writer:
        await log.store_executor.call(log.configure, "seed", 0)  # the log is never empty
        for turn in range(kills):
            # Each incarnation has threads of its own, like a process, stopped with it.
            store_executor = StoreExecutor(max_workers=2)
            position = TrackedPosition(log.tracking, store_executor, "event-relay")
            relay = log.relay(
                js,
                store_executor=store_executor,
                position=Forgetful(position) if turn == forgetful_turn else position,
                batch_size=rng.choice([1, 7, 25]),
            )
            task = asyncio.create_task(relay.run())
            target = rng.randint(5, 60)

            # Killed right after its target-th acknowledgement, wherever that finds it:
            # reading the log, publishing, or between an ack and the position write.
            async def reached(
                relay: EventRelay = relay, target: int = target, task: asyncio.Task[None] = task
            ) -> None:
                assert writer.error is None
                assert relay.published >= target or task.done()

            await eventually(reached, interval=0.001)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store_executor.shutdown()
            duplicates += relay.duplicates

            recorded = (
                await log.store_executor.call(log.tracking.max_tracking_id, "event-relay") or 0
            )
            [last] = (await stream_messages(js, log.stream))[-1:]
            if int((last.headers or {})["Plantcore-Position"]) > recorded:
                acked_not_recorded += 1
        writer.join()

    assert writer.operations >= 300
    final = log.relay(js, batch_size=50)
    log.start(final)
    await relayed_up_to(final, log)
    await assert_stream_is_the_log(js, log)
    duplicates += final.duplicates

    notifications = await log.notifications()
    ids = [n.id for n in notifications]
    assert len(ids) < ids[-1], "the writer's rolled-back inserts left gaps"
    assert len(notifications) > 300
    assert acked_not_recorded >= 1, f"seed {seed}"
    # Resumed from the stream, not thanks to the duplicate window: nothing was sent twice.
    assert duplicates == 0, f"seed {seed}"


# -- NATS unavailable ----------------------------------------------------------------------------


def outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    records = [r for r in caplog.records if r.name == RELAY_LOG]
    nats_down = [r for r in records if "NATS unavailable" in r.message]
    down = [r for r in nats_down if r.levelno == logging.WARNING]
    back = [r for r in nats_down if r.levelno == logging.INFO and "over after" in r.message]
    return len(down), len(back)


async def test_with_nats_down_the_relay_retries_then_delivers_everything_once(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RELAY_LOG)
    log = event_log
    port = free_port()
    store_dir = tmp_path / "jetstream"
    with contextlib.ExitStack() as servers:
        servers.enter_context(nats_server(port, store_dir))
        client = await nats.connect(
            f"nats://127.0.0.1:{port}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
        )
        try:
            js = client.jetstream(timeout=0.5)
            await ensure_event_stream(js, log.stream, 1, subject_prefix=log.prefix)
            servers.close()  # NATS is down before the relay starts

            for generation in range(20):
                await log.store_executor.call(log.configure, "plant-a", generation)
            relay = log.relay(js, publish_timeout=0.5)
            log.start(relay)

            async def retrying() -> None:
                assert relay.retries >= 3
                assert outage_lines(caplog) == (1, 0)

            await eventually(retrying)
            assert relay.published == 0

            servers.enter_context(nats_server(port, store_dir))
            await relayed_up_to(relay, log)
            await assert_stream_is_the_log(js, log)
            assert outage_lines(caplog) == (1, 1)

            # Down again while it follows the log, events keep coming, then back.
            servers.close()
            for generation in range(20, 60):
                await log.store_executor.call(log.configure, f"plant-{generation % 3}", generation)
            retries = relay.retries

            async def retrying_again() -> None:
                assert relay.retries >= retries + 3

            await eventually(retrying_again)
            servers.enter_context(nats_server(port, store_dir))
            await relayed_up_to(relay, log)
            await assert_stream_is_the_log(js, log)
            # One warning per outage, not one per attempt.
            assert outage_lines(caplog) == (2, 2)
        finally:
            for _, task in log.relays:
                task.cancel()
            await asyncio.gather(*(task for _, task in log.relays), return_exceptions=True)
            await client.close()


# -- a stream that is not this log's ---------------------------------------------------------------


async def test_a_stream_of_another_event_store_holds_the_relay_until_it_is_purged(
    event_log: EventLog, nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RELAY_LOG)
    log = event_log
    js = nc.jetstream()
    await ensure_event_stream(js, log.stream, 1, subject_prefix=log.prefix)
    for generation in range(3):
        await log.store_executor.call(log.configure, "plant-a", generation)
    # Position 2 of another store: this log has another event there.
    stranger = Notification(
        id=2, originator_id=UUID(int=7), originator_version=1, topic="m:A.B", state=b"{}"
    )
    await js.publish(
        f"{log.prefix}.A.B",
        b"{}",
        headers={"Nats-Msg-Id": event_id(stranger), "Plantcore-Position": "2"},
    )
    relay = log.relay(js)
    task = log.start(relay)

    async def holding() -> None:
        assert relay.retries >= 3
        errors = [r for r in caplog.records if r.name == RELAY_LOG and r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "not an event of this event store" in errors[0].message

    await eventually(holding)
    assert not task.done()
    assert relay.position is None
    assert [m.seq for m in await stream_messages(js, log.stream)] == [1]

    # Purged, the stream says nothing more: the relay starts from its recorded position.
    await js.purge_stream(log.stream)
    await relayed_up_to(relay, log)
    messages = await stream_messages(js, log.stream)
    notifications = await log.notifications()
    assert [relayed(m) for m in messages] == [expected(n, log.prefix) for n in notifications]
