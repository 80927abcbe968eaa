"""The audit trail: every stored event, by aggregate, user, type and time, for auditors only.

``auditEvents`` reads the event store itself, not a read model: the events
table, filtered in SQL on each event's JSON (:func:`audit.replay.select_events`),
through the application's own recorder, so it answers wherever the
application does. Each event comes back as the running plant decodes it (old
versions upcast), with its fields as JSON and every credential (password
hashes, TOTP secrets, refresh token hashes) redacted.

Pages follow the log's global position: ``endCursor`` (opaque) goes into
``after`` for the next page, so a page never repeats or skips an event, even
while new ones are written. Only :attr:`~domain.permissions.Action.READ_AUDIT`
(the auditor role) may ask; everyone else is ``forbidden``.

``auditChain`` is the log's verification state (:mod:`audit.chain_state`): the
hash chain's head, and the last signed checkpoint (from the plant core's
checkpoint file, else the last one on NATS) with whether the log still holds
the hash it signed. Checking the signature and the whole chain is
``plantcore audit verify``'s work.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from api.context import PlantContext
from api.graphql.cursors import decode_position, encode_position
from api.graphql.error_codes import NOT_FOUND, api_error
from api.graphql.times import read_as_utc
from audit.chain_state import read_chain_state
from audit.checkpoints import last_checkpoint, last_published_checkpoint
from audit.replay import AuditRecord, EventFilter, select_events
from domain.permissions import Action

MAX_PAGE = 500
_CURSOR_KIND = "audit"


@strawberry.type
class AuditEvent:
    position: int = strawberry.field(description="The event's global position in the log.")
    aggregate_id: strawberry.ID
    aggregate_type: str = strawberry.field(description="e.g. ControlCommand, Operator, Alarm.")
    version: int = strawberry.field(description="The aggregate's version after this event.")
    event_type: str = strawberry.field(name="type", description="The event's name, e.g. Approved.")
    at: datetime = strawberry.field(description="When it happened, as the domain recorded it.")
    actor: str
    payload: JSON = strawberry.field(description="The event's fields; credentials redacted.")

    @classmethod
    def from_record(cls, record: AuditRecord) -> AuditEvent:
        return cls(
            position=record.position,
            aggregate_id=strawberry.ID(str(record.aggregate_id)),
            aggregate_type=record.aggregate_type,
            version=record.version,
            event_type=record.event_type,
            at=record.at,
            actor=record.actor,
            payload=JSON(record.payload),
        )


@strawberry.type
class AuditEventPage:
    events: list[AuditEvent]
    end_cursor: str | None
    has_next_page: bool


async def audit_events(
    info: strawberry.Info[PlantContext, None],
    aggregate_id: strawberry.ID | None = None,
    user: str | None = None,
    event_type: Annotated[
        str | None,
        strawberry.argument(
            name="type",
            description="An event name (Approved), or with its aggregate (Operator.RoleGranted).",
        ),
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    first: int = 100,
    after: str | None = None,
) -> AuditEventPage:
    await info.context.authorize(Action.READ_AUDIT)
    if not 1 <= first <= MAX_PAGE:
        raise api_error(f"first must be between 1 and {MAX_PAGE}", "bad_page")
    start = decode_position(_CURSOR_KIND, after) if after else 0
    where = EventFilter(
        aggregate_id=_aggregate_id(aggregate_id) if aggregate_id is not None else None,
        actor=user,
        event_type=event_type,
        since=read_as_utc(since),
        until=read_as_utc(until),
    )
    services = info.context.services
    # One more than asked: whether another page follows, without a count.
    records = await services.store_executor.call(
        select_events, services.app, where, after=start, limit=first + 1
    )
    page = records[:first]
    return AuditEventPage(
        events=[AuditEvent.from_record(record) for record in page],
        end_cursor=encode_position(_CURSOR_KIND, page[-1].position) if page else after,
        has_next_page=len(records) > first,
    )


def _aggregate_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise api_error(f"no aggregate {raw!r}", NOT_FOUND) from None


@strawberry.type
class AuditCheckpoint:
    position: int = strawberry.field(description="The log position whose chain hash was signed.")
    chain_hash: str = strawberry.field(description="The signed chain hash, hex.")
    signed_at: datetime
    key_id: str = strawberry.field(description="The signing key's id (docs/audit.md).")
    source: str = strawberry.field(description="file (the plant core's) or nats (the signer's).")
    holds: bool = strawberry.field(
        description="Whether the log still holds this hash at this position: false means the"
        " chain was rewritten since it was signed."
    )


@strawberry.type
class AuditChain:
    head_position: int | None = strawberry.field(description="The last event's position.")
    head_hash: str | None = strawberry.field(description="Its chain hash, hex.")
    last_checkpoint: AuditCheckpoint | None = strawberry.field(
        description="The last signed checkpoint; null when none was signed yet."
    )
    events_since_checkpoint: int | None = strawberry.field(
        description="Positions written after the last checkpoint's: not yet covered by one."
    )


async def audit_chain(info: strawberry.Info[PlantContext, None]) -> AuditChain:
    await info.context.authorize(Action.READ_AUDIT)
    services = info.context.services
    source, checkpoint = "file", None
    if services.audit_checkpoint_file is not None:
        checkpoint = await asyncio.to_thread(last_checkpoint, services.audit_checkpoint_file)
    if checkpoint is None:
        source, checkpoint = "nats", await last_published_checkpoint(services.nats.jetstream())
    state = await services.store_executor.call(read_chain_state, services.app, checkpoint)
    signed = state.checkpoint
    return AuditChain(
        head_position=state.head_position,
        head_hash=state.head_hash.hex() if state.head_hash is not None else None,
        last_checkpoint=None
        if signed is None
        else AuditCheckpoint(
            position=signed.position,
            chain_hash=signed.chain_hash.hex(),
            signed_at=signed.at,
            key_id=signed.key_id,
            source=source,
            holds=bool(state.checkpoint_holds),
        ),
        events_since_checkpoint=state.events_since_checkpoint,
    )
