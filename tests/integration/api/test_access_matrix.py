"""The permission matrix, generated: every role against every root field of the schema.

:data:`FIELDS` says, for each root query, mutation and subscription, what it
needs: ``public`` (login, refreshToken), any ``authenticated`` caller, an
:class:`~domain.permissions.Action` of the matrix (allowed to a role iff
:data:`~domain.permissions.ROLE_ACTIONS` gives it), or ``domain``: the command
answers, decided per command by the domain's rules (their own test below).
The schema is introspected, so a new root field without an entry here fails.

Every operator has the scope ``device:<plant.device>`` and every call targets
that device, so only the role decides. An allowed call may still fail for a
domain reason (nothing to acknowledge, no read models in this API): it must
not fail as ``forbidden`` or ``unauthenticated``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest
import redis.asyncio as aioredis

from api.graphql.schema import schema
from domain.alarm import alarm_id
from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    ConnectionState,
    DeviceStatus,
    Quality,
    Sample,
)
from domain.permissions import ROLE_ACTIONS, Action, Role
from projections.live_state import LIVE_KEY, STATUS_KEY, sample_json
from tests.graphql_client import GraphQLSocket
from tests.integration.api.access import (
    APPROVE,
    CANCEL,
    CONFIRM,
    DECLINE,
    REQUEST,
    codes,
    command_events,
    field,
    first_message,
    message_codes,
    names,
    next_code,
    open_session,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, Plant, PlantFactory
from tests.support import unique

pytestmark = pytest.mark.integration

REFUSALS = {"forbidden", "unauthenticated"}


class Gate(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    DOMAIN = "domain"


Rule = Action | Gate


@dataclass(frozen=True)
class World:
    """What the calls act on: one plant, its command and alarm, operators to manage."""

    plant: Plant
    command_id: str
    alarm_id: str
    target: str
    victim: str


@dataclass(frozen=True)
class Persona:
    """Who calls: a role's operator with a session (``token`` ``None``: nobody)."""

    role: Role | None
    username: str
    token: str | None
    refresh_token: str


Variables = Callable[[World, Persona], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    rule: Rule
    document: str
    variables: Variables
    # logout ends the session the other calls use: it runs last.
    ends_session: bool = False


async def no_variables(world: World, persona: Persona) -> dict[str, Any]:
    return {}


async def the_command(world: World, persona: Persona) -> dict[str, Any]:
    return {"id": world.command_id}


async def the_alarm(world: World, persona: Persona) -> dict[str, Any]:
    return {"id": world.alarm_id}


async def the_target(world: World, persona: Persona) -> dict[str, Any]:
    return {"u": world.target}


def fixed(**given: Any) -> Variables:
    async def variables(world: World, persona: Persona) -> dict[str, Any]:
        return dict(given)

    return variables


def with_target(**more: Any) -> Variables:
    async def variables(world: World, persona: Persona) -> dict[str, Any]:
        return {"u": world.target, **more}

    return variables


async def own_login(world: World, persona: Persona) -> dict[str, Any]:
    return {"u": persona.username, "p": PASSWORD}


async def own_refresh(world: World, persona: Persona) -> dict[str, Any]:
    return {"t": persona.refresh_token}


async def victim_session(world: World, persona: Persona) -> dict[str, Any]:
    session = await open_session(world.plant, world.victim)
    return {"u": world.victim, "s": session.session_id}


async def new_operator(world: World, persona: Persona) -> dict[str, Any]:
    return {"u": unique("new"), "n": "New Person", "r": ["viewer"], "p": PASSWORD}


async def journal_window(world: World, persona: Persona) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat()}


async def a_setpoint(world: World, persona: Persona) -> dict[str, Any]:
    return {"d": world.plant.device, "t": "speed_setpoint", "v": 100}


async def an_answer(world: World, persona: Persona) -> dict[str, Any]:
    return {"id": world.command_id, "code": "000000", "reason": "matrix"}


async def the_device(world: World, persona: Persona) -> dict[str, Any]:
    return {"d": world.plant.device}


async def the_last_hour_of_the_device(world: World, persona: Persona) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "d": world.plant.device,
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": now.isoformat(),
    }


A = Action
OPERATOR_VIEW = "{ username roles scopes enabled }"
ALARM_VIEW = "{ alarmId state }"

