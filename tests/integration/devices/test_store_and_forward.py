"""Store and forward: what the supervisors publish outlives a NATS outage and a killed process.

Each test that takes NATS away runs a NATS server of its own (on a spare port,
stopped and started again by its PID with the same store), never the machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from devices.backoff import Backoff
from devices.drivers.modbus import ModbusDriver
from devices.nats_bridge import MSG_ID_HEADER, NatsTelemetrySink, OutboxForwarder, forwarding
from devices.outbox import EntryKind, Outbox
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import (
    ALARM_SUBJECT,
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    Quality,
    Sample,
    TelemetryBatch,
)
from plantcore.streams import ensure_alarm_stream, ensure_telemetry_stream
from simulators.modbus_server import ModbusSimulator
from tests.integration.devices.conftest import press_config
from tests.support import eventually, free_port, nats_server, unique

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[3]
BRIDGE_LOG = "devices.nats_bridge"
T0 = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
BUFFER_BYTES = 16 * 1024 * 1024

Message = TelemetryBatch | DeviceStatus | AlarmTransition


class OwnNats:
    """A NATS server of the test's own that it can stop and start again, and a client of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.store = tmp_path / "jetstream"
        self._running = contextlib.ExitStack()

    def start(self) -> None:
        self._running.enter_context(nats_server(self.port, self.store))

    def stop(self) -> None:
        self._running.close()

    async def connect(self) -> NatsClient:
        return await nats.connect(
            f"nats://127.0.0.1:{self.port}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=2,
        )


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[tuple[OwnNats, NatsClient]]:
    server = OwnNats(tmp_path)
    server.start()
    try:
        client = await server.connect()
        try:
            js = client.jetstream()
            await ensure_telemetry_stream(js)
            await ensure_alarm_stream(js)
            yield server, client
        finally:
            await client.close()
    finally:
        server.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    opened = Outbox.open(tmp_path / "buffer", max_bytes=BUFFER_BYTES)
    yield opened
    opened.close()


def fast_forwarder(outbox: Outbox, nc: NatsClient) -> OutboxForwarder:
    return OutboxForwarder(outbox, nc, timeout_seconds=0.5, backoff=Backoff(0.05, 0.2))


async def stored(js: JetStreamContext, stream: str, subject: str) -> list[RawStreamMsg]:
    """Every message ``stream`` holds on ``subject`` (wildcards too), in the stream's order."""
    messages: list[RawStreamMsg] = []
    seq = 1
    while True:
        try:
            message = await js.get_msg(stream, seq, subject=subject, next=True)
        except NotFoundError:
            return messages
        messages.append(message)
        assert message.seq is not None
        seq = message.seq + 1


async def until_empty(outbox: Outbox, timeout: float = 10.0) -> None:
    async def empty() -> None:
        assert len(outbox) == 0

    await eventually(empty, timeout=timeout)


def batch(device: str, second: int, speed: float) -> TelemetryBatch:
    ts = T0 + timedelta(seconds=second)
    return TelemetryBatch(device, ts, (Sample("speed", speed, Quality.GOOD, "rpm", ts),))


def transition(device: str, second: int, active: bool) -> AlarmTransition:
    return AlarmTransition(
        transition_id=unique("transition"), device=device, condition="motor_temperature_hi",
        kind=AlarmKind.HI, priority=AlarmPriority.HIGH, area="press-line",
        tag="motor_temperature", active=active, suppressed=False, latch=False, value=50.0,
        limit=48.0, message="hot", ts=T0 + timedelta(seconds=second),
    )  # fmt: skip


def status(device: str, second: int, state: ConnectionState) -> DeviceStatus:
    return DeviceStatus(device, state, T0 + timedelta(seconds=second))


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        record.levelno
        for record in caplog.records
        if record.name == BRIDGE_LOG and "NATS unavailable" in record.getMessage()
    ]


