"""The schema: the root types, each field delegating to its area's resolver.

Every resolver checks the caller against the permission matrix
(:mod:`domain.permissions`, printed in ``docs/security.md``); ``login`` and
``refreshToken`` are the only fields open to anyone. :func:`build_schema` adds
the limits that refuse abusive queries (depth, cost, aliases, size) before
any resolver runs, and the size of the variables.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from api.graphql import alarms as alarm_resolvers
from api.graphql import audit, commands, devices
from api.graphql import login as login_resolvers
from api.graphql import operators as operator_resolvers
from api.graphql.alarms import AlarmEvent, AlarmJournalPage, AlarmKpis, AlarmView
from api.graphql.audit import AuditEventPage
from api.graphql.commands import CommandStep, CommandTicket, CommandView
from api.graphql.devices import Device, TagUpdate
from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES, query_limits
from api.graphql.login import LoginResult, Me, Session
from api.graphql.operators import OperatorView, PlantModeView, TotpEnrolment
from api.services import DEFAULT_MAX_QUERY_COST, DEFAULT_MAX_QUERY_DEPTH


@strawberry.type
class Query:
    devices: list[Device] = strawberry.field(
        resolver=devices.devices,
        description="Every device of the plant with its live tags. Needs a token.",
    )
    command: CommandView = strawberry.field(
        resolver=commands.command, description="One command as it stands now. Needs a token."
    )
    command_timeline: list[CommandStep] = strawberry.field(
        resolver=commands.command_timeline,
        description="Every step of one command so far, with its signatures.",
    )
    me: Me = strawberry.field(
        resolver=login_resolvers.me, description="The caller, as the plant knows them."
    )
    operators: list[OperatorView] = strawberry.field(
        resolver=operator_resolvers.operators, description="Every operator. Admins only."
    )
    sessions: list[Session] = strawberry.field(
        resolver=login_resolvers.sessions, description="Every open session. Admins only."
    )
    plant_mode: PlantModeView = strawberry.field(
        resolver=operator_resolvers.plant_mode,
        description="Normal, read-only or simulation, and why.",
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
    audit_events: AuditEventPage = strawberry.field(
        resolver=audit.audit_events,
        description="Stored events by aggregate, user, type and time, in log order. Auditors only.",
    )


@strawberry.type
class Mutation:
    login: LoginResult = strawberry.mutation(
        resolver=login_resolvers.login,
        description="A 15-minute access token and a refresh token for a username and password.",
    )
    refresh_token: LoginResult = strawberry.mutation(
        resolver=login_resolvers.refresh_token,
        description="New tokens for a refresh token, which then stops working.",
    )
    logout: bool = strawberry.mutation(
        resolver=login_resolvers.logout, description="End the caller's session and its tokens."
    )
    end_session: bool = strawberry.mutation(
        resolver=login_resolvers.end_session, description="End anyone's session. Admins only."
    )
    create_operator: TotpEnrolment = strawberry.mutation(
        resolver=operator_resolvers.create_operator,
        description="Register an operator; answers with their TOTP enrolment URI.",
    )
    disable_operator: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.disable_operator,
        description="Disable an account and end its sessions.",
    )
    enable_operator: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.enable_operator, description="Enable a disabled account."
    )
    grant_role: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.grant_role, description="Give an operator a role."
    )
    revoke_role: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.revoke_role, description="Take a role from an operator."
    )
    grant_permission: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.grant_permission,
        description="Let an operator act on plant, area:<name> or device:<id>.",
    )
    revoke_permission: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.revoke_permission, description="Take a scope from an operator."
    )
    unlock_operator: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.unlock_operator,
        description="End a lockout after failed logins.",
    )
    reset_password: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.reset_password, description="Set another operator's password."
    )
    change_password: bool = strawberry.mutation(
        resolver=operator_resolvers.change_password, description="Change your own password."
    )
    enroll_totp: TotpEnrolment = strawberry.mutation(
        resolver=operator_resolvers.enroll_totp,
        description="Enrol a new TOTP authenticator for yourself.",
    )
    set_plant_mode: PlantModeView = strawberry.mutation(
        resolver=operator_resolvers.set_plant_mode,
        description="Switch the plant to normal, read-only or simulation, with the reason.",
    )
    request_command: CommandTicket = strawberry.mutation(
        resolver=commands.request_command,
        description="Ask to write a value; answer the challenge with confirmCommand.",
    )
    confirm_command: CommandView = strawberry.mutation(
        resolver=commands.confirm_command,
        description="Answer a command's challenge with the current TOTP code.",
    )
    approve_command: CommandView = strawberry.mutation(
        resolver=commands.approve_command,
        description="A second person's approval of a critical write, with their TOTP code.",
    )
    decline_command: CommandView = strawberry.mutation(
        resolver=commands.decline_command,
        description="A second person's refusal of a critical write, with the reason.",
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


def build_schema(
    *,
    max_depth: int = DEFAULT_MAX_QUERY_DEPTH,
    max_cost: int = DEFAULT_MAX_QUERY_COST,
    max_variables_bytes: int = DEFAULT_MAX_VARIABLES_BYTES,
) -> PlantSchema:
    return PlantSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=query_limits(
            max_depth=max_depth, max_cost=max_cost, max_variables_bytes=max_variables_bytes
        ),
    )


schema = build_schema()
