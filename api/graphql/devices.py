"""Live plant state: the ``devices`` query and the ``tagUpdates`` subscription.

Values: a tag's ``value`` is a ``Float`` (integers as floats, booleans as 1.0
and 0.0, so every tag can be plotted); ``boolValue`` is set, in addition, only
when the sample is a boolean. A tag that cannot be read keeps its last known
value with quality ``BAD``: ``qualityReason`` says why (``comm_loss``,
``read_failed``, ``invalid_value``) and ``valueTimestamp`` when the value was
read; both values are null only for a tag never read.

``tagUpdates`` follows one ``device``, several ``devices`` or an ``area``'s
(:mod:`.device_selection`): it first sends a snapshot of every tag of each from
Redis (``snapshot: true``), then each sample of their
``plant.telemetry.<device>`` read by core NATS subscriptions that open
*before* the snapshot is read, so nothing is missed in between. Those
subscriptions are the process's, one per device for all its subscribers
(:mod:`.subject_hub`): each message is decoded once and each of its samples
made into one :class:`TagUpdate`, executed once per distinct query
(:mod:`.shared_render`) and handed to every subscription that lets it
through. Every sample is sent, changed or not; only samples not newer than
what was already sent for a tag are dropped (the overlap between the
snapshot and the stream), and a sample that lost its value (its supervisor
was restarted while the device was away) holds the one sent before, as the
live state in Redis does. A subscriber too slow for the stream loses the
oldest pending messages (:data:`.subject_hub.PENDING_MESSAGES_LIMIT` per
device, logged), never the connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Hashable
from dataclasses import field
from datetime import datetime
from typing import Any

import strawberry
from nats.aio.msg import Msg
from strawberry.scalars import JSON

from api.context import PlantContext
from api.graphql.device_selection import selected_devices
from api.graphql.error_codes import INVALID_ARGUMENT, api_error
from api.graphql.session import for_session
from api.services import Services
from domain.catalog import TagLimits
from domain.messages import (
    TELEMETRY_SUBJECT,
    ConnectionState,
    DeviceStatus,
    MalformedMessage,
    Quality,
    Sample,
    TelemetryBatch,
)
from domain.permissions import Action
from projections.live_reader import read_device, read_status

log = logging.getLogger(__name__)

# The wire enums become GraphQL enums as they are (values GOOD, UNCERTAIN, BAD, ...).
strawberry.enum(Quality, name="Quality")
strawberry.enum(ConnectionState, name="ConnectionState")


def _number(value: float | int | bool | None) -> float | None:
    return None if value is None else float(value)


def _boolean(value: float | int | bool | None) -> bool | None:
    return value if isinstance(value, bool) else None


_QUALITY_REASON = (
    "Why the quality is not good (comm_loss, read_failed, invalid_value); null when good."
)
_VALUE_TIMESTAMP = (
    "When the value was read good: ts for a good value, earlier for a value held"
    " while the tag cannot be read; null without a value."
)


@strawberry.type(name="DeviceStatus")
class DeviceStatusType:
    state: ConnectionState
    ts: datetime
    detail: str
    reconnects: int

    @classmethod
    def from_model(cls, status: DeviceStatus) -> DeviceStatusType:
        return cls(
            state=status.state, ts=status.ts, detail=status.detail, reconnects=status.reconnects
        )


@strawberry.type
class Tag:
    name: str
    value: float | None
    bool_value: bool | None
    quality: Quality | None
    quality_reason: str | None = strawberry.field(description=_QUALITY_REASON)
    unit: str
    ts: datetime | None
    value_timestamp: datetime | None = strawberry.field(description=_VALUE_TIMESTAMP)
    writable: bool
    kind: str | None
    low: float | None
    high: float | None
    critical: bool = strawberry.field(
        description="A write needs the approval of a second person (approveCommand)."
    )
    emergency_values: JSON = strawberry.field(
        description="Values whose write is an emergency action: no second factor."
    )

    @classmethod
    def from_model(cls, name: str, sample: Sample | None, limits: TagLimits | None) -> Tag:
        """A tag from its latest sample (``None`` if never seen) and its catalogue entry."""
        value = sample.value if sample is not None else None
        return cls(
            name=name,
            value=_number(value),
            bool_value=_boolean(value),
            quality=sample.quality if sample is not None else None,
            quality_reason=(sample.reason or None) if sample is not None else None,
            unit=sample.unit if sample is not None else (limits.unit if limits else ""),
            ts=sample.ts if sample is not None else None,
            value_timestamp=sample.value_time if sample is not None else None,
            writable=limits.writable if limits is not None else False,
            kind=limits.kind.value if limits is not None else None,
            low=limits.low if limits is not None else None,
            high=limits.high if limits is not None else None,
            critical=limits.critical if limits is not None else False,
            emergency_values=JSON(list(limits.emergency_values) if limits is not None else []),
        )


@strawberry.type
class Device:
    id: strawberry.ID
    area: str
    limits: strawberry.Private[list[TagLimits]]

    @classmethod
    def from_model(cls, device: str, area: str, limits: list[TagLimits]) -> Device:
        return cls(id=strawberry.ID(device), area=area, limits=limits)

    @strawberry.field
    async def status(self, info: strawberry.Info[PlantContext, None]) -> DeviceStatusType | None:
        status = await read_status(info.context.services.redis, self.id)
        return DeviceStatusType.from_model(status) if status is not None else None

    @strawberry.field
    async def tags(self, info: strawberry.Info[PlantContext, None]) -> list[Tag]:
        samples = {s.tag: s for s in await read_device(info.context.services.redis, self.id)}
        catalogued = {limits.tag: limits for limits in self.limits}
        names = sorted(catalogued.keys() | samples.keys())
        return [Tag.from_model(name, samples.get(name), catalogued.get(name)) for name in names]


@strawberry.type
class TagUpdate:
    device: str
    tag: str
    value: float | None
    bool_value: bool | None
    quality: Quality
    quality_reason: str | None = strawberry.field(description=_QUALITY_REASON)
    unit: str
    ts: datetime
    value_timestamp: datetime | None = strawberry.field(description=_VALUE_TIMESTAMP)
    snapshot: bool
    # Its executions, one per distinct query (:mod:`api.graphql.shared_render`).
    renders: strawberry.Private[dict[Hashable, Any]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_model(cls, device: str, sample: Sample, *, snapshot: bool) -> TagUpdate:
        return cls(
            device=device,
            tag=sample.tag,
            value=_number(sample.value),
            bool_value=_boolean(sample.value),
            quality=sample.quality,
            quality_reason=sample.reason or None,
            unit=sample.unit,
            ts=sample.ts,
            value_timestamp=sample.value_time,
            snapshot=snapshot,
        )


async def devices(info: strawberry.Info[PlantContext, None]) -> list[Device]:
    await info.context.authorize(Action.VIEW)
    catalog = info.context.services.catalog
    return [
        Device.from_model(device, catalog.area_of(device), catalog.tags(device))
        for device in catalog.devices()
    ]


async def tag_updates(
    info: strawberry.Info[PlantContext, None],
    device: str | None = None,
    devices: list[str] | None = None,
    area: str | None = None,
) -> AsyncGenerator[TagUpdate, None]:
    caller = await info.context.authorize(Action.VIEW)
    chosen = _chosen(info.context.services, device, devices, area)
    live = _tag_updates(info.context.services, chosen)
    async for update in for_session(info.context, caller, live):
        yield update


def _chosen(
    services: Services, device: str | None, devices: list[str] | None, area: str | None
) -> list[str]:
    # Every sample of every device is far more than a screen shows: a stream names its devices.
    if device is not None and devices is not None:
        raise api_error("give device or devices, not both", INVALID_ARGUMENT, argument="device")
    if device is None and devices is None and area is None:
        raise api_error("name a device, devices or an area", INVALID_ARGUMENT, argument="device")
    return selected_devices(services.catalog, [device] if device is not None else devices, area)


async def _tag_updates(services: Services, devices: list[str]) -> AsyncGenerator[TagUpdate, None]:
    subjects = [TELEMETRY_SUBJECT.format(device=device) for device in devices]
    async with services.hub.follow(subjects, _updates) as messages:
        last_sent: dict[tuple[str, str], Sample] = {}
        for device in devices:
            for sample in await read_device(services.redis, device):
                last_sent[device, sample.tag] = sample
                yield TagUpdate.from_model(device, sample, snapshot=True)
        async for _, updates in messages:
            for sample, shared in updates:
                update = _next_update(last_sent, sample, shared)
                if update is not None:
                    yield update


def _next_update(
    last_sent: dict[tuple[str, str], Sample], sample: Sample, shared: TagUpdate
) -> TagUpdate | None:
    """What a subscriber is sent of ``sample``, given what it was sent before; None: nothing."""
    key = (shared.device, sample.tag)
    previous = last_sent.get(key)
    if previous is None:
        last_sent[key] = sample
        return shared
    if sample.ts <= previous.ts:
        return None
    # As the live state does: a publisher restarted while its device is away does
    # not know the last value, the subscriber does.
    held = sample.holding(previous)
    last_sent[key] = held
    return shared if held is sample else TagUpdate.from_model(shared.device, held, snapshot=False)


_TELEMETRY_PREFIX = TELEMETRY_SUBJECT.format(device="")


def _updates(message: Msg) -> tuple[tuple[Sample, TagUpdate], ...]:
    """A telemetry message's samples, each with its update: decoded once for every subscriber."""
    device = message.subject.removeprefix(_TELEMETRY_PREFIX)
    try:
        samples = TelemetryBatch.decode(message.data).samples
    except MalformedMessage as exc:
        log.warning("dropping a malformed batch on %s: %s", message.subject, exc)
        return ()
    return tuple((s, TagUpdate.from_model(device, s, snapshot=False)) for s in samples)
