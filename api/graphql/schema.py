"""The schema: the root types, each field delegating to its area's resolver."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from api.graphql import alarms as alarm_resolvers
from api.graphql import auth, commands, devices
from api.graphql.alarms import AlarmEvent, AlarmJournalPage, AlarmKpis, AlarmView
from api.graphql.auth import LoginResult
from api.graphql.commands import CommandStep, CommandTicket, CommandView
from api.graphql.devices import Device, TagUpdate


@strawberry.type
class Query:
    devices: list[Device] = strawberry.field(
        resolver=devices.devices,
        description="Every device of the plant with its live tags. Needs a token.",
    )
    command: CommandView = strawberry.field(
        resolver=commands.command, description="One command as it stands now. Needs a token."
    )
    alarms: list[AlarmView] = strawberry.field(
        resolver=alarm_resolvers.alarms,
        description="Alarms, by default those not normal, most urgent first. Needs a token.",
    )
    alarm_journal: AlarmJournalPage = strawberry.field(
        resolver=alarm_resolvers.alarm_journal,
        description="Every alarm event in [since, until), in log order, a page at a time.",
    )
    alarm_kpis: AlarmKpis = strawberry.field(
        resolver=alarm_resolvers.alarm_kpis,
        description="Alarms per hour per area, the most frequent, chattering and standing.",
    )


@strawberry.type
class Mutation:
    login: LoginResult = strawberry.mutation(
        resolver=auth.login, description="A 15-minute access token for a username and password."
    )
    request_command: CommandTicket = strawberry.mutation(
        resolver=commands.request_command,
        description="Ask to write a value; answer the challenge with confirmCommand.",
    )
    confirm_command: CommandView = strawberry.mutation(
        resolver=commands.confirm_command,
        description="Answer a command's challenge with the current TOTP code.",
    )
    cancel_command: CommandView = strawberry.mutation(
        resolver=commands.cancel_command,
        description="Withdraw a command before its write is dispatched.",
    )
    acknowledge_alarm: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.acknowledge_alarm,
        description="Acknowledge an alarm, with a comment.",
    )
    shelve_alarm: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.shelve_alarm,
        description="Hide an alarm's annunciation for some minutes, with the reason.",
    )
    unshelve_alarm: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.unshelve_alarm, description="End a shelve before its time."
    )
    remove_alarm_from_service: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.remove_alarm_from_service,
        description="Take an alarm out of service (maintenance), with the reason.",
    )
    return_alarm_to_service: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.return_alarm_to_service,
        description="Put an alarm back in service.",
    )
    reset_alarm_latch: AlarmView = strawberry.mutation(
        resolver=alarm_resolvers.reset_alarm_latch,
        description="Reset a latched alarm whose condition has returned to normal.",
    )


@strawberry.type
class Subscription:
    tag_updates: AsyncGenerator[TagUpdate, None] = strawberry.subscription(
        resolver=devices.tag_updates,
        description="A snapshot of every tag of a device, then each new sample.",
    )
    command_status: AsyncGenerator[CommandStep, None] = strawberry.subscription(
        resolver=commands.command_status,
        description="Each step of one command from its request, until it ends.",
    )
    alarm_events: AsyncGenerator[AlarmEvent, None] = strawberry.subscription(
        resolver=alarm_resolvers.alarm_events,
        description="Every alarm event from now on, optionally of one area.",
    )


class PlantSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Refusals carry a code and are the client's answer, not the server's problem:
        # only the others (bugs, invalid queries) are logged.
        unexpected = [e for e in errors if "code" not in (e.extensions or {})]
        if unexpected:
            super().process_errors(unexpected, execution_context)


schema = PlantSchema(query=Query, mutation=Mutation, subscription=Subscription)
