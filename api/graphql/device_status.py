"""``deviceStatus``: each device's connection state, as a snapshot and then every change.

The snapshot is each device's status as the live state holds it in Redis
(``snapshot: true``; a device never seen has none yet), then every
:class:`~domain.messages.DeviceStatus` on ``plant.status.<device>``, subscribed
before the snapshot is read so that nothing is missed in between (one NATS
subscription per device for the whole process, :mod:`.subject_hub`). A status not
newer than the one already sent for its device is dropped (the overlap), and
so is a heartbeat: the supervisor repeats its state every few seconds, which
is no change.

``lastPollAt`` is when a value of the device was last read good: the newest
``valueTimestamp`` of its tags in the live state, read with each status sent.
The status message carries no poll time of its own: a poll is a sample, and
the samples are already in the live state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime

import redis.asyncio as aioredis
import strawberry
from nats.aio.msg import Msg

from api.context import PlantContext
from api.graphql.device_selection import selected_devices
from api.graphql.session import for_session
from api.services import Services
from domain.messages import STATUS_SUBJECT, ConnectionState, DeviceStatus, MalformedMessage
from domain.permissions import Action
from projections.live_reader import read_device, read_status

log = logging.getLogger(__name__)


@strawberry.type
class DeviceStatusUpdate:
    device: str
    state: ConnectionState
    ts: datetime = strawberry.field(
        description="When it was reported: a change when it happened; a snapshot's maybe later."
    )
    detail: str = strawberry.field(description="Why: the error of a lost or refused connection.")
    reconnects: int = strawberry.field(description="Reconnections since its supervisor started.")
    last_poll_at: datetime | None = strawberry.field(
        description="When a value of the device was last read good; null if never."
    )
    snapshot: bool


async def device_status(
    info: strawberry.Info[PlantContext, None],
    devices: list[str] | None = None,
    area: str | None = None,
) -> AsyncGenerator[DeviceStatusUpdate, None]:
    caller = await info.context.authorize(Action.VIEW)
    chosen = selected_devices(info.context.services.catalog, devices, area)
    live = _statuses(info.context.services, chosen)
    async for update in for_session(info.context, caller, live):
        yield update


async def _statuses(
    services: Services, devices: Sequence[str]
) -> AsyncGenerator[DeviceStatusUpdate, None]:
    subjects = [STATUS_SUBJECT.format(device=device) for device in devices]
    async with services.hub.follow(subjects, _status) as messages:
        last_sent: dict[str, DeviceStatus] = {}
        for device in devices:
            status = await read_status(services.redis, device)
            if status is not None:
                last_sent[device] = status
                yield await _update(services.redis, status, snapshot=True)
        async for _, status in messages:
            if status is None or not _changes(last_sent.get(status.device), status):
                continue
            last_sent[status.device] = status
            yield await _update(services.redis, status, snapshot=False)


def _changes(previous: DeviceStatus | None, status: DeviceStatus) -> bool:
    """Newer than ``previous``, and not a heartbeat repeating it."""
    if previous is None:
        return True
    same = (previous.state, previous.detail, previous.reconnects) == (
        status.state,
        status.detail,
        status.reconnects,
    )
    return status.ts > previous.ts and not same


async def _update(
    redis: aioredis.Redis, status: DeviceStatus, *, snapshot: bool
) -> DeviceStatusUpdate:
    read_at = [s.value_time for s in await read_device(redis, status.device) if s.value_time]
    return DeviceStatusUpdate(
        device=status.device,
        state=status.state,
        ts=status.ts,
        detail=status.detail,
        reconnects=status.reconnects,
        last_poll_at=max(read_at, default=None),
        snapshot=snapshot,
    )


def _status(message: Msg) -> DeviceStatus | None:
    try:
        return DeviceStatus.decode(message.data)
    except MalformedMessage as exc:
        log.warning("dropping a malformed status on %s: %s", message.subject, exc)
        return None