QUERIES: Mapping[str, Case] = {
    "devices": Case(A.VIEW, "{ devices { id area } }", no_variables),
    "command": Case(A.VIEW, "query($id: ID!) { command(commandId: $id) { status } }", the_command),
    "commands": Case(A.VIEW, "{ commands(first: 1) { hasMore } }", no_variables),
    "pendingApprovals": Case(
        A.APPROVE_COMMAND, "{ pendingApprovals { requestedAt } }", no_variables
    ),
    "commandTimeline": Case(
        A.VIEW, "query($id: ID!) { commandTimeline(commandId: $id) { step } }", the_command
    ),
    "me": Case(Gate.AUTHENTICATED, "{ me { username } }", no_variables),
    "operators": Case(A.MANAGE_OPERATORS, "{ operators { username } }", no_variables),
    "sessions": Case(A.MANAGE_SESSIONS, "{ sessions { sessionId source } }", no_variables),
    "plantMode": Case(A.VIEW, "{ plantMode { mode } }", no_variables),
    "alarms": Case(A.VIEW, "{ alarms { alarmId } }", no_variables),
    "alarmJournal": Case(
        A.VIEW,
        "query($since: DateTime!, $until: DateTime!) {"
        " alarmJournal(since: $since, until: $until) { hasNextPage } }",
        journal_window,
    ),
    "alarmKpis": Case(A.VIEW, "{ alarmKpis { since } }", no_variables),
    "history": Case(
        A.READ_HISTORY,
        "query($d: String!, $from: DateTime!, $to: DateTime!) {"
        ' history(device: $d, tags: ["speed"], from: $from, to: $to, first: 1) { source } }',
        the_last_hour_of_the_device,
    ),
    "auditEvents": Case(A.READ_AUDIT, "{ auditEvents(first: 1) { hasNextPage } }", no_variables),
    "auditChain": Case(A.READ_AUDIT, "{ auditChain { headPosition } }", no_variables),
}

