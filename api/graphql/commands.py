"""Commands: request, confirm with a TOTP code, cancel, read, and follow them step by step.

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

from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from uuid import UUID

import strawberry
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic
from strawberry.scalars import JSON

from api.auth import totp_step
from api.context import COMMAND_ROLES, PlantContext
from api.graphql.errors import NOT_FOUND, api_error, call
from api.graphql.session import while_authenticated
from api.services import Services
from domain.application import CommandTicket as TicketModel
from domain.command import TERMINAL_STATUSES, CommandStatus, ControlCommand
from eventstore.log_tail import event_topic

strawberry.enum(CommandStatus, name="CommandStatus")

REQUESTED_TOPIC = event_topic(ControlCommand, "Requested")


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
            expires_at=command.expires_at,
            attempts_left=command.attempts_left,
            read_back=None if command.read_back is None else JSON(command.read_back),
            reason=command.reason,
            detail=command.detail,
        )


@strawberry.type
class CommandStep:
    command_id: strawberry.ID
    version: int
    step: str = strawberry.field(description="The event's name, e.g. ChallengeIssued.")
    status: CommandStatus = strawberry.field(description="The status after this step.")
    at: datetime
    actor: str
    detail: str

    @classmethod
    def from_model(cls, event: DomainEvent, command: ControlCommand) -> CommandStep:
        return cls(
            command_id=strawberry.ID(str(event.originator_id)),
            version=event.originator_version,
            step=type(event).__name__,
            status=command.status,
            at=getattr(event, "at", event.timestamp),
            actor=str(getattr(event, "actor", "")),
            detail=_detail(event),
        )


def _detail(event: DomainEvent) -> str:
    """One line on what this step decided, from the attributes the event carries."""
    attrs = vars(event)
    parts: list[str] = []
    if "device" in attrs:
        parts.append(f"{attrs['device']}/{attrs['tag']} = {attrs['value']!r}")
    if "reason" in attrs:
        parts.append(str(attrs["reason"]))
    if attrs.get("detail"):
        parts.append(str(attrs["detail"]))
    if "attempt" in attrs:
        parts.append(f"attempt {attrs['attempt']}")
    if "expires_at" in attrs:
        parts.append(f"confirm by {attrs['expires_at'].isoformat()}")
    if "read_back" in attrs:
        parts.append(f"read back {attrs['read_back']!r}")
    return "; ".join(parts)


def _command_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise api_error(f"no command {raw!r}", NOT_FOUND) from None


async def request_command(
    info: strawberry.Info[PlantContext, None], device: str, tag: str, value: JSON | None
) -> CommandTicket:
    user = info.context.user_with_role(COMMAND_ROLES)
    services = info.context.services
    ticket = await call(
        services,
        services.app.request_command,
        actor=user.username,
        device=device,
        tag=tag,
        value=value,
        at=services.clock(),
    )
    return CommandTicket.from_model(ticket)


async def confirm_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID, code: str
) -> CommandView:
    user = info.context.user_with_role(COMMAND_ROLES)
    services = info.context.services
    target = _command_id(command_id)
    operator = await services.store.call(services.app.find_operator, user.username)
    if operator is None:
        raise api_error(f"no operator {user.username!r}", "unauthenticated")
    at = services.clock()
    command = await call(
        services,
        services.app.confirm_command,
        actor=user.username,
        command_id=target,
        totp_step=totp_step(operator.totp_secret, code, at),
        at=at,
    )
    # The dispatcher follows the log: wake it now rather than at its next poll.
    services.commands.nudge()
    return CommandView.from_model(command)


async def cancel_command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> CommandView:
    user = info.context.user_with_role(COMMAND_ROLES)
    services = info.context.services
    target = _command_id(command_id)
    await call(
        services,
        services.app.cancel_command,
        actor=user.username,
        command_id=target,
        at=services.clock(),
    )
    return CommandView.from_model(await call(services, services.app.get_command, target))


async def command(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> CommandView:
    info.context.user  # noqa: B018 - raises unless authenticated
    services = info.context.services
    found = await call(services, services.app.get_command, _command_id(command_id))
    return CommandView.from_model(found)


async def command_status(
    info: strawberry.Info[PlantContext, None], command_id: strawberry.ID
) -> AsyncGenerator[CommandStep, None]:
    user = info.context.user
    steps = _command_steps(info.context.services, _command_id(command_id))
    async for step in while_authenticated(user, steps):
        yield step


async def _command_steps(services: Services, target: UUID) -> AsyncGenerator[CommandStep, None]:
    async with services.commands.subscribe(target) as live:
        history = await services.store.call(services.app.command_events, target)
        if not history or get_topic(type(history[0])) != REQUESTED_TOPIC:
            raise api_error(f"no command {target}", NOT_FOUND)
        replay = _Replay()
        for step in replay.steps(history):
            yield step
        while not replay.finished:
            notification = await live.get()
            event = services.app.mapper.to_domain_event(notification)
            if isinstance(event, DomainEvent):
                for step in replay.steps([event]):
                    yield step


class _Replay:
    """Applies a command's events in order; each new one becomes a :class:`CommandStep`."""

    def __init__(self) -> None:
        self._command: ControlCommand | None = None
        self._version = 0

    @property
    def finished(self) -> bool:
        return self._command is not None and self._command.status in TERMINAL_STATUSES

    def steps(self, events: Iterable[DomainEvent]) -> Iterable[CommandStep]:
        for event in events:
            if event.originator_version <= self._version or self.finished:
                continue
            self._command = event.mutate(self._command)  # type: ignore[attr-defined]
            self._version = event.originator_version
            assert self._command is not None
            yield CommandStep.from_model(event, self._command)
