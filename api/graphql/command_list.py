"""``commands``: recent commands with their status, requester and outcome, a page at a time.

Newest first, by the time of the request, filtered by device, status and time
range (:mod:`audit.command_list` reads them from the event store). Bounded
three ways, so no request is slow however it is asked: a page holds at most
:data:`MAX_PAGE` commands, a range spans at most :data:`MAX_SPAN` (the last
:data:`DEFAULT_SPAN` when not given), and one request looks at no more than
:data:`SCAN_LIMIT` commands: a status filter that matches few of them answers
a short page with ``hasMore`` and the cursor to go on from.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import strawberry

from api.context import PlantContext
from api.graphql.commands import CommandView
from api.graphql.cursors import decode_position, encode_position
from api.graphql.error_codes import (
    INVALID_TIME_RANGE,
    SPAN_TOO_LONG,
    UNKNOWN_DEVICE,
    api_error,
)
from api.graphql.times import read_as_utc
from audit.command_list import CommandFilter, ListedCommand, list_commands
from domain.command import CommandStatus
from domain.permissions import Action

MAX_PAGE = 200
MAX_SPAN = timedelta(days=31)
DEFAULT_SPAN = timedelta(days=1)
SCAN_LIMIT = 2000
_CURSOR_KIND = "commands"


@strawberry.input
class CommandFilterInput:
    device: str | None = None
    status: list[CommandStatus] | None = strawberry.field(
        default=None,
        description="Any of these statuses; failed commands: WRITE_FAILED (and EXPIRED).",
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Requested at or after; default: `to` less a day."
    )
    to: datetime | None = strawberry.field(
        default=None, description="Requested before; default: now. At most 31 days after `from`."
    )


@strawberry.type
class CommandEntry:
    command: CommandView
    requested_at: datetime
    changed_at: datetime = strawberry.field(description="When its last step was recorded.")

    @classmethod
    def from_model(cls, listed: ListedCommand) -> CommandEntry:
        return cls(
            command=CommandView.from_model(listed.command),
            requested_at=listed.requested_at,
            changed_at=listed.changed_at,
        )


@strawberry.type
class CommandPage:
    commands: list[CommandEntry]
    end_cursor: str | None = strawberry.field(description="Give it as `after` for the next page.")
    has_more: bool


async def commands(
    info: strawberry.Info[PlantContext, None],
    filter: CommandFilterInput | None = None,
    first: int = 50,
    after: str | None = None,
) -> CommandPage:
    await info.context.authorize(Action.VIEW)
    services = info.context.services
    where = _filter(filter or CommandFilterInput(), services.clock(), services.catalog.devices())
    if not 1 <= first <= MAX_PAGE:
        raise api_error(f"first must be between 1 and {MAX_PAGE}", "bad_page", argument="first")
    before = decode_position(_CURSOR_KIND, after) if after else None
    page = await services.store_executor.call(
        list_commands, services.app, where, before=before, first=first, scan=SCAN_LIMIT
    )
    return CommandPage(
        commands=[CommandEntry.from_model(listed) for listed in page.commands],
        end_cursor=None
        if page.next_before is None
        else encode_position(_CURSOR_KIND, page.next_before),
        has_more=page.next_before is not None,
    )


def _filter(asked: CommandFilterInput, now: datetime, devices: list[str]) -> CommandFilter:
    if asked.device is not None and asked.device not in devices:
        raise api_error(
            f"unknown device {asked.device!r}", UNKNOWN_DEVICE, argument="filter.device"
        )
    until = read_as_utc(asked.to) or now
    since = read_as_utc(asked.from_) or until - DEFAULT_SPAN
    if since > until:
        raise api_error("from is after to", INVALID_TIME_RANGE, argument="filter.from")
    if until - since > MAX_SPAN:
        raise api_error(
            f"from and to are more than {MAX_SPAN.days} days apart",
            SPAN_TOO_LONG,
            argument="filter.to",
        )
    return CommandFilter(
        since=since,
        until=until,
        device=asked.device,
        statuses=None if asked.status is None else frozenset(asked.status),
    )