MUTATIONS: Mapping[str, Case] = {
    "login": Case(
        Gate.PUBLIC,
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { sessionId } }",
        own_login,
    ),
    "refreshToken": Case(
        Gate.PUBLIC,
        "mutation($t: String!) { refreshToken(token: $t) { sessionId } }",
        own_refresh,
    ),
    "logout": Case(Gate.AUTHENTICATED, "mutation { logout }", no_variables, ends_session=True),
    "endSession": Case(
        A.MANAGE_SESSIONS,
        "mutation($u: String!, $s: String!) { endSession(username: $u, sessionId: $s) }",
        victim_session,
    ),
    "createOperator": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $n: String!, $r: [String!]!, $p: String!) {"
        " createOperator(username: $u, fullName: $n, roles: $r, password: $p) { username } }",
        new_operator,
    ),
    "disableOperator": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $why: String!) {"
        f" disableOperator(username: $u, reason: $why) {OPERATOR_VIEW} }}",
        with_target(why="matrix"),
    ),
    "enableOperator": Case(
        A.MANAGE_OPERATORS,
        f"mutation($u: String!) {{ enableOperator(username: $u) {OPERATOR_VIEW} }}",
        the_target,
    ),
    "grantRole": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $r: String!) {"
        f" grantRole(username: $u, role: $r) {OPERATOR_VIEW} }}",
        with_target(r="auditor"),
    ),
    "revokeRole": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $r: String!) {"
        f" revokeRole(username: $u, role: $r) {OPERATOR_VIEW} }}",
        with_target(r="auditor"),
    ),
    "grantPermission": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $s: String!) {"
        f" grantPermission(username: $u, scope: $s) {OPERATOR_VIEW} }}",
        with_target(s="area:welding"),
    ),
    "revokePermission": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $s: String!) {"
        f" revokePermission(username: $u, scope: $s) {OPERATOR_VIEW} }}",
        with_target(s="area:welding"),
    ),
    "unlockOperator": Case(
        A.MANAGE_OPERATORS,
        f"mutation($u: String!) {{ unlockOperator(username: $u) {OPERATOR_VIEW} }}",
        the_target,
    ),
    "unlockSecondFactor": Case(
        A.MANAGE_OPERATORS,
        f"mutation($u: String!) {{ unlockSecondFactor(username: $u) {OPERATOR_VIEW} }}",
        the_target,
    ),
    "requestTotpRecovery": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $c: String!) {"
        ' requestTotpRecovery(username: $u, reason: "matrix", code: $c) { username } }',
        with_target(c="000000"),
    ),
    "approveTotpRecovery": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $c: String!) {"
        " approveTotpRecovery(username: $u, code: $c) { username } }",
        with_target(c="000000"),
    ),
    "resetPassword": Case(
        A.MANAGE_OPERATORS,
        "mutation($u: String!, $p: String!) {"
        f" resetPassword(username: $u, password: $p) {OPERATOR_VIEW} }}",
        with_target(p=PASSWORD),
    ),
    "changePassword": Case(
        Gate.AUTHENTICATED,
        "mutation($p: String!) { changePassword(currentPassword: $p, newPassword: $p) }",
        fixed(p=PASSWORD),
    ),
    "enrollTotp": Case(
        Gate.AUTHENTICATED,
        "mutation($p: String!, $c: String!) { enrollTotp(password: $p, code: $c) { username } }",
        fixed(p=PASSWORD, c="000000"),
    ),
    "enrollTotpWithToken": Case(
        Gate.AUTHENTICATED,
        "mutation($t: String!) { enrollTotpWithToken(enrolmentToken: $t) { username } }",
        fixed(t="NOT-A-TOKEN"),
    ),
    "setPlantMode": Case(
        A.SET_PLANT_MODE,
        'mutation { setPlantMode(mode: NORMAL, reason: "matrix") { mode } }',
        no_variables,
    ),
    "requestCommand": Case(A.REQUEST_COMMAND, REQUEST, a_setpoint),
    "confirmCommand": Case(
        Gate.DOMAIN,
        "mutation($id: ID!, $code: String!) { confirmCommand(commandId: $id, code: $code)"
        " { status } }",
        an_answer,
    ),
    "approveCommand": Case(
        Gate.DOMAIN,
        "mutation($id: ID!, $code: String!) { approveCommand(commandId: $id, code: $code)"
        " { status } }",
        an_answer,
    ),
    "declineCommand": Case(
        Gate.DOMAIN,
        "mutation($id: ID!, $reason: String!) { declineCommand(commandId: $id, reason: $reason)"
        " { status } }",
        an_answer,
    ),
    "cancelCommand": Case(
        Gate.DOMAIN, "mutation($id: ID!) { cancelCommand(commandId: $id) { status } }", the_command
    ),
    "acknowledgeAlarm": Case(
        A.ACKNOWLEDGE_ALARM,
        f'mutation($id: ID!) {{ acknowledgeAlarm(alarmId: $id, comment: "seen") {ALARM_VIEW} }}',
        the_alarm,
    ),
    "shelveAlarm": Case(
        A.SHELVE_ALARM,
        "mutation($id: ID!) {"
        f' shelveAlarm(alarmId: $id, reason: "matrix", minutes: 5) {ALARM_VIEW} }}',
        the_alarm,
    ),
    "unshelveAlarm": Case(
        A.SHELVE_ALARM,
        f"mutation($id: ID!) {{ unshelveAlarm(alarmId: $id) {ALARM_VIEW} }}",
        the_alarm,
    ),
    "removeAlarmFromService": Case(
        A.REMOVE_ALARM_FROM_SERVICE,
        "mutation($id: ID!) {"
        f' removeAlarmFromService(alarmId: $id, reason: "matrix") {ALARM_VIEW} }}',
        the_alarm,
    ),
    "returnAlarmToService": Case(
        A.REMOVE_ALARM_FROM_SERVICE,
        f"mutation($id: ID!) {{ returnAlarmToService(alarmId: $id) {ALARM_VIEW} }}",
        the_alarm,
    ),
    "resetAlarmLatch": Case(
        A.RESET_ALARM_LATCH,
        f"mutation($id: ID!) {{ resetAlarmLatch(alarmId: $id) {ALARM_VIEW} }}",
        the_alarm,
    ),
}

SUBSCRIPTIONS: Mapping[str, Case] = {
    "tagUpdates": Case(
        A.VIEW, "subscription($d: String!) { tagUpdates(device: $d) { tag } }", the_device
    ),
    "commandStatus": Case(
        A.VIEW, "subscription($id: ID!) { commandStatus(commandId: $id) { step } }", the_command
    ),
    "deviceStatus": Case(
        A.VIEW,
        "subscription($d: String!) { deviceStatus(devices: [$d]) { state } }",
        the_device,
    ),
    "alarmEvents": Case(A.VIEW, "subscription { alarmEvents { event } }", no_variables),
    "pendingApprovals": Case(
        A.APPROVE_COMMAND, "subscription { pendingApprovals { requestedAt } }", no_variables
    ),
}


