"""Command figures counted from the event log: rate, drops and confirmation-to-outcome latency."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from domain.application import PlantApplication
from projections.command_metrics import CommandMetrics
from tests.unit.domain.plant import T0, make_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def follow(app: PlantApplication, metrics: CommandMetrics, after: int) -> None:
    notifications = app.recorder.select_notifications(start=after + 1, limit=1000)
    await metrics.on_notifications(notifications)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(app: PlantApplication) -> UUID:
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=1200, at=T0)
    return ticket.command_id


async def test_counts_requests_drops_and_the_latency_from_confirmation_to_outcome() -> None:
    app = make_app()
    clock = Clock()
    start = app.recorder.max_notification_id() or 0

    async def log_end() -> int:
        return start

    metrics = CommandMetrics(app, log_end, clock=clock)
    assert await metrics.load_position() == start

    done, failed, unanswered = request(app), request(app), request(app)
    for step, command_id in enumerate((done, failed), start=1):
        app.confirm_command(actor="ana", command_id=command_id, totp_step=step, at=at(1))
        app.record_dispatch(command_id, at(1.1))
    app.record_write_succeeded(done, 1200, at(1.25))
    app.record_write_failed(failed, "exception code 4", at(1.75))
    app.expire_command(unanswered, at(60))
    await follow(app, metrics, start)

    assert metrics.requested == 3
    assert metrics.dropped == {"write_failed": 1, "expired": 1}
    assert metrics.mean_latency_seconds() == 0.5  # (0.25 + 0.75) / 2
    assert metrics.requests_per_second() == 3 / 60
    clock.now += 61
    assert metrics.requests_per_second() == 0.0


async def test_what_happened_before_it_started_is_not_counted() -> None:
    app = make_app()
    request(app)
    end = app.recorder.max_notification_id() or 0

    async def log_end() -> int:
        return end

    metrics = CommandMetrics(app, log_end)
    await metrics.load_position()
    await follow(app, metrics, 0)  # the tail may replay older events for other followers
    assert metrics.requested == 0
