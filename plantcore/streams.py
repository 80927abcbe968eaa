"""The JetStream stream that carries telemetry and device status.

Supervisors publish into it and projections consume it with durable consumers,
so it must exist before either starts; the composition root (and the tests)
create it here, idempotently.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

TELEMETRY_SUBJECTS = ["plant.telemetry.>", "plant.status.>"]


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
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)