def allowed(rule: Rule, role: Role) -> bool:
    """What the matrix of :mod:`domain.permissions` says ``role`` may call."""
    if isinstance(rule, Action):
        return rule in ROLE_ACTIONS[role]
    return rule in (Gate.PUBLIC, Gate.AUTHENTICATED)


def root_fields() -> dict[str, set[str]]:
    """The root fields of the schema, by operation type, as a client introspects them."""
    found = schema.introspect()["__schema"]
    types = {t["name"]: t for t in found["types"]}
    roots = {
        "query": found["queryType"],
        "mutation": found["mutationType"],
        "subscription": found["subscriptionType"],
    }
    return {
        kind: {f["name"] for f in types[root["name"]]["fields"]}
        for kind, root in roots.items()
        if root is not None
    }


def test_every_root_field_has_a_matrix_entry() -> None:
    assert root_fields() == {
        "query": set(QUERIES),
        "mutation": set(MUTATIONS),
        "subscription": set(SUBSCRIPTIONS),
    }


async def _world(plant: Plant, redis_client: aioredis.Redis) -> World:
    now = datetime.now(UTC)
    ticket = await plant.store_executor.call(
        plant.app.request_command,
        actor=plant.username,
        device=plant.device,
        tag="speed_setpoint",
        value=10,
        at=now,
    )
    transition = AlarmTransition(
        transition_id=unique("transition"),
        device=plant.device,
        condition="speed_hi",
        kind=AlarmKind.HI,
        priority=AlarmPriority.HIGH,
        area="stamping",
        tag="speed",
        active=True,
        suppressed=False,
        latch=False,
        value=1700.0,
        limit=1600.0,
        message="speed high",
        ts=now,
    )
    await plant.store_executor.call(plant.app.record_alarm_transitions, [transition], now)
    sample = Sample("speed", 1000, Quality.GOOD, "rpm", now)
    await redis_client.hset(LIVE_KEY.format(device=plant.device), "speed", sample_json(sample))
    # A status for deviceStatus's snapshot; it expires by itself, as nothing else reads it.
    status = DeviceStatus(plant.device, ConnectionState.CONNECTED, now)
    await redis_client.set(STATUS_KEY.format(device=plant.device), status.encode(), ex=600)
    target = await plant.add_operator(["viewer"], full_name="Target Person")
    victim = await plant.add_operator(["viewer"], full_name="Victim Person")
    return World(
        plant=plant,
        command_id=str(ticket.command_id),
        alarm_id=str(alarm_id(plant.device, "speed_hi")),
        target=target.username,
        victim=victim.username,
    )


async def _personas(plant: Plant) -> dict[Role, Persona]:
    """One operator per role, each with a scope on the plant's device and a session."""
    personas: dict[Role, Persona] = {}
    for role in Role:
        person = await plant.add_operator(
            [role.value], [f"device:{plant.device}"], full_name=f"{role.value.title()} Person"
        )
        session = await open_session(plant, person.username)
        personas[role] = Persona(role, person.username, session.access_token, session.refresh_token)
    return personas


async def _check_call(world: World, name: str, case: Case, persona: Persona) -> str | None:
    """Call ``name`` as ``persona``; what went against the matrix, or ``None``."""
    assert persona.role is not None
    plant = world.plant
    variables = await case.variables(world, persona)
    body = await plant.gql(case.document, persona.token, **variables)
    found = codes(body)
    if allowed(case.rule, persona.role):
        if REFUSALS & set(found):
            return f"{persona.role}/{name}: allowed by {case.rule}, refused: {body['errors']}"
        return None
    if found != ["forbidden"] or body.get("data") is not None:
        return f"{persona.role}/{name}: refused by {case.rule}, answered {body}"
    if name == "requestCommand":
        # A refused request is a recorded rejection, not merely an error.
        command_id = body["errors"][0]["extensions"]["commandId"]
        events = await command_events(plant, command_id)
        if names(events) != ["Requested", "Rejected"] or field(events[-1], "reason") != "forbidden":
            return f"{persona.role}/{name}: recorded {names(events)}"
    return None


