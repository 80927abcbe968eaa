"""The JetStream streams the supervisors publish into.

TELEMETRY carries telemetry and device status, ALARMS the alarm transitions.
Supervisors publish into them and projections consume them with durable
consumers, so they must exist before either starts; the composition root (and
the tests) create them here, idempotently.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

TELEMETRY_SUBJECTS = ["plant.telemetry.>", "plant.status.>"]
ALARM_SUBJECTS = ["plant.alarms.>"]


async def ensure_telemetry_stream(
    js: JetStreamContext, name: str = "TELEMETRY", max_age_hours: int = 72
) -> None:
    config = StreamConfig(
        name=name,
        subjects=TELEMETRY_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        # When the disk budget is reached the oldest samples go first: history
        # already holds them, and a projection that far behind must catch up anyway.
        discard=DiscardPolicy.OLD,
        max_age=max_age_hours * 3600.0,
        duplicate_window=120.0,
    )
    await _ensure_stream(js, config)


async def ensure_alarm_stream(
    js: JetStreamContext, name: str = "ALARMS", max_age_hours: int = 720
) -> None:
    """The stream of alarm transitions, kept 30 days by default.

    Each transition carries its id as ``Nats-Msg-Id``: a supervisor's
    re-publish within the two-minute duplicate window is stored once.
    """
    config = StreamConfig(
        name=name,
        subjects=ALARM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        # The alarm journal is the event store; the stream only has to outlast
        # a recorder that is down, so the oldest transitions may go first.
        discard=DiscardPolicy.OLD,
        max_age=max_age_hours * 3600.0,
        duplicate_window=120.0,
    )
    await _ensure_stream(js, config)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)
