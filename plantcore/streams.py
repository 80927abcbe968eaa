"""The JetStream streams the supervisors and the event relay publish into.

TELEMETRY carries telemetry and device status, ALARMS the alarm transitions,
EVENTS the domain events relayed from the event store, DEADLETTER what the
projections and the alarm recorder could not store. Supervisors publish
into them and projections consume them with durable consumers, so they must
exist before either starts; the composition root (and the tests) create them
here, idempotently.
"""

from __future__ import annotations

import dataclasses

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from audit.checkpoints import audit_stream_config
from eventstore.event_relay import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX

TELEMETRY_SUBJECTS = ["plant.telemetry.>", "plant.status.>"]
ALARM_SUBJECTS = ["plant.alarms.>"]


async def ensure_telemetry_stream(
    js: JetStreamContext, name: str = "TELEMETRY", max_age_hours: int = 72
) -> None:
    """The stream of telemetry and status, kept 72 hours by default.

    Each message carries the id its supervisor's buffer gave it as
    ``Nats-Msg-Id``: one sent again within the two-minute duplicate window (an
    acknowledgement lost, a process killed before it removed what was stored)
    is stored once. The window is short because JetStream keeps every id of
    it in memory, and this is the busiest stream; the projections store a
    later resend once anyway (history by device, tag and time, live state by
    time).
    """
    # When the disk budget is reached the oldest samples go first: history
    # already holds them, and a projection that far behind must catch up anyway.
    await _ensure_stream(js, _limits_stream(name, TELEMETRY_SUBJECTS, max_age_hours))


async def ensure_alarm_stream(
    js: JetStreamContext,
    name: str = "ALARMS",
    max_age_hours: int = 720,
    *,
    duplicate_window_seconds: float = 600.0,
) -> None:
    """The stream of alarm transitions, kept 30 days by default.

    Each transition carries its id as ``Nats-Msg-Id``: one sent again within
    the ten-minute duplicate window (by the buffer after a lost
    acknowledgement, or by the next start of a plant core killed before it
    removed it) is stored once. Transitions are few, so the window can outlast
    a restart by a service manager; the alarm recorder records a later resend
    once anyway. The alarm journal is the event store; the stream only has to
    outlast a recorder that is down, so here too the oldest transitions may go
    first.
    """
    config = _limits_stream(name, ALARM_SUBJECTS, max_age_hours)
    await _ensure_stream(js, dataclasses.replace(config, duplicate_window=duplicate_window_seconds))


async def ensure_event_stream(
    js: JetStreamContext,
    name: str = EVENTS_STREAM,
    max_age_hours: int = 720,
    *,
    subject_prefix: str = EVENTS_SUBJECT_PREFIX,
    duplicate_window_seconds: float = 600.0,
) -> None:
    """The stream of domain events (``<subject_prefix>.>``), kept 30 days by default.

    The event relay (:mod:`eventstore.event_relay`) is its only publisher; each
    event carries its id as ``Nats-Msg-Id``, and a publish retried within the
    ten-minute duplicate window is stored once. The event store keeps every
    event for good, so here too the oldest may go first.
    """
    config = _limits_stream(name, [f"{subject_prefix}.>"], max_age_hours)
    await _ensure_stream(js, dataclasses.replace(config, duplicate_window=duplicate_window_seconds))


async def ensure_deadletter_stream(
    js: JetStreamContext,
    name: str = DEADLETTER_STREAM,
    max_age_hours: int = 720,
    max_bytes: int = 256 * 1024**2,
) -> None:
    """The messages consumers refused (``plant.deadletter.<consumer>``), kept 30 days.

    Long enough for someone to notice the count in ``/metrics``, look at each and
    replay it once the cause is fixed. Capped at 256 MiB so that a publisher gone
    wrong cannot fill the disk: beyond it the oldest go first, because a
    consumer must always be able to put the next one away and move on. The
    two-minute duplicate window outlasts a redelivery after a lost ack.
    """
    config = _limits_stream(name, [f"{DEADLETTER_SUBJECT_PREFIX}.>"], max_age_hours)
    await _ensure_stream(js, dataclasses.replace(config, max_bytes=max_bytes))


def _limits_stream(name: str, subjects: list[str], max_age_hours: int) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_hours * 3600.0,
        duplicate_window=120.0,
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def ensure_audit_stream(js: JetStreamContext, config: StreamConfig | None = None) -> None:
    """The stream that keeps the signed checkpoints of the event log (docs/audit.md)."""
    await _ensure_stream(js, config or audit_stream_config())
