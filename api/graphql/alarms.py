"""Alarms: the active list, the journal, KPIs, live events and the operator actions.

Reads come from the alarm read models (:mod:`projections.alarm_views`:
PostgreSQL ``alarm_current`` and ``alarm_journal``); actions go through the
domain, which records each one as an event with who and when, and refuses what
the alarm's state does not allow (``extensions.code`` ``domain_error``).
Reading needs a token; acting needs a role that may act on the plant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import strawberry
from strawberry.scalars import JSON

from api.context import PlantContext
from api.graphql.cursors import decode_position, encode_position
from api.graphql.error_codes import NOT_FOUND, api_error, call
from api.graphql.limits import INVALID_NUMBER
from api.graphql.session import for_session
from api.graphql.times import in_utc
from api.services import Services
from domain.alarm import Alarm
from domain.permissions import Action
from projections.alarm_views import JournalEntry, alarm_summary

STANDING_AFTER = timedelta(hours=24)
# The longest window alarmKpis counts over: a year (more would pass any datetime by).
MAX_KPI_HOURS = 24 * 366
_JOURNAL = "journal"


@strawberry.type
class AlarmView:
    alarm_id: strawberry.ID
    device: str
    condition: str
    kind: str
    priority: str
    area: str
    tag: str
    state: str
    active: bool
    acknowledged: bool
    annunciated: bool
    chattering: bool
    shelved_until: datetime | None
    raised_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AlarmView:
        return cls(
            alarm_id=strawberry.ID(str(row["alarm_id"])),
            device=row["device"], condition=row["condition"], kind=row["kind"],
            priority=row["priority"], area=row["area"], tag=row["tag"], state=row["state"],
            active=row["active"], acknowledged=row["acknowledged"],
            annunciated=row["annunciated"], chattering=row["chattering"],
            shelved_until=row["shelved_until"], raised_at=row["raised_at"],
        )  # fmt: skip

    @classmethod
    def from_model(cls, alarm: Alarm) -> AlarmView:
        summary = alarm_summary(alarm)
        return cls(
            alarm_id=strawberry.ID(summary["alarm_id"]),
            device=alarm.device, condition=alarm.condition, kind=summary["kind"],
            priority=summary["priority"], area=alarm.area, tag=alarm.tag,
            state=summary["state"], active=alarm.active, acknowledged=alarm.acknowledged,
            annunciated=alarm.annunciated, chattering=alarm.chattering,
            shelved_until=alarm.shelved_until, raised_at=alarm.raised_at,
        )  # fmt: skip


@strawberry.type
class AlarmEvent:
    position: int
    alarm_id: strawberry.ID | None
    device: str
    condition: str
    area: str
    priority: str
    event: str
    actor: str
    at: datetime
    state: str
    detail: JSON

    @classmethod
    def from_row(cls, row: asyncpg.Record | JournalEntry) -> AlarmEvent:
        get: Callable[[str], Any] = (
            row.__getitem__ if isinstance(row, asyncpg.Record) else lambda k: getattr(row, k)
        )
        alarm_id = get("alarm_id")
        detail = get("detail")
        return cls(
            position=get("position"),
            alarm_id=strawberry.ID(str(alarm_id)) if alarm_id else None,
            device=get("device"), condition=get("condition"), area=get("area"),
            priority=get("priority"), event=get("event"), actor=get("actor"), at=get("at"),
            state=get("state") if isinstance(row, JournalEntry) else "",
            detail=json.loads(detail) if isinstance(detail, str) else detail,
        )  # fmt: skip


@strawberry.type
class AlarmJournalPage:
    events: list[AlarmEvent]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class AreaHour:
    area: str
    hour: datetime
    alarms: int


@strawberry.type
class FrequentAlarm:
    alarm_id: strawberry.ID
    device: str
    condition: str
    activations: int


@strawberry.type
class AlarmKpis:
    since: datetime
    per_hour: list[AreaHour]
    most_frequent: list[FrequentAlarm]
    chattering: list[AlarmView]
    standing: list[AlarmView]


def _pool(services: Services) -> asyncpg.Pool:
    if services.pool is None:
        raise RuntimeError("the API was started without the alarm read models")
    return services.pool


def _alarm_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise api_error(f"no alarm {raw!r}", NOT_FOUND) from None


# -- queries ----------------------------------------------------------------------------------


async def alarms(
    info: strawberry.Info[PlantContext, None],
    active: bool = True,
    priority: str | None = None,
    device: str | None = None,
    area: str | None = None,
) -> list[AlarmView]:
    await info.context.authorize(Action.VIEW)
    rows = await _pool(info.context.services).fetch(
        "SELECT * FROM alarm_current"
        " WHERE ($1::boolean IS FALSE OR state <> 'normal')"
        " AND ($2::text IS NULL OR priority = $2) AND ($3::text IS NULL OR device = $3)"
        " AND ($4::text IS NULL OR area = $4)"
        " ORDER BY array_position(ARRAY['critical','high','medium','low'], priority),"
        " raised_at DESC NULLS LAST",
        active, priority, device, area,
    )  # fmt: skip
    return [AlarmView.from_row(row) for row in rows]


async def alarm_journal(
    info: strawberry.Info[PlantContext, None],
    since: datetime,
    until: datetime,
    device: str | None = None,
    area: str | None = None,
    event: str | None = None,
    first: int = 50,
    after: str | None = None,
) -> AlarmJournalPage:
    await info.context.authorize(Action.VIEW)
    if not 1 <= first <= 500:
        raise api_error("first must be between 1 and 500", "bad_page")
    start = decode_position(_JOURNAL, after) if after else 0
    rows = await _pool(info.context.services).fetch(
        "SELECT * FROM alarm_journal WHERE at >= $1 AND at < $2 AND position > $3"
        " AND ($4::text IS NULL OR device = $4) AND ($5::text IS NULL OR area = $5)"
        " AND ($6::text IS NULL OR event = $6) ORDER BY position LIMIT $7",
        in_utc(since), in_utc(until), start, device, area, event, first + 1,
    )  # fmt: skip
    page = rows[:first]
    return AlarmJournalPage(
        events=[AlarmEvent.from_row(row) for row in page],
        end_cursor=encode_position(_JOURNAL, page[-1]["position"]) if page else after,
        has_next_page=len(rows) > first,
    )


async def alarm_kpis(info: strawberry.Info[PlantContext, None], hours: int = 24) -> AlarmKpis:
    await info.context.authorize(Action.VIEW)
    if not 1 <= hours <= MAX_KPI_HOURS:
        raise api_error(f"hours must be between 1 and {MAX_KPI_HOURS}", INVALID_NUMBER)
    services = info.context.services
    pool = _pool(services)
    now = services.clock()
    since = now - timedelta(hours=hours)
    per_hour = await pool.fetch(
        "SELECT area, date_trunc('hour', at) AS hour, count(*) AS alarms FROM alarm_journal"
        " WHERE event = 'Raised' AND at >= $1 GROUP BY area, hour ORDER BY hour, area",
        since,
    )
    frequent = await pool.fetch(
        "SELECT alarm_id, device, condition, count(*) AS activations FROM alarm_journal"
        " WHERE event = 'Raised' AND at >= $1 GROUP BY alarm_id, device, condition"
        " ORDER BY activations DESC, device, condition LIMIT 10",
        since,
    )
    chattering = await pool.fetch("SELECT * FROM alarm_current WHERE chattering")
    standing = await pool.fetch(
        "SELECT * FROM alarm_current WHERE active AND raised_at < $1", now - STANDING_AFTER
    )
    return AlarmKpis(
        since=since,
        per_hour=[AreaHour(area=r["area"], hour=r["hour"], alarms=r["alarms"]) for r in per_hour],
        most_frequent=[
            FrequentAlarm(
                alarm_id=strawberry.ID(str(r["alarm_id"])),
                device=r["device"],
                condition=r["condition"],
                activations=r["activations"],
            )
            for r in frequent
        ],
        chattering=[AlarmView.from_row(row) for row in chattering],
        standing=[AlarmView.from_row(row) for row in standing],
    )


# -- the live events ---------------------------------------------------------------------------


async def alarm_events(
    info: strawberry.Info[PlantContext, None], area: str | None = None
) -> AsyncGenerator[AlarmEvent, None]:
    caller = await info.context.authorize(Action.VIEW)
    live = _events(info.context.services, area)
    async for event in for_session(info.context, caller, live):
        yield event


async def _events(services: Services, area: str | None) -> AsyncGenerator[AlarmEvent, None]:
    if services.alarms is None:
        raise RuntimeError("the API was started without the alarm read models")
    async with services.alarms.subscribe() as entries:
        while True:
            entry = await entries.get()
            if area is None or entry.area == area:
                yield AlarmEvent.from_row(entry)


# -- operator actions --------------------------------------------------------------------------


async def _act(
    info: strawberry.Info[PlantContext, None],
    alarm_id: strawberry.ID,
    permission: Action,
    use_case: Callable[..., object],
    **fields: Any,
) -> AlarmView:
    """Run an alarm action (a bound use case of the application) once the caller may act."""
    await info.context.require_role(permission)  # before telling whether the alarm exists
    services = info.context.services
    target = _alarm_id(alarm_id)
    alarm = await call(services, services.app.get_alarm, target)
    caller = await info.context.authorize(permission, device=alarm.device)
    at = services.clock()
    await call(services, use_case, alarm_id=target, actor=caller.username, at=at, **fields)
    services.command_log_tail.nudge()  # the read models follow the log: update them now
    return AlarmView.from_model(await call(services, services.app.get_alarm, target))


async def acknowledge_alarm(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID, comment: str = ""
) -> AlarmView:
    return await _act(
        info,
        alarm_id,
        Action.ACKNOWLEDGE_ALARM,
        info.context.services.app.acknowledge_alarm,
        comment=comment,
    )


async def shelve_alarm(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID, reason: str, minutes: int
) -> AlarmView:
    return await _act(
        info,
        alarm_id,
        Action.SHELVE_ALARM,
        info.context.services.app.shelve_alarm,
        reason=reason,
        duration=timedelta(minutes=minutes),
    )


async def unshelve_alarm(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID
) -> AlarmView:
    return await _act(info, alarm_id, Action.SHELVE_ALARM, info.context.services.app.unshelve_alarm)


async def remove_alarm_from_service(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID, reason: str
) -> AlarmView:
    return await _act(
        info,
        alarm_id,
        Action.REMOVE_ALARM_FROM_SERVICE,
        info.context.services.app.remove_alarm_from_service,
        reason=reason,
    )


async def return_alarm_to_service(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID
) -> AlarmView:
    return await _act(
        info,
        alarm_id,
        Action.REMOVE_ALARM_FROM_SERVICE,
        info.context.services.app.return_alarm_to_service,
    )


async def reset_alarm_latch(
    info: strawberry.Info[PlantContext, None], alarm_id: strawberry.ID
) -> AlarmView:
    return await _act(
        info, alarm_id, Action.RESET_ALARM_LATCH, info.context.services.app.reset_alarm_latch
    )
