"""The schema: the root types, each field delegating to its area's resolver.

Every resolver checks the caller against the permission matrix
(:mod:`domain.permissions`, printed in ``docs/security.md``); ``login`` and
``refreshToken`` are the only fields open to anyone. :func:`build_schema` adds
the limits that refuse abusive queries (depth, cost, aliases, size) before
any resolver runs, and the size of the variables, and refuses introspection
unless asked to serve it (``PLANTCORE_INTROSPECTION``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any, cast

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, StreamResult
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from api.graphql import alarms as alarm_resolvers
from api.graphql import (
    approvals,
    audit,
    command_list,
    commands,
    device_status,
    devices,
    second_factor,
)
from api.graphql import history as history_resolvers
from api.graphql import login as login_resolvers
from api.graphql import operators as operator_resolvers
from api.graphql.alarms import AlarmEvent, AlarmJournalPage, AlarmKpis, AlarmView
from api.graphql.audit import AuditChain, AuditEventPage
from api.graphql.command_list import CommandEntry, CommandPage
from api.graphql.commands import CommandStep, CommandTicket, CommandView
from api.graphql.device_status import DeviceStatusUpdate
from api.graphql.devices import Device, TagUpdate
from api.graphql.history import HistoryPage
from api.graphql.internal_errors import hide_internal_errors, hiding_internal_errors, is_internal
from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES, query_limits
from api.graphql.login import LoginResult, Me, Session
from api.graphql.operators import OperatorView, PlantModeView
from api.graphql.second_factor import EnrolmentToken, TotpEnrolment, TotpRecovery
from api.graphql.shared_render import SharedRenderExecutor
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
    # Named apart from the ``commands`` module the fields below take their resolvers from.
    command_list: CommandPage = strawberry.field(
        name="commands",
        resolver=command_list.commands,
        description="Recent commands, newest first, by device, status and time; paged.",
    )
    pending_approvals: list[CommandEntry] = strawberry.field(
        resolver=approvals.pending_approvals,
        description="Critical writes awaiting a second person the caller may be; not their own.",
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
    history: HistoryPage = strawberry.field(
        resolver=history_resolvers.history,
        description="A device's stored samples in [from, to): raw a page at a time, or"
        " in buckets of any width of seconds. Needs history.read in a scope covering the"
        " device.",
    )
    audit_events: AuditEventPage = strawberry.field(
        resolver=audit.audit_events,
        description="Stored events by aggregate, user, type and time, in log order. Auditors only.",
    )
    audit_chain: AuditChain = strawberry.field(
        resolver=audit.audit_chain,
        description="The event log's hash chain head and last signed checkpoint. Auditors only.",
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
    create_operator: EnrolmentToken = strawberry.mutation(
        resolver=operator_resolvers.create_operator,
        description="Register an operator; answers with their one-time enrolment token.",
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
    unlock_second_factor: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.unlock_second_factor,
        description="Forget another operator's wrong TOTP codes, ending their lockout.",
    )
    request_totp_recovery: TotpRecovery = strawberry.mutation(
        resolver=second_factor.request_totp_recovery,
        description="Ask, signing with your code, to replace someone's lost authenticator.",
    )
    approve_totp_recovery: TotpRecovery = strawberry.mutation(
        resolver=second_factor.approve_totp_recovery,
        description="A second admin's signed approval of a recovery: ends its sessions.",
    )
    reset_password: OperatorView = strawberry.mutation(
        resolver=operator_resolvers.reset_password, description="Set another operator's password."
    )
    change_password: bool = strawberry.mutation(
        resolver=operator_resolvers.change_password, description="Change your own password."
    )
    enroll_totp: TotpEnrolment = strawberry.mutation(
        resolver=operator_resolvers.enroll_totp,
        description="Replace your TOTP authenticator: your password and a code of the current one.",
    )
    enroll_totp_with_token: TotpEnrolment = strawberry.mutation(
        resolver=second_factor.enroll_totp_with_token,
        description="Enrol your first (or recovered) authenticator with your enrolment token.",
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
        description="A snapshot of every tag of a device (devices, an area), then each sample.",
    )
    device_status: AsyncGenerator[DeviceStatusUpdate, None] = strawberry.subscription(
        resolver=device_status.device_status,
        description="Each device's connection state now, then every change; or an area's.",
    )
    pending_approvals: AsyncGenerator[list[CommandEntry], None] = strawberry.subscription(
        resolver=approvals.pending_approval_updates,
        description="The caller's approvals inbox now, then again at each change.",
    )
    command_status: AsyncGenerator[CommandStep, None] = strawberry.subscription(
        resolver=commands.command_status,
        description="Each step of one command from its request, until it ends.",
    )
    alarm_events: AsyncGenerator[AlarmEvent, None] = strawberry.subscription(
        resolver=alarm_resolvers.alarm_events,
        description="Every alarm event from now on, optionally of one area.",
    )


BAD_REQUEST = "bad_request"
"""The code of GraphQL's request errors: a document that does not parse or validate, or
variables that do not fit their types."""


class PlantSchema(strawberry.Schema):
    """The schema, whose faults reach clients as a code and an id (:mod:`.internal_errors`).

    Every transport runs operations through :meth:`execute` (HTTP) or
    :meth:`stream` (WebSocket), so hiding faults there hides them everywhere,
    whatever phase raised them.
    """

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # A subscription is a stream (:meth:`stream`, over a socket). Executed once, as a
        # query is, its resolver's generator was answered as a value: a fault, logged, for
        # anyone's POST. Refused as any operation the transport does not serve (HTTP 400).
        allowed = set(
            DEFAULT_ALLOWED_OPERATION_TYPES
            if allowed_operation_types is None
            else allowed_operation_types
        )
        allowed.discard(OperationType.SUBSCRIPTION)
        result = await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=allowed,
            operation_extensions=operation_extensions,
        )
        return hide_internal_errors(result)

    async def stream(self, *args: Any, **kwargs: Any) -> StreamResult:
        results = await super().stream(*args, **kwargs)
        return cast("StreamResult", hiding_internal_errors(results))

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Refusals carry a code and are the client's answer, not the server's problem;
        # faults are logged with their errorId when hidden. What is left are the errors
        # graphql-core finds in the document or its variables: the client's too, which
        # anyone may send as often as they like, so coded and not logged either.
        for error in errors:
            if "code" not in (error.extensions or {}) and not is_internal(error):
                error.extensions = {**(error.extensions or {}), "code": BAD_REQUEST}


def build_schema(
    *,
    max_depth: int = DEFAULT_MAX_QUERY_DEPTH,
    max_cost: int = DEFAULT_MAX_QUERY_COST,
    max_variables_bytes: int = DEFAULT_MAX_VARIABLES_BYTES,
    introspection: bool = False,
) -> PlantSchema:
    """The plant's schema; ``__schema`` and ``__type`` are refused unless ``introspection``."""
    limits = query_limits(
        max_depth=max_depth, max_cost=max_cost, max_variables_bytes=max_variables_bytes
    )
    return PlantSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=limits if introspection else [*limits, DisableIntrospection],
        execution_context_class=SharedRenderExecutor,
    )


# What tools read (the SDL, the documentation's checks); never served: create_app builds that.
schema = build_schema(introspection=True)