async def test_each_role_gets_from_each_field_what_the_matrix_allows(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    world = await _world(plant, redis_client)
    try:
        personas = await _personas(plant)
        ordered = sorted(
            (case.ends_session, name, case)
            for name, case in {**QUERIES, **MUTATIONS}.items()
            if case.rule is not Gate.DOMAIN
        )
        mismatches: list[str] = []
        for persona in personas.values():
            for _, name, case in ordered:
                problem = await _check_call(world, name, case, persona)
                if problem is not None:
                    mismatches.append(problem)
    finally:
        await redis_client.delete(LIVE_KEY.format(device=plant.device))
    assert mismatches == []


async def test_each_role_may_subscribe_as_the_matrix_allows(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    world = await _world(plant, redis_client)
    mismatches: list[str] = []
    try:
        for role, persona in (await _personas(plant)).items():
            socket = await GraphQLSocket.open(plant.ws_url, persona.token)
            try:
                for name, case in SUBSCRIPTIONS.items():
                    operation = await socket.subscribe(
                        case.document, **await case.variables(world, persona)
                    )
                    message = await first_message(socket, operation)
                    found = message_codes(message)
                    if allowed(case.rule, role):
                        if message["type"] == "complete" or REFUSALS & set(found):
                            mismatches.append(f"{role}/{name}: allowed, got {message}")
                    elif found != ["forbidden"]:
                        mismatches.append(f"{role}/{name}: refused, got {message}")
            finally:
                await socket.close()
    finally:
        await redis_client.delete(LIVE_KEY.format(device=plant.device))
    assert mismatches == []


async def test_without_a_token_only_login_and_refresh_answer(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    world = await _world(plant, redis_client)
    session = await open_session(plant, plant.username)
    nobody = Persona(None, plant.username, None, session.refresh_token)
    mismatches: list[str] = []
    try:
        for name, case in {**QUERIES, **MUTATIONS}.items():
            body = await plant.gql(case.document, None, **await case.variables(world, nobody))
            found = codes(body)
            if case.rule is Gate.PUBLIC:
                if found or body["data"][name] is None:
                    mismatches.append(f"{name}: public, answered {body}")
            elif found != ["unauthenticated"] or body["data"] is not None:
                mismatches.append(f"{name}: needs a token, answered {body}")
        anonymous = await GraphQLSocket.open(plant.ws_url, None)
        try:
            for name, case in SUBSCRIPTIONS.items():
                operation = await anonymous.subscribe(
                    case.document, **await case.variables(world, nobody)
                )
                message = await first_message(anonymous, operation)
                if message_codes(message) != ["unauthenticated"]:
                    mismatches.append(f"{name}: needs a token, got {message}")
        finally:
            await anonymous.close()
    finally:
        await redis_client.delete(LIVE_KEY.format(device=plant.device))
    assert mismatches == []


async def test_command_answers_follow_the_domain_rules_for_each_role(
    make_plant: PlantFactory,
) -> None:
    """Confirm and cancel belong to the requester; approve and decline to a second person.

    For each role: a critical write of someone else awaits approval twice; the
    role's operator approves one with their code and declines the other.
    Approving or declining needs ``command.approve`` on the device: a refusal is
    ``forbidden`` and an ``ApprovalRefused`` on the record, and the command
    waits on. Then the role's operator confirms and cancels commands of their
    own if ``command.request`` lets them ask at all, and never anyone else's.
    """
    plant = await make_plant(dispatcher=False)
    requester = await plant.add_operator(["operator"], [f"device:{plant.device}"])
    now = datetime.now(UTC)
    step = requester.totp.timecode(now)

    async def awaiting_approval() -> str:
        nonlocal step
        ticket = await plant.store_executor.call(
            plant.app.request_command,
            actor=requester.username,
            device=plant.device,
            tag="pressure_setpoint",
            value=120,
            at=now,
        )
        step += 1  # the domain only wants steps to move forward: setup, not under test
        await plant.store_executor.call(
            plant.app.confirm_command,
            actor=requester.username,
            command_id=ticket.command_id,
            totp_step=step,
            at=now,
        )
        return str(ticket.command_id)

    others = await awaiting_approval()
    mismatches: list[str] = []
    for role in Role:
        person = await plant.add_operator([role.value], [f"device:{plant.device}"])
        token = (await open_session(plant, person.username)).access_token
        may_approve = Action.APPROVE_COMMAND in ROLE_ACTIONS[role]
        may_request = Action.REQUEST_COMMAND in ROLE_ACTIONS[role]

        approved, declined = await awaiting_approval(), await awaiting_approval()
        # Both of this person's codes from one instant: this step's, then the next one's.
        at = datetime.now(UTC)
        answers = {
            approved: await plant.gql(APPROVE, token, id=approved, code=person.totp.at(at)),
            declined: await plant.gql(DECLINE, token, id=declined, reason="not today"),
        }
        for command_id, body in answers.items():
            events = await command_events(plant, command_id)
            last = names(events)[-1]
            if may_approve:
                expected = "Approved" if command_id == approved else "ApprovalDeclined"
                if codes(body) or last != expected:
                    mismatches.append(f"{role}: answer {body}, recorded {names(events)}")
            elif codes(body) != ["forbidden"] or (last, field(events[-1], "reason")) != (
                "ApprovalRefused",
                "forbidden",
            ):
                mismatches.append(f"{role}: answer {body}, recorded {names(events)}")

        # Nobody confirms or cancels another's command.
        for body in (
            await plant.gql(CONFIRM, token, id=others, code=next_code(person.totp, at)),
            await plant.gql(CANCEL, token, id=others),
        ):
            if codes(body) != ["not_requester"]:
                mismatches.append(f"{role}: another's command answered {body}")

        own = await plant.gql(REQUEST, token, d=plant.device, t="speed_setpoint", v=300)
        if not may_request:
            # Nothing of their own to confirm: the request itself is refused and recorded.
            if codes(own) != ["forbidden"]:
                mismatches.append(f"{role}: may not request, answered {own}")
            continue
        to_confirm = own["data"]["requestCommand"]["commandId"]
        confirmed = await plant.gql(CONFIRM, token, id=to_confirm, code=next_code(person.totp, at))
        if codes(confirmed) or confirmed["data"]["confirmCommand"]["status"] != "CONFIRMED":
            mismatches.append(f"{role}: own confirmation answered {confirmed}")
        again = await plant.gql(REQUEST, token, d=plant.device, t="speed_setpoint", v=400)
        to_cancel = again["data"]["requestCommand"]["commandId"]
        cancelled = await plant.gql(CANCEL, token, id=to_cancel)
        if codes(cancelled) or cancelled["data"]["cancelCommand"]["status"] != "CANCELLED":
            mismatches.append(f"{role}: own cancellation answered {cancelled}")
    assert mismatches == []
    # Nobody's confirmation or cancellation touched the other requester's command.
    assert names(await command_events(plant, others))[-1] == "ApprovalRequested"


async def test_authorization_comes_before_any_work_on_the_arguments(
    make_plant: PlantFactory,
) -> None:
    """A caller without the right learns nothing and costs nothing: refused first.

    ``resetPassword`` must refuse an anonymous caller (``unauthenticated``) and
    a viewer (``forbidden``) before it checks or hashes the new password:
    Argon2 costs some 0.15 s of CPU by design, and ``weak_password`` answered
    to anyone tells the policy to a caller who may not use the field.
    """
    plant = await make_plant(dispatcher=False)
    target = await plant.add_operator(["viewer"], full_name="Target Person")
    viewer = await plant.add_operator(["viewer"], [f"device:{plant.device}"])
    viewer_token = (await open_session(plant, viewer.username)).access_token
    reset = MUTATIONS["resetPassword"].document
    create = MUTATIONS["createOperator"].document
    alarm = MUTATIONS["acknowledgeAlarm"].document
    missing_alarm = str(alarm_id(plant.device, "no_such_condition"))

    answers = {
        "anonymous reset, short password": (
            await plant.gql(reset, None, u=target.username, p="x"),
            "unauthenticated",
        ),
        "viewer reset, short password": (
            await plant.gql(reset, viewer_token, u=target.username, p="x"),
            "forbidden",
        ),
        "viewer create, short password": (
            await plant.gql(create, viewer_token, u=unique("new"), n="N", r=["viewer"], p="x"),
            "forbidden",
        ),
        # Whether an alarm or a session exists is not told to those who may not act on it.
        "viewer acknowledges a missing alarm": (
            await plant.gql(alarm, viewer_token, id=missing_alarm),
            "forbidden",
        ),
        "viewer ends a missing session": (
            await plant.gql(
                MUTATIONS["endSession"].document, viewer_token, u="nobody", s="no-session"
            ),
            "forbidden",
        ),
    }
    assert {case: refusal(body)["extensions"]["code"] for case, (body, _) in answers.items()} == {
        case: code for case, (_, code) in answers.items()
    }
