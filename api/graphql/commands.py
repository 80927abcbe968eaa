"""Commands: request, confirm with a TOTP code, approve, decline, cancel, read, follow.

Every request reaches the domain, which records it with its outcome: a refusal
by the permission matrix, the plant mode or the rate limit is a ``Rejected``
event like a value out of limits (ADR 0002). The rate is counted on Redis
across API processes before the domain decides.

``commandTimeline`` lists every step of a command with its signatures (the
signer's full name, the time and the meaning, 21 CFR 11.50), as
:mod:`audit.timeline` builds them for ``plantcore audit timeline`` too.

``requestCommand`` takes its ``value`` as the ``JSON`` scalar so that whatever
the client sends (a string, ``null``) reaches the domain and is *recorded* as a
rejection (``not_a_number``), instead of failing GraphQL validation with no
trace in the event store.

``commandStatus`` sends every event of one command, oldest first, each with the
status it led to, and completes after a terminal one. It subscribes to the log
tail before reading the command's history, and drops what it already sent by
version, so no step is lost or repeated between the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from uuid import UUID

import strawberry
from eventsourcing.domain import DomainEvent
from redis.exceptions import RedisError
from strawberry.scalars import JSON

from api.context import PlantContext
from api.graphql.error_codes import NOT_FOUND, api_error, call
from api.graphql.second_factor import matched_step
from api.graphql.session import for_session
from api.services import Services
from audit.timeline import TimelineReplay, TimelineStep, is_command_history
from domain.application import CommandTicket as TicketModel
from domain.command import EMERGENCY_METHOD, CommandStatus, ControlCommand
from domain.permissions import Action

strawberry.enum(CommandStatus, name="CommandStatus")

# How long a request waits for its rate count before going on without it.
RATE_COUNT_TIMEOUT = 0.5

log = logging.getLogger(__name__)


@strawberry.type
class CommandTicket:
    command_id: strawberry.ID
    challenge: str
    expires_at: datetime

    @classmethod
    def from_model(cls, ticket: TicketModel) -> CommandTicket:
        return cls(
            command_id=strawberry.ID(str(ticket.command_id)),
            challenge=ticket.challenge,
            expires_at=ticket.expires_at,
        )


@strawberry.type
class CommandView:
    command_id: strawberry.ID
    device: str
    tag: str
    value: JSON
    status: CommandStatus
    requested_by: str
    approved_by: str | None
    emergency: bool
    expires_at: datetime | None
    attempts_left: int
    read_back: JSON | None
    reason: str | None
    detail: str

    @classmethod
    def from_model(cls, command: ControlCommand) -> CommandView:
        return cls(
            command_id=strawberry.ID(str(command.id)),
            device=command.device,
            tag=command.tag,
            value=JSON(command.value),
            status=command.status,
            requested_by=command.requested_by,
            approved_by=command.approved_by,
            emergency=command.emergency,
            expires_at=command.expires_at,
            attempts_left=command.attempts_left,
            read_back=None if command.read_back is None else JSON(command.read_back),
            reason=command.reason,
            detail=command.detail,
        )


@strawberry.type
class Signature:
    """An electronic signature on a command (21 CFR 11.50)."""

    username: str
    full_name: str
    meaning: str = strawberry.field(description="request, approval or execution.")
    method: str = strawberry.field(description="totp, or none for an emergency action.")
    at: datetime
    emergency: bool


@strawberry.type
class CommandStep:
    command_id: strawberry.ID
    version: int
    step: str = strawberry.field(description="The event's name, e.g. ChallengeIssued.")
    status: CommandStatus = strawberry.field(description="The status after this step.")
    at: datetime
    actor: str
    detail: str
    signature: Signature | None = strawberry.field(
        description="Set on Confirmed and Approved: who signed, when, and what it means."
    )

    @classmethod
    def from_step(cls, step: TimelineStep) -> CommandStep:
        signature = step.signature
        return cls(
            command_id=strawberry.ID(str(step.command_id)),
            version=step.version,
            step=step.event,
            status=step.status,
            at=step.at,
            actor=step.actor,
            detail=step.detail,
            signature=None
            if signature is None
            else Signature(
                username=signature.username,
                full_name=signature.full_name,
                meaning=signature.meaning,
                method=signature.method,
                at=signature.at,
                emergency=signature.emergency,
            ),
        )


def _command_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise api_error(f"no command {raw!r}", NOT_FOUND) from None


async def request_command(
    info: strawberry.Info[PlantContext, None], device: str, tag: str, value: JSON | None
) -> CommandTicket:
    caller = await info.context.caller()
    services = info.context.services
    at = services.clock()
    recent = await _count_request(services, caller.username, at)
    ticket = await call(
        services,
        services.app.request_command,
        actor=caller.username,
        device=device,
        tag=tag,
        value=value,
        at=at,
        recent_requests=recent,
    )
    if ticket.challenge == EMERGENCY_METHOD:
        services.command_log_tail.nudge()  # released already: the dispatcher need not wait its poll
    return CommandTicket.from_model(ticket)


async def _count_request(services: Services, username: str, at: datetime) -> int | None:
    """This request counted in the user's last minute, or ``None`` if Redis cannot say.

    An emergency stop must not wait for, or fail with, the live-state store: a
    count that does not come within a moment is unknown, and the domain then
    refuses ordinary commands but lets emergency actions through.
    """
    try:
        async with asyncio.timeout(RATE_COUNT_TIMEOUT):
            return await services.command_rate.hit(username, at)
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning("cannot count %s's command requests: %r", username, exc)
        return None


async def confirm_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID, code: str
) -> CommandView:
    caller = await info.context.caller()
    return await _answer(
        info, caller.username, command_id, code, info.context.services.app.confirm_command
    )


async def approve_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID, code: str
) -> CommandView:
    caller = await info.context.caller()
    return await _answer(
        info, caller.username, command_id, code, info.context.services.app.approve_command
    )


async def _answer(
    info: strawberry.Info[PlantContext, None],
    username: str,
    command_id: strawberry.ID,
    code: str,
    use_case: Callable[..., ControlCommand],
) -> CommandView:
    """Check ``code`` against the caller's TOTP secret, then confirm or approve with its step."""
    services = info.context.services
    target = _command_id(command_id)
    operator = await call(services, services.app.get_operator, username)
    at = services.clock()
    command = await call(
        services,
        use_case,
        actor=username,
        command_id=target,
        totp_step=matched_step(services, operator, code, at),
        at=at,
    )
    # The dispatcher follows the log: wake it now rather than at its next poll.
    services.command_log_tail.nudge()
    return CommandView.from_model(command)


