"""The supervisor's own logic, against an in-memory driver and a clock the test moves."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from devices.device_errors import (
    DeviceConnectionError,
    DeviceRequestError,
    WriteOutcomeUnknown,
)
from devices.supervisor import DeviceSupervisor, SupervisionPolicy, next_tick
from domain.messages import (
    ConnectionState,
    Quality,
    QualityReason,
    Sample,
    TelemetryBatch,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
    format_ts,
)
from plantfile.plant import PlantConfig
from plantfile.protocols.modbus import ModbusDevice
from tests.support import eventually, unique
from tests.unit.devices.fakes import FakeClock, FakeDriver, RecordingSink
from tests.unit.devices.test_backoff import Highest

CONNECTING, CONNECTED, DISCONNECTED = (
    ConnectionState.CONNECTING,
    ConnectionState.CONNECTED,
    ConnectionState.DISCONNECTED,
)
TAGS: list[dict[str, Any]] = [
    {"name": "speed", "address": 0, "type": "uint16", "unit": "rpm"},
    {
        "name": "pressure", "address": 1, "type": "int16", "scale": 0.1, "unit": "bar",
        "writable": True, "low": 0, "high": 250,
    },
    {"name": "running", "address": 2, "type": "bool", "writable": True},
    {"name": "temperature", "address": 3, "type": "float32", "unit": "°C"},
    # Limits wider than the type: the codec is the last line before the wire.
    {"name": "trim", "address": 5, "type": "uint16", "writable": True, "low": -10, "high": 10},
]  # fmt: skip
RAW = {"speed": 1500, "pressure": 1234, "running": True, "temperature": 61.5, "trim": 0}
SEED = 42
WALL_T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
POLICY = SupervisionPolicy(poll_seconds=1.0, heartbeat_seconds=1e9, max_consecutive_fails=3)


@dataclass
class Rig:
    policy: SupervisionPolicy = POLICY
    clock: FakeClock = field(default_factory=FakeClock)
    sink: RecordingSink = field(default_factory=RecordingSink)
    device: str = field(default_factory=lambda: unique("press"))
    # The wall clock deadlines are read on; moved by the tests that need it.
    wall: datetime = WALL_T0
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.driver = FakeDriver(RAW, self.clock)
        self.supervisor = self.build(self.policy)

    def build(self, policy: SupervisionPolicy) -> DeviceSupervisor:
        config = ModbusDevice.model_validate(
            {"id": self.device, "protocol": "modbus", "modbus": {"host": "plc"}, "tags": TAGS}
        )
        return DeviceSupervisor(
            config, self.driver, self.sink, policy=policy, clock=self.clock,
            sleep=self.clock.sleep, rng=self.rng, wall_clock=lambda: self.wall,
        )  # fmt: skip

    def start(self, policy: SupervisionPolicy | None = None) -> None:
        if policy is not None:
            self.supervisor = self.build(policy)
        self.task = asyncio.create_task(self.supervisor.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})

    def states(self) -> list[ConnectionState]:
        return self.sink.states()

    def published_state(self) -> ConnectionState | None:
        return self.states()[-1] if self.sink.statuses else None

    async def next_cycle(self) -> None:
        """Let the supervisor reach its next sleep, then wake it."""
        await until(lambda: self.clock.sleeping)
        self.clock.advance_to_next_wake()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    yield rig
    await rig.stop()


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> None:
        assert condition()

    # The supervisor runs on the fake clock: a short interval only keeps the test quick.
    await eventually(probe, timeout=5.0, interval=0.002)


async def connect_after_refusals(rig: Rig, refusals: int) -> None:
    """Refuse the next ``refusals`` connects, waking the supervisor at each retry it waits for,
    until it polls good values again."""
    rig.driver.refuse_connects = refusals
    connects = rig.driver.connects + refusals + 1
    while rig.driver.connects < connects:
        await until(lambda: rig.clock.sleeping or rig.driver.connects == connects)
        if rig.driver.connects < connects:
            rig.clock.advance_to_next_wake()
    await until(lambda: rig.sink.batches[-1].samples[0].quality is Quality.GOOD)


def waits_between_connects(rig: Rig) -> list[float]:
    times = rig.driver.connect_times
    return [later - earlier for earlier, later in pairwise(times)]


def by_tag(batch: TelemetryBatch) -> dict[str, Sample]:
    return {sample.tag: sample for sample in batch.samples}


# -- polling ------------------------------------------------------------------------------


async def test_each_poll_publishes_one_scaled_batch_on_a_steady_grid(rig: Rig) -> None:
    rig.driver.read_seconds = 0.3
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    batch = rig.sink.batches[0]
    assert batch.device == rig.device
    values = {sample.tag: sample.value for sample in batch.samples}
    assert values == {
        "speed": 1500,
        "pressure": pytest.approx(123.4),
        "running": True,
        "temperature": 61.5,
        "trim": 0,
    }
    assert {s.tag: s.unit for s in batch.samples}["pressure"] == "bar"
    assert all(sample.quality is Quality.GOOD and sample.ts == batch.ts for sample in batch.samples)
    assert rig.states() == [CONNECTING, CONNECTED]

    await rig.next_cycle()
    await until(lambda: len(rig.sink.batches) == 2 and rig.clock.sleeping)
    # Each read takes 0.3 s of the 1 s period: the next poll stays on the grid.
    assert rig.clock.sleeps == [pytest.approx(0.7), pytest.approx(0.7)]
    assert rig.supervisor.counters.cycles == 2
    assert rig.supervisor.counters.samples_published == 2 * len(TAGS)
    assert rig.supervisor.counters.last_cycle_seconds == pytest.approx(0.3)
    assert rig.supervisor.counters.cycle_seconds_total == pytest.approx(0.6)


async def test_a_poll_phase_shifts_every_poll_within_the_period(rig: Rig) -> None:
    rig.start(replace(POLICY, poll_phase=0.25))
    await until(lambda: rig.published_state() is CONNECTED and rig.clock.sleeping)
    assert rig.sink.batches == []  # the first poll waits for its phase
    for _ in range(3):
        await rig.next_cycle()
        await until(lambda: rig.clock.sleeping)
    assert rig.clock.sleeps[:3] == [pytest.approx(0.25), pytest.approx(1.0), pytest.approx(1.0)]
    assert len(rig.sink.batches) == 3


def test_a_fleet_spreads_its_devices_over_the_period_the_same_way_each_time() -> None:
    plant = PlantConfig.model_validate({"plant_id": "p", "devices": []})
    phases = {
        name: SupervisionPolicy.for_device(plant, rig_device(name)).poll_phase
        for name in (f"press-{n}" for n in range(200))
    }
    assert all(0.0 <= phase < 1.0 for phase in phases.values())
    assert len(set(phases.values())) == 200
    # Spread over the period: every tenth of it holds some devices.
    assert {int(phase * 10) for phase in phases.values()} == set(range(10))
    assert (
        SupervisionPolicy.for_device(plant, rig_device("press-7")).poll_phase == phases["press-7"]
    )


def rig_device(device_id: str) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {"id": device_id, "protocol": "modbus", "modbus": {"host": "plc"}, "tags": TAGS}
    )


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [(0.0, 0.0, 1.0), (0.0, 0.3, 1.0), (0.0, 1.0, 2.0), (0.0, 2.5, 3.0), (10.0, 10.99, 11.0)],
)
def test_a_slow_cycle_skips_ticks_instead_of_drifting(
    previous: float, now: float, expected: float
) -> None:
    assert next_tick(previous, 1.0, now) == pytest.approx(expected)


async def test_a_non_finite_float_is_a_bad_sample_holding_the_last_good_value(rig: Rig) -> None:
    rig.driver.values["temperature"] = math.nan
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    never_read = by_tag(rig.sink.batches[0])["temperature"]
    assert (never_read.value, never_read.quality, never_read.reason, never_read.value_ts) == (
        None, Quality.BAD, QualityReason.INVALID_VALUE, None,
    )  # fmt: skip
    rig.sink.batches[0].encode()  # still valid JSON

    rig.driver.values["temperature"] = 61.5
    await rig.next_cycle()
    await until(lambda: len(rig.sink.batches) == 2 and rig.clock.sleeping)
    rig.driver.values["temperature"] = math.inf
    await rig.next_cycle()
    await until(lambda: len(rig.sink.batches) == 3)
    held = by_tag(rig.sink.batches[2])["temperature"]
    assert (held.value, held.quality, held.reason) == (61.5, Quality.BAD, "invalid_value")
    assert held.value_ts == rig.sink.batches[1].ts


# -- losing and regaining the connection --------------------------------------------------


async def test_a_lost_connection_holds_the_last_values_as_bad_and_is_retried_at_once(
    rig: Rig,
) -> None:
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    good = rig.sink.batches[0]
    rig.driver.drop_on_next_read = True
    rig.clock.advance_to_next_wake()

    await until(lambda: rig.published_state() is CONNECTED and len(rig.sink.batches) == 3)
    lost = rig.sink.batches[1]
    assert lost.ts > good.ts  # a change of quality: a row of its own in the history
    assert [(s.tag, s.value, s.quality, s.reason, s.value_ts) for s in lost.samples] == [
        (s.tag, s.value, Quality.BAD, "comm_loss", good.ts) for s in good.samples
    ]
    assert rig.states() == [CONNECTING, CONNECTED, DISCONNECTED, CONNECTED]
    assert "reset by peer" in rig.sink.statuses[2].detail
    assert rig.driver.connect_times == [0.0, 1.0]  # the first retry did not wait
    assert all(s.quality is Quality.GOOD and not s.reason for s in rig.sink.batches[2].samples)
    assert rig.supervisor.counters.reconnects == 1
    assert rig.sink.statuses[-1].reconnects == 1


async def test_a_tag_never_read_is_published_without_a_value_while_unreachable(
    rig: Rig,
) -> None:
    rig.driver.refuse_connects = 1_000
    rig.start()
    await until(lambda: rig.published_state() is DISCONNECTED and rig.clock.sleeping)
    (lost,) = rig.sink.batches
    assert {(s.value, s.quality, s.reason, s.value_ts) for s in lost.samples} == {
        (None, Quality.BAD, "comm_loss", None)
    }


async def test_refused_connects_are_retried_at_once_then_every_five_seconds_by_default(
    rig: Rig,
) -> None:
    rig.start(replace(POLICY, backoff_base=5.0, backoff_cap=5.0))
    await connect_after_refusals(rig, 4)
    assert waits_between_connects(rig) == [0.0, 5.0, 5.0, 5.0]
    assert rig.states() == [CONNECTING, DISCONNECTED, CONNECTED]
    assert len(rig.sink.all_bad()) == 1  # the loss is published once, not at every retry
    assert rig.supervisor.counters.reconnects == 0


def test_the_plant_file_defaults_are_the_seeds_five_seconds() -> None:
    plant = PlantConfig.model_validate({"plant_id": "p", "devices": []})
    policy = SupervisionPolicy.for_device(plant, rig_device("press-1"))
    assert (policy.backoff_base, policy.backoff_cap) == (5.0, 5.0)
    assert (SupervisionPolicy().backoff_base, SupervisionPolicy().backoff_cap) == (5.0, 5.0)


def test_a_device_s_reconnect_keys_override_the_plant_s() -> None:
    plant = PlantConfig.model_validate(
        {"plant_id": "p", "reconnect_delay_seconds": 2, "reconnect_max_seconds": 30, "devices": []}
    )
    device = rig_device("press-1").model_copy(update={"reconnect_delay_seconds": 0.5})
    plant_wide = SupervisionPolicy.for_device(plant, rig_device("press-2"))
    own = SupervisionPolicy.for_device(plant, device)
    assert (plant_wide.backoff_base, plant_wide.backoff_cap) == (2.0, 30.0)
    assert (own.backoff_base, own.backoff_cap) == (0.5, 30.0)


async def test_the_delay_between_refused_connects_grows_up_to_the_maximum() -> None:
    rig = Rig(rng=Highest())
    rig.start(replace(POLICY, backoff_base=1.0, backoff_cap=8.0))
    try:
        await connect_after_refusals(rig, 6)
    finally:
        await rig.stop()
    assert waits_between_connects(rig) == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]


async def test_a_good_poll_starts_the_delays_again_from_an_immediate_retry() -> None:
    rig = Rig(rng=Highest())
    rig.start(replace(POLICY, backoff_base=1.0, backoff_cap=8.0))
    try:
        await connect_after_refusals(rig, 3)
        await until(lambda: rig.clock.sleeping)
        rig.driver.drop_on_next_read = True
        rig.clock.advance_to_next_wake()
        await connect_after_refusals(rig, 2)
    finally:
        await rig.stop()
    # Lost at the poll a second after connecting and retried in that instant; then the
    # delays start again from the shortest.
    assert rig.driver.connect_times == [0.0, 0.0, 1.0, 3.0, 4.0, 5.0, 7.0]


async def test_an_outage_is_logged_when_it_starts_and_when_it_ends_not_at_every_attempt(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices.supervisor")
    rig.start(replace(POLICY, backoff_base=5.0, backoff_cap=5.0))
    await connect_after_refusals(rig, 50)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"outage of device {rig.device}: connection refused"),
        (
            logging.INFO,
            f"outage of device {rig.device} is over after 245.0 s, 50 times;"
            " last: connection refused",
        ),
    ]


async def test_an_unknown_driver_failure_is_logged_and_treated_as_a_loss(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.driver.crash_on_next_read = RuntimeError("driver bug")
    with caplog.at_level(logging.ERROR, logger="devices.supervisor"):
        rig.start()
        await until(lambda: rig.published_state() is CONNECTED and rig.clock.sleeping)
    assert any(rig.device in r.getMessage() and r.exc_info for r in caplog.records)
    assert rig.states() == [CONNECTING, CONNECTED, DISCONNECTED, CONNECTED]  # retried at once
    assert "driver bug" in rig.sink.statuses[2].detail
    assert len(rig.sink.all_bad()) == 1
    assert rig.task is not None
    assert not rig.task.done()


async def test_consecutive_polls_without_a_good_value_force_a_reconnect(rig: Rig) -> None:
    rig.driver.bad_tags = {tag["name"] for tag in TAGS}
    rig.start()
    for _ in range(POLICY.max_consecutive_fails - 1):
        await rig.next_cycle()
    await until(lambda: rig.driver.connects == 2 and rig.clock.sleeping)
    assert rig.states() == [CONNECTING, CONNECTED, DISCONNECTED, CONNECTED]
    assert "3 consecutive polls" in rig.sink.statuses[2].detail
    # Three polls in the first session, then the first of the new one, made at once.
    assert rig.supervisor.counters.failed_cycles == 4
    rig.driver.bad_tags = set()
    await rig.next_cycle()
    await until(lambda: rig.supervisor.counters.cycles == 5)
    assert rig.supervisor.counters.failed_cycles == 4


async def test_a_loss_right_after_a_poll_still_has_a_time_of_its_own_on_the_wire(
    rig: Rig,
) -> None:
    rig.driver.bad_tags = {tag["name"] for tag in TAGS}
    rig.start(replace(POLICY, max_consecutive_fails=1))  # the poll's batch, then at once the loss's
    await until(lambda: len(rig.sink.batches) >= 2)
    polled, lost = rig.sink.batches[:2]
    assert {s.reason for s in polled.samples} == {"read_failed"}
    assert {s.reason for s in lost.samples} == {"comm_loss"}
    # Else the history's unique (device, tag, time) would keep the first and drop the change.
    assert format_ts(lost.ts) > format_ts(polled.ts)


async def test_a_tag_that_fails_to_read_holds_its_last_value_as_bad(rig: Rig) -> None:
    rig.start()
    await until(lambda: len(rig.sink.batches) == 1 and rig.clock.sleeping)
    rig.driver.bad_tags = {"pressure"}
    await rig.next_cycle()
    await until(lambda: len(rig.sink.batches) == 2 and rig.clock.sleeping)
    rig.driver.bad_tags = set()
    await rig.next_cycle()
    await until(lambda: len(rig.sink.batches) == 3)

    first, failed, again = (by_tag(batch) for batch in rig.sink.batches)
    held = failed["pressure"]
    assert (held.value, held.quality, held.reason) == (
        first["pressure"].value, Quality.BAD, QualityReason.READ_FAILED,
    )  # fmt: skip
    assert held.value == pytest.approx(123.4)
    assert (held.ts, held.value_ts) == (rig.sink.batches[1].ts, first["pressure"].ts)
    assert (failed["speed"].quality, failed["speed"].reason) == (Quality.GOOD, "")
    assert (again["pressure"].quality, again["pressure"].reason) == (Quality.GOOD, "")
    assert again["pressure"].value_ts is None


async def test_a_healthy_connection_is_rotated_on_schedule(rig: Rig) -> None:
    rig.start(SupervisionPolicy(force_reconnect_every_sec=2.5, heartbeat_seconds=1e9))
    for _ in range(3):
        await rig.next_cycle()
    await until(lambda: rig.driver.connects == 2 and rig.published_state() is CONNECTED)
    assert rig.states() == [CONNECTING, CONNECTED, CONNECTING, CONNECTED]
    assert "scheduled reconnect" in rig.sink.statuses[2].detail
    assert rig.sink.all_bad() == []
    assert rig.supervisor.counters.reconnects == 1


async def test_the_current_state_is_repeated_as_a_heartbeat(rig: Rig) -> None:
    rig.start(SupervisionPolicy(poll_seconds=1.0, heartbeat_seconds=10.0))
    await until(lambda: rig.states() == [CONNECTING, CONNECTED])
    while rig.clock.now < 10.0:
        await rig.next_cycle()
    await until(lambda: len(rig.sink.statuses) == 3)
    assert rig.states() == [CONNECTING, CONNECTED, CONNECTED]


# -- writes -------------------------------------------------------------------------------


def write(tag: str, value: float | bool | None = None, op: str = "write") -> WriteRequest:
    return WriteRequest(tag=tag, command_id=unique("cmd"), op=op, value=value)


async def connected(rig: Rig) -> None:
    rig.start()
    await until(lambda: rig.published_state() is CONNECTED and rig.clock.sleeping)


async def test_a_write_is_scaled_written_and_read_back(rig: Rig) -> None:
    await connected(rig)
    reply = await rig.supervisor.submit_write(write("pressure", 150.0))
    assert reply.ok, reply
    assert reply.read_back == pytest.approx(150.0)
    assert rig.driver.writes == [("pressure", 1500)]
    assert rig.supervisor.counters.writes == 1


async def test_a_read_request_only_reads_back(rig: Rig) -> None:
    await connected(rig)
    reply = await rig.supervisor.submit_write(write("speed", op="read"))
    assert (reply.ok, reply.read_back) == (True, 1500)
    assert rig.driver.writes == []


@pytest.mark.parametrize(
    ("request_", "kind"),
    [
        (write("nope", 1), WriteErrorKind.UNKNOWN_TAG),
        (write("nope", op="read"), WriteErrorKind.UNKNOWN_TAG),
        (write("speed", 100), WriteErrorKind.NOT_WRITABLE),
        (write("pressure", 250.1), WriteErrorKind.OUT_OF_LIMITS),
        (write("pressure", True), WriteErrorKind.BAD_REQUEST),
        (write("running", 1), WriteErrorKind.BAD_REQUEST),
    ],
)
async def test_invalid_writes_are_refused_before_reaching_the_device(
    rig: Rig, request_: WriteRequest, kind: WriteErrorKind
) -> None:
    await connected(rig)
    reply = await rig.supervisor.submit_write(request_)
    assert (reply.ok, reply.kind) == (False, kind)
    assert reply.error
    assert rig.driver.writes == []


async def test_a_value_the_register_cannot_hold_is_out_of_limits(rig: Rig) -> None:
    await connected(rig)
    reply = await rig.supervisor.submit_write(write("trim", -5))
    assert reply.kind is WriteErrorKind.OUT_OF_LIMITS
    assert "uint16" in reply.error


async def test_a_refused_write_reports_the_device_reason(rig: Rig) -> None:
    await connected(rig)
    rig.driver.write_error = DeviceRequestError(rig.device, "exception code 4")
    reply = await rig.supervisor.submit_write(write("running", False))
    assert reply.kind is WriteErrorKind.WRITE_FAILED
    assert "exception code 4" in reply.error


async def test_writes_to_an_offline_device_are_refused(rig: Rig) -> None:
    assert (await rig.supervisor.submit_write(write("running", True))).kind is (
        WriteErrorKind.DEVICE_OFFLINE
    )  # not running at all
    rig.driver.refuse_connects = 1_000
    rig.start()
    await until(lambda: rig.published_state() is DISCONNECTED and rig.clock.sleeping)
    reply = await rig.supervisor.submit_write(write("running", True))
    assert reply.kind is WriteErrorKind.DEVICE_OFFLINE
    assert "connection refused" in reply.error


async def test_a_full_write_queue_answers_busy(rig: Rig) -> None:
    rig.driver.connect_gate = asyncio.Event()  # the run loop is stuck connecting
    rig.start(SupervisionPolicy(write_queue_size=1, heartbeat_seconds=1e9))
    await until(lambda: rig.supervisor.state is CONNECTING)
    first = asyncio.create_task(rig.supervisor.submit_write(write("running", False)))
    await until(lambda: rig.supervisor.queued_writes == 1)

    second = await rig.supervisor.submit_write(write("running", True))
    assert second.kind is WriteErrorKind.BUSY
    assert rig.supervisor.counters.writes_refused_busy == 1

    rig.driver.connect_gate.set()
    reply = await first
    assert (reply.ok, reply.read_back) == (True, False)


async def test_a_write_that_waited_past_its_expiry_is_never_written(rig: Rig) -> None:
    rig.driver.connect_gate = asyncio.Event()  # the device is slow to answer
    rig.start()
    await until(lambda: rig.supervisor.state is CONNECTING)
    stale = WriteRequest(
        tag="running", command_id=unique("cmd"), op="write", value=False, expires_in_ms=500
    )
    pending = asyncio.create_task(rig.supervisor.submit_write(stale))
    await until(lambda: rig.supervisor.queued_writes == 1)

    rig.clock.advance(0.6)
    rig.driver.connect_gate.set()

    reply = await pending
    assert reply.kind is WriteErrorKind.EXPIRED
    assert "500 ms" in reply.error
    assert rig.driver.writes == []


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [("connection", "connection lost"), ("read-back", "read-back failed")],
)
async def test_a_write_whose_outcome_is_unknown_says_so(
    rig: Rig, breakage: str, reason: str
) -> None:
    await connected(rig)
    if breakage == "connection":
        rig.driver.write_error = DeviceConnectionError(rig.device, "reset by peer")
    else:
        rig.driver.bad_tags.add("running")

    reply = await rig.supervisor.submit_write(write("running", False))

    assert reply.kind is WriteErrorKind.OUTCOME_UNKNOWN
    assert reason in reply.error


async def test_a_write_left_unanswered_is_an_unknown_outcome_and_the_connection_goes_on(
    rig: Rig,
) -> None:
    await connected(rig)
    rig.driver.write_error = WriteOutcomeUnknown(rig.device, "write running: no response")

    reply = await rig.supervisor.submit_write(write("running", False))

    assert (reply.kind, reply.error) == (
        WriteErrorKind.OUTCOME_UNKNOWN,
        "outcome unknown: write running: no response",
    )
    # Late is not lost: the dispatcher's read-back is served on the same connection.
    read_back = await rig.supervisor.submit_write(write("running", op="read"))
    assert (read_back.ok, read_back.read_back) == (True, True)
    assert (rig.driver.connects, rig.supervisor.state) == (1, CONNECTED)


async def test_stopping_answers_queued_writes_and_closes_the_driver(rig: Rig) -> None:
    rig.driver.connect_gate = asyncio.Event()
    rig.start()
    await until(lambda: rig.supervisor.state is CONNECTING)
    pending = asyncio.create_task(rig.supervisor.submit_write(write("running", False)))
    await until(lambda: rig.supervisor.queued_writes == 1)
    await rig.stop()
    reply: WriteReply = await pending
    assert reply.kind is WriteErrorKind.DEVICE_OFFLINE
    assert rig.supervisor.state is ConnectionState.STOPPED
    assert rig.published_state() is ConnectionState.STOPPED
    assert not rig.driver.connected


# -- stopping ------------------------------------------------------------------------------


async def test_a_cancel_the_client_library_swallowed_still_stops_the_supervisor(rig: Rig) -> None:
    rig.driver.read_gate = asyncio.Event()
    rig.driver.swallow_cancel = True
    rig.start()
    await until(lambda: rig.driver.reading)
    assert rig.task is not None

    rig.task.cancel()
    await asyncio.wait({rig.task}, timeout=5)

    assert rig.task.cancelled()
    assert rig.published_state() is ConnectionState.STOPPED
    assert not rig.driver.connected


def deadlined(deadline: datetime) -> WriteRequest:
    return WriteRequest(
        tag="running", command_id=unique("cmd"), op="write", value=False, deadline=deadline
    )


async def test_a_write_that_arrives_past_its_deadline_is_never_written(rig: Rig) -> None:
    await connected(rig)
    # Held up on the way (a NATS outage): the dispatcher gave up on it a moment ago.
    reply = await rig.supervisor.submit_write(deadlined(WALL_T0 - timedelta(milliseconds=1)))

    assert (reply.ok, reply.kind) == (False, WriteErrorKind.EXPIRED)
    assert "deadline 2025-03-01T07:59:59.999Z has passed" in reply.error
    assert rig.driver.writes == []
    assert rig.supervisor.counters.writes_refused_late == 1


async def test_a_write_just_before_its_deadline_is_written(rig: Rig) -> None:
    await connected(rig)
    reply = await rig.supervisor.submit_write(deadlined(WALL_T0 + timedelta(milliseconds=1)))

    assert reply.ok, reply
    assert rig.driver.writes == [("running", False)]


async def test_a_write_whose_deadline_passes_in_the_queue_is_never_written(rig: Rig) -> None:
    rig.driver.connect_gate = asyncio.Event()  # the device is slow to answer
    rig.start()
    await until(lambda: rig.supervisor.state is CONNECTING)
    pending = asyncio.create_task(
        rig.supervisor.submit_write(deadlined(WALL_T0 + timedelta(seconds=2)))
    )
    await until(lambda: rig.supervisor.queued_writes == 1)

    rig.wall = WALL_T0 + timedelta(seconds=2)
    rig.driver.connect_gate.set()

    reply = await pending
    assert reply.kind is WriteErrorKind.EXPIRED
    assert rig.driver.writes == []