async def test_what_is_published_while_nats_is_down_arrives_in_order_once_it_is_back(
    own_nats: tuple[OwnNats, NatsClient], outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=BRIDGE_LOG)
    server, nc = own_nats
    js = nc.jetstream()
    device = unique("press")
    forwarder = fast_forwarder(outbox, nc)
    server.stop()
    published: list[Message] = [
        status(device, 0, ConnectionState.CONNECTING),
        batch(device, 1, 0.0),
        status(device, 2, ConnectionState.CONNECTED),
        transition(device, 3, active=True),
        batch(device, 3, 1500.0),
        status(device, 4, ConnectionState.CONNECTED),  # a heartbeat
        transition(device, 5, active=False),
        batch(device, 5, 1480.0),
    ]
    async with forwarding(forwarder) as sink:
        for message in published:
            await publish(sink, message)

        async def retrying() -> None:
            assert forwarder.retries >= 3

        await eventually(retrying)
        waiting = outbox.read(100)
        assert [entry.kind for entry in waiting] == [
            EntryKind.STATUS, EntryKind.TELEMETRY, EntryKind.STATUS, EntryKind.ALARM,
            EntryKind.TELEMETRY, EntryKind.TELEMETRY, EntryKind.ALARM, EntryKind.TELEMETRY,
        ]  # fmt: skip
        assert outage_lines(caplog) == [logging.WARNING]  # once, not once per attempt

        server.start()
        await until_empty(outbox)

        telemetry = await stored(js, "TELEMETRY", f"plant.*.{device}")
        alarms = await stored(js, "ALARMS", ALARM_SUBJECT.format(device=device))
        by_id = {_msg_id(message): message for message in (*telemetry, *alarms)}
        # Each stored once, under the id it waited with, as it was published (timestamps too).
        assert len(by_id) == len(telemetry) + len(alarms) == len(published)
        assert [by_id[entry.msg_id].data for entry in waiting] == [
            entry.payload for entry in waiting
        ]
        transitions = [m for m in published if isinstance(m, AlarmTransition)]
        assert [_msg_id(m) for m in alarms] == [t.transition_id for t in transitions]
        assert [decoded(by_id[entry.msg_id]) for entry in waiting] == published
        # In the order published, across both streams: one message of a device at a time.
        times = [by_id[entry.msg_id].time for entry in waiting]
        assert times == sorted(times)  # type: ignore[type-var]
        assert outage_lines(caplog) == [logging.WARNING, logging.INFO]

        # Sent again with its id, as after a crash between JetStream's ack and the removal.
        again = waiting[4]
        outbox.append(again.kind, again.device, again.subject, again.msg_id, again.payload)
        forwarder.wake()
        await until_empty(outbox)
        assert forwarder.duplicates == 1
        assert len(await stored(js, "TELEMETRY", f"plant.*.{device}")) == len(telemetry)


async def test_a_backlog_of_many_devices_goes_out_together_and_each_device_in_its_order(
    nc: NatsClient, js: JetStreamContext, outbox: Outbox
) -> None:
    devices = [unique("press") for _ in range(5)]
    sink = NatsTelemetrySink(outbox)
    for second in range(60):
        for device in devices[: 1 + second % 5]:  # some devices busier than others
            await sink.publish_batch(batch(device, second, float(second)))
    try:
        forwarder = OutboxForwarder(outbox, nc, window=3)
        assert await forwarder.flush(30)
        assert len(outbox) == 0
        for index, device in enumerate(devices):
            kept = await stored(js, "TELEMETRY", f"plant.telemetry.{device}")
            seconds = [second for second in range(60) if index <= second % 5]
            assert [decoded(message) for message in kept] == [
                batch(device, second, float(second)) for second in seconds
            ]
    finally:
        for device in devices:
            await js.purge_stream("TELEMETRY", subject=f"plant.telemetry.{device}")


async def publish(sink: NatsTelemetrySink, message: Message) -> None:
    if isinstance(message, TelemetryBatch):
        await sink.publish_batch(message)
    elif isinstance(message, DeviceStatus):
        await sink.publish_status(message)
    else:
        await sink.publish_alarm(message)


def decoded(message: RawStreamMsg) -> Message:
    assert message.subject is not None
    assert message.data is not None
    kind = message.subject.split(".")[1]
    if kind == "telemetry":
        return TelemetryBatch.decode(message.data)
    if kind == "status":
        return DeviceStatus.decode(message.data)
    return AlarmTransition.decode(message.data)


def _msg_id(message: RawStreamMsg) -> str:
    assert message.headers is not None
    return str(message.headers[MSG_ID_HEADER])


async def test_the_streams_store_a_resend_once_within_their_duplicate_windows(
    own_nats: tuple[OwnNats, NatsClient],
) -> None:
    js = own_nats[1].jetstream()
    # Long enough for a plant core killed outright to be restarted and send again.
    assert (await js.stream_info("ALARMS")).config.duplicate_window == 600.0
    assert (await js.stream_info("TELEMETRY")).config.duplicate_window == 120.0


