"""The approvals inbox: the critical writes waiting for a second person the caller may be.

``pendingApprovals`` lists the commands awaiting approval (not lapsed) on the
devices the caller may approve on (their scopes), the first to lapse first,
and never the caller's own requests: the two-person rule would refuse them.
Only roles that may approve ask; anyone else is ``forbidden``.

The subscription sends that list as it stands, then again each time it
changes: it watches the log for command events (a request, a confirmation
asking for approval, an approval, a decline, an expiry) and reads the list
anew, and it wakes by itself when the first one lapses, so a window that
closes unanswered leaves the inbox even before the expiry is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from api.context import Caller, PlantContext
from api.graphql.command_list import CommandEntry
from api.graphql.session import for_session
from api.services import Services
from audit.command_list import awaiting_approval
from domain.command import ControlCommand
from domain.permissions import Action

# The inbox is read whole each time; more waiting at once than a person could handle.
MAX_PENDING = 200
SCAN_LIMIT = 2000


async def pending_approvals(info: strawberry.Info[PlantContext, None]) -> list[CommandEntry]:
    caller = await info.context.require_role(Action.APPROVE_COMMAND)
    entries, _ = await _approvable(info.context.services, caller)
    return entries


async def pending_approval_updates(
    info: strawberry.Info[PlantContext, None],
) -> AsyncGenerator[list[CommandEntry], None]:
    caller = await info.context.require_role(Action.APPROVE_COMMAND)
    live = _updates(info.context.services, caller)
    async for update in for_session(info.context, caller, live):
        yield update


async def _updates(services: Services, caller: Caller) -> AsyncGenerator[list[CommandEntry], None]:
    async with services.command_log_tail.watch(ControlCommand) as changed:
        sent: list[tuple[strawberry.ID, datetime | None]] | None = None
        while True:
            changed.clear()
            entries, lapses_at = await _approvable(services, caller)
            shown = [(entry.command.command_id, entry.command.expires_at) for entry in entries]
            if shown != sent:
                sent = shown
                yield entries
            wait = None if lapses_at is None else (lapses_at - services.clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if wait is None else max(wait, 0.0)):
                    await changed.wait()


async def _approvable(
    services: Services, caller: Caller
) -> tuple[list[CommandEntry], datetime | None]:
    """What ``caller`` may approve now, and when the first of it lapses."""
    at = services.clock()
    waiting = await services.store_executor.call(
        awaiting_approval, services.app, at, first=MAX_PENDING, scan=SCAN_LIMIT
    )
    catalog = services.catalog
    mine = [
        listed
        for listed in waiting
        if listed.command.requested_by != caller.username
        and caller.may(
            Action.APPROVE_COMMAND,
            device=listed.command.device,
            area=catalog.area_of(listed.command.device),
        )
    ]
    lapses = [listed.command.expires_at for listed in mine if listed.command.expires_at]
    return [CommandEntry.from_model(listed) for listed in mine], min(lapses, default=None)