async def decline_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID, reason: str
) -> CommandView:
    use_case = info.context.services.app.decline_command
    return await _change(info, command_id, use_case, reason=reason)


async def cancel_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> CommandView:
    return await _change(info, command_id, info.context.services.app.cancel_command)


async def _change(
    info: strawberry.Info[PlantContext, None],
    command_id: strawberry.ID,
    use_case: Callable[..., object],
    **fields: object,
) -> CommandView:
    """Apply the caller's ``use_case`` to one command and answer with the command as it is now."""
    caller = await info.context.caller()
    services = info.context.services
    target = _command_id(command_id)
    at = services.clock()
    await call(services, use_case, actor=caller.username, command_id=target, at=at, **fields)
    return CommandView.from_model(await call(services, services.app.get_command, target))


async def command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> CommandView:
    await info.context.authorize(Action.VIEW)
    services = info.context.services
    found = await call(services, services.app.get_command, _command_id(command_id))
    return CommandView.from_model(found)


async def command_timeline(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> list[CommandStep]:
    await info.context.authorize(Action.VIEW)
    services = info.context.services
    target = _command_id(command_id)
    history = await services.store_executor.call(services.app.command_events, target)
    if not is_command_history(history):
        raise api_error(f"no command {target}", NOT_FOUND)
    return [CommandStep.from_step(step) for step in TimelineReplay().steps(history)]


async def command_status(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> AsyncGenerator[CommandStep, None]:
    caller = await info.context.authorize(Action.VIEW)
    steps = _command_steps(info.context.services, _command_id(command_id))
    async for step in for_session(info.context, caller, steps):
        yield step


async def _command_steps(services: Services, target: UUID) -> AsyncGenerator[CommandStep, None]:
    async with services.command_log_tail.subscribe(target) as live:
        history = await services.store_executor.call(services.app.command_events, target)
        if not is_command_history(history):
            raise api_error(f"no command {target}", NOT_FOUND)
        replay = TimelineReplay()
        for step in replay.steps(history):
            yield CommandStep.from_step(step)
        while not replay.finished:
            notification = await live.get()
            event = services.app.mapper.to_domain_event(notification)
            if isinstance(event, DomainEvent):
                for step in replay.steps([event]):
                    yield CommandStep.from_step(step)