async def test_a_message_jetstream_refuses_is_counted_and_logged_and_the_next_goes_on(
    own_nats: tuple[OwnNats, NatsClient], outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    _, nc = own_nats
    js = nc.jetstream()
    config = (await js.stream_info("TELEMETRY")).config
    config.max_msg_size = 4096
    await js.update_stream(config)
    device = unique("press")
    too_large = TelemetryBatch(
        device, T0, tuple(Sample(f"tag{n:03d}", n, Quality.GOOD, "", T0) for n in range(100))
    )
    assert len(too_large.encode()) > 4096
    async with forwarding(fast_forwarder(outbox, nc)) as sink:
        await sink.publish_batch(too_large)
        await sink.publish_batch(batch(device, 1, 1500.0))
        await until_empty(outbox)

    (kept,) = await stored(js, "TELEMETRY", f"plant.telemetry.{device}")
    assert decoded(kept) == batch(device, 1, 1500.0)
    assert outbox.figures().dropped == {("telemetry", "undeliverable"): 1}
    assert outbox.figures().forwarded == 1
    refused = [r for r in caplog.records if "JetStream refuses" in r.getMessage()]
    assert len(refused) == 1
    assert "message size exceeds maximum allowed" in refused[0].getMessage()


# A process that appends batches to the outbox as fast as it can, saying how many are in.
APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from devices.nats_bridge import NatsTelemetrySink
    from devices.outbox import Outbox
    from domain.messages import Quality, Sample, TelemetryBatch

    async def main() -> None:
        sink = NatsTelemetrySink(Outbox.open(Path(sys.argv[1]), max_bytes=16 * 1024 * 1024))
        number = 0
        while True:
            ts = datetime.now(UTC)
            sample = Sample("count", number, Quality.GOOD, "", ts)
            await sink.publish_batch(TelemetryBatch(sys.argv[2], ts, (sample,)))
            number += 1
            print(number, flush=True)

    asyncio.run(main())
    """
)


async def test_a_process_killed_while_appending_leaves_all_it_appended_for_the_next_to_forward(
    tmp_path: Path, nc: NatsClient, js: JetStreamContext
) -> None:
    directory, device = tmp_path / "buffer", unique("press")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APPENDER, str(directory), device,
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    printed: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(printed) < 500:
                line = await child.stdout.readline()
                assert line, "the appender ended before it was killed"
                printed.append(line)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    # The last count it printed before it died: appended and committed.
    printed += (await child.stdout.read()).splitlines()
    appended = int(printed[-1])

    outbox = Outbox.open(directory, max_bytes=BUFFER_BYTES)  # the lock died with the process
    try:
        left = outbox.read(100_000)
        counts = [TelemetryBatch.decode(entry.payload).samples[0].value for entry in left]
        # Everything it said was in, and perhaps the one it was appending when killed.
        assert counts == list(range(len(left)))
        assert len(left) in (appended, appended + 1)
        async with forwarding(OutboxForwarder(outbox, nc)):
            await until_empty(outbox)
        subject = f"plant.telemetry.{device}"
        info = await js.stream_info("TELEMETRY", subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == len(left)
    finally:
        outbox.close()
        await js.purge_stream("TELEMETRY", subject=f"plant.telemetry.{device}")


async def test_alarm_transitions_of_a_supervisor_through_a_nats_outage_are_stored_once_each(
    own_nats: tuple[OwnNats, NatsClient], outbox: Outbox, press: ModbusSimulator
) -> None:
    server, nc = own_nats
    js = nc.jetstream()
    config = press_config(press.port)
    subject = ALARM_SUBJECT.format(device=config.id)
    policy = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)
    async with forwarding(fast_forwarder(outbox, nc)) as sink:
        recorded = RecordedSink(sink)
        supervisor = DeviceSupervisor(config, ModbusDriver(config), recorded, policy=policy)
        running = asyncio.create_task(supervisor.run())
        try:

            async def first_states_stored() -> None:
                assert len(recorded.alarms) >= 2  # hi and hihi normal, at least
                assert len(await stored(js, "ALARMS", subject)) == len(recorded.alarms)

            await eventually(first_states_stored)
            server.stop()
            press.model.motor_temperature = 60.0  # over the hi limit of 48 °C

            async def raised_and_buffered() -> None:
                hi = [t for t in recorded.alarms if t.condition == "motor_temperature_hi"]
                assert hi[-1].active
                assert outbox.figures().entries[EntryKind.ALARM] >= 1

            await eventually(raised_and_buffered)
            server.start()
            await until_empty(outbox)
        finally:
            running.cancel()
            await asyncio.wait({running})

    alarms = await stored(js, "ALARMS", subject)
    assert [_msg_id(message) for message in alarms] == [t.transition_id for t in recorded.alarms]
    assert [message.data for message in alarms] == [t.encode() for t in recorded.alarms]


class RecordedSink:
    """The NATS sink, keeping the alarm transitions handed to it, to compare with the stream."""

    def __init__(self, inner: NatsTelemetrySink) -> None:
        self._inner = inner
        self.alarms: list[AlarmTransition] = []

    async def publish_batch(self, batch: TelemetryBatch) -> None:
        await self._inner.publish_batch(batch)

    async def publish_status(self, status: DeviceStatus) -> None:
        await self._inner.publish_status(status)

    async def publish_alarm(self, transition: AlarmTransition) -> None:
        self.alarms.append(transition)
        await self._inner.publish_alarm(transition)
