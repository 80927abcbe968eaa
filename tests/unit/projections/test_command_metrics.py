"""Command figures counted from the event log: rate, drops and release-to-outcome latency."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.application import DEFAULT_APPROVAL_WINDOW
from domain.command import RejectionReason
from domain.errors import CommandRefused
from domain.plant_mode import Mode
from projections.command_metrics import CommandMetrics
from tests.unit.reactors.command_plant import APPROVER, REQUESTER, CommandPlant, at


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self) -> None:
        self.plant = CommandPlant()
        self.clock = Clock()
        start = self.plant.last_id()

        async def log_end() -> int:
            return start

        self.start = start
        self.metrics = CommandMetrics(self.plant.app, log_end, clock=self.clock)

    async def follow(self) -> None:
        await self.metrics.on_notifications(self.plant.new_notifications())


@pytest.fixture
async def rig() -> Rig:
    rig = Rig()
    assert await rig.metrics.load_position() == rig.start
    return rig


async def test_counts_requests_drops_and_the_latency_from_confirmation_to_outcome(
    rig: Rig,
) -> None:
    plant, app = rig.plant, rig.plant.app
    done, failed, unanswered = (plant.request("speed", 1200) for _ in range(3))
    for command_id in (done, failed):
        plant.confirm(command_id, 1)
        app.record_dispatch(command_id, at(1.1))
    app.record_write_succeeded(done, 1200, at(1.25))
    app.record_write_failed(failed, "exception code 4", at(1.75))
    app.expire_command(unanswered, at(60))
    await rig.follow()

    metrics = rig.metrics
    assert metrics.requested == 3
    assert metrics.dropped == {"write_failed": 1, "expired": 1}
    assert metrics.mean_latency_seconds() == 0.5  # (0.25 + 0.75) / 2
    assert metrics.in_flight == 0
    assert metrics.requests_per_second() == 3 / 60
    rig.clock.now += 61
    assert metrics.requests_per_second() == 0.0


async def test_a_critical_write_is_in_flight_from_its_approval_not_its_confirmation(
    rig: Rig,
) -> None:
    plant, app = rig.plant, rig.plant.app
    command_id = plant.request("pressure", 150)
    plant.confirm(command_id, 1)
    await rig.follow()
    # Signed as a request: nothing is released while the second person is awaited.
    assert rig.metrics.in_flight == 0

    plant.approve(command_id, 61)
    await rig.follow()
    assert rig.metrics.in_flight == 1
    app.record_dispatch(command_id, at(61.1))
    app.record_write_succeeded(command_id, 150, at(61.25))
    await rig.follow()
    # The minute waiting for the approver is not the plant core's latency.
    assert rig.metrics.mean_latency_seconds() == 0.25
    assert rig.metrics.in_flight == 0


async def test_an_emergency_action_is_in_flight_from_its_request(rig: Rig) -> None:
    app = rig.plant.app
    command_id = rig.plant.request("running", False, seconds=5)
    app.record_dispatch(command_id, at(5.1))
    app.record_write_succeeded(command_id, False, at(5.5))
    await rig.follow()
    assert rig.metrics.requested == 1
    assert rig.metrics.mean_latency_seconds() == pytest.approx(0.5)


async def test_an_approval_nobody_gives_in_time_is_dropped_as_expired(rig: Rig) -> None:
    command_id = rig.plant.request("pressure", 150)
    rig.plant.confirm(command_id, 1)
    late = at(1) + DEFAULT_APPROVAL_WINDOW + timedelta(seconds=1)
    assert rig.plant.app.expire_command(command_id, late)
    await rig.follow()
    assert rig.metrics.dropped == {"write_failed": 0, "expired": 1}


async def test_declined_cancelled_and_rejected_commands_are_not_dropped_nor_left_in_flight(
    rig: Rig,
) -> None:
    plant, app = rig.plant, rig.plant.app
    declined = plant.request("pressure", 150)
    plant.confirm(declined, 1)
    app.decline_command(actor=APPROVER, command_id=declined, reason="too high", at=at(2))
    # Released, then stopped before the dispatcher wrote: no outcome will come.
    cancelled, rejected = plant.request("speed", 1200), plant.request("speed", 1300)
    plant.confirm(cancelled, 3)
    plant.confirm(rejected, 3)
    await rig.follow()
    assert rig.metrics.in_flight == 2
    app.cancel_command(actor=REQUESTER, command_id=cancelled, at=at(4))
    command = app.get_command(rejected)
    command.reject(reason=RejectionReason.READ_ONLY, detail="read-only", actor="system", at=at(4))
    app.save(command)
    await rig.follow()

    assert rig.metrics.requested == 3
    assert rig.metrics.dropped == {"write_failed": 0, "expired": 0}
    assert rig.metrics.in_flight == 0
    assert rig.metrics.mean_latency_seconds() == 0.0


async def test_a_critical_write_rejected_while_awaiting_its_approval_is_not_dropped(
    rig: Rig,
) -> None:
    command_id = rig.plant.request("pressure", 150)
    rig.plant.confirm(command_id, 1)
    rig.plant.app.set_plant_mode(mode=Mode.READ_ONLY, reason="maintenance", actor="admin", at=at(2))
    with pytest.raises(CommandRefused):
        rig.plant.approve(command_id, 3)
    await rig.follow()
    assert rig.metrics.dropped == {"write_failed": 0, "expired": 0}
    assert rig.metrics.in_flight == 0


async def test_what_happened_before_it_started_is_not_counted() -> None:
    plant = CommandPlant()
    plant.request("speed", 1200)
    end = plant.last_id()

    async def log_end() -> int:
        return end

    metrics = CommandMetrics(plant.app, log_end)
    await metrics.load_position()
    # The tail may replay older events for other followers.
    await metrics.on_notifications(plant.app.recorder.select_notifications(start=1, limit=1000))
    assert metrics.requested == 0
