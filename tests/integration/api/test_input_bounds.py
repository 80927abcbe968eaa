"""Everything a client sends is bounded, through the running API (docs/security.md#threat-model).

- An HTTP body over the limit is answered 413 before the API reads it; a
  graphql-transport-ws message over the limit closes the socket with 1009.
- Variables over their limit, and numbers the API cannot use, are refused
  with a code before any resolver runs.
- Each text field is accepted at its bound and, over it, refused (what a
  person asks to record) or recorded cut to size (what the plant records about
  a refusal).
- No input stores an event over 4 KiB: the largest input each field allows,
  in the characters that cost the most bytes in the stored JSON, is sent and
  the largest row of ``plantapplication_events`` written for it is measured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES
from api.size_limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_WS_MESSAGE_BYTES
from domain.bounds import (
    MAX_FULL_NAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_RECORDED_LENGTH,
    MAX_SCOPE_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_USERNAME_LENGTH,
    clipped,
)
from domain.operator import operator_id
from domain.operator_directory import directory_id
from domain.plant_mode import plant_mode_id
from tests.integration.api.access import (
    DECLINE,
    REQUEST,
    codes,
    command_events,
    directory_events,
    events_of,
    field,
    names,
    open_session,
    operator_events,
    raise_alarm,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, Plant, PlantFactory
from tests.support import unique

pytestmark = pytest.mark.integration

# Six bytes each in the stored JSON (\u0001): the costliest character a text can hold.
COSTLY = "\x01"
# Four bytes each, and printed as itself by repr: the costliest in a recorded value's repr.
WIDE = "\U0001f600"
LARGEST_EVENT = 4096

LOGIN = (
    """mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"""
)
CREATE = """mutation($u: String!, $n: String!) {
    createOperator(username: $u, fullName: $n, roles: ["viewer"], password: "a long password") {
    username } }"""
DISABLE = """mutation($u: String!, $r: String!) {
    disableOperator(username: $u, reason: $r) { enabled } }"""
GRANT = """mutation($u: String!, $s: String!) {
    grantPermission(username: $u, scope: $s) { scopes } }"""
SET_MODE = """mutation($r: String!) { setPlantMode(mode: READ_ONLY, reason: $r) { reason } }"""
ACKNOWLEDGE = """mutation($id: ID!, $c: String!) {
    acknowledgeAlarm(alarmId: $id, comment: $c) { state } }"""
SHELVE = """mutation($id: ID!, $r: String!) {
    shelveAlarm(alarmId: $id, reason: $r, minutes: 30) { state } }"""
REMOVE = """mutation($id: ID!, $r: String!) {
    removeAlarmFromService(alarmId: $id, reason: $r) { state } }"""
SHELVE_FOR = """mutation($id: ID!, $m: Int!) {
    shelveAlarm(alarmId: $id, reason: "drift", minutes: $m) { state } }"""


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


@pytest.fixture
async def http(plant: Plant) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the plant's real server, over TCP."""
    base = plant.ws_url.replace("ws://", "http://").removesuffix("/graphql")
    async with httpx.AsyncClient(base_url=base) as client:
        yield client


async def post_text(plant: Plant, text: str, token: str | None = None) -> dict[str, Any]:
    """Post a JSON body as written (httpx's encoder refuses NaN and Infinity)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await plant.client.post("/graphql", content=text.encode(), headers=headers)
    body: dict[str, Any] = response.json()
    return body


def with_raw(query: str, raw: str, **variables: object) -> str:
    """A JSON body whose variable ``raw`` is the JSON text ``raw`` (``NaN``, ``1e400``, …)."""
    placeholder = "raw-json-value"
    body = json.dumps({"query": query, "variables": {**variables, "raw": placeholder}})
    return body.replace(f'"{placeholder}"', raw)


def compact(value: object) -> int:
    """The size of ``value`` as compact JSON, in bytes."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def padded_body(size: int) -> bytes:
    """A request for ``__typename`` of exactly ``size`` bytes, padded with white space."""
    body = json.dumps({"query": "{ __typename }"}).encode()
    padding = size - len(body)
    return body.replace(b"}", b" " * padding + b"}", 1)


def code(body: dict[str, Any]) -> str:
    error = refusal(body)
    found: str = error["extensions"]["code"]
    return found


@dataclass
class Admin:
    username: str
    token: str


async def admin_of(plant: Plant) -> Admin:
    person = await plant.add_operator(["admin"], ["plant"], full_name="Ada Admin")
    return Admin(person.username, (await open_session(plant, person.username)).access_token)


async def event_count(plant: Plant, originator: UUID) -> int:
    return len(await events_of(plant, originator))


# -- HTTP bodies and WebSocket messages ---------------------------------------------------------


async def test_a_body_over_the_limit_is_answered_413_and_nothing_is_recorded(
    plant: Plant, http: httpx.AsyncClient
) -> None:
    json_body = {"Content-Type": "application/json"}
    at_limit = await http.post(
        "/graphql", content=padded_body(DEFAULT_MAX_BODY_BYTES), headers=json_body
    )
    assert at_limit.status_code == 200
    assert at_limit.json() == {"data": {"__typename": "Query"}}

    over = await http.post(
        "/graphql", content=padded_body(DEFAULT_MAX_BODY_BYTES + 1), headers=json_body
    )
    assert over.status_code == 413
    assert codes(over.json()) == ["request_too_large"]

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the body is counted as it arrives.
        body = json.dumps(
            {"query": LOGIN, "variables": {"u": "x" * DEFAULT_MAX_BODY_BYTES, "p": "p"}}
        )
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096].encode()

    before = len(await directory_events(plant))
    chunked = await http.post("/graphql", content=chunks(), headers=json_body)
    assert chunked.status_code == 413
    assert len(await directory_events(plant)) == before  # the login never ran


async def test_variables_over_the_limit_are_refused_and_nothing_is_recorded(plant: Plant) -> None:
    before = len(await directory_events(plant))
    variables = {"u": "", "p": "p"}
    variables["u"] = "u" * (DEFAULT_MAX_VARIABLES_BYTES - compact(variables) + 1)
    assert compact(variables) == DEFAULT_MAX_VARIABLES_BYTES + 1

    assert code(await plant.gql(LOGIN, **variables)) == "variables_too_large"
    assert len(await directory_events(plant)) == before

    variables["u"] = variables["u"][1:]  # at the limit: the login runs, and fails
    assert code(await plant.gql(LOGIN, **variables)) == "invalid_credentials"
    assert len(await directory_events(plant)) == before + 1


async def test_a_websocket_message_over_the_limit_closes_the_socket_with_1009(
    plant: Plant,
) -> None:
    query = "subscription { alarmEvents { alarmId } }"

    def subscribe(operation: str, size: int) -> str:
        message = {"id": operation, "type": "subscribe", "payload": {"query": query}}
        text = json.dumps(message)
        return text.replace(query, query + " " * (size - len(text.encode())))

    async with websockets.connect(
        plant.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"

        await socket.send(subscribe("at-limit", DEFAULT_MAX_WS_MESSAGE_BYTES))
        answer = json.loads(await socket.recv())  # without a token: refused, but answered
        assert answer["id"] == "at-limit", answer

        await socket.send(subscribe("over", DEFAULT_MAX_WS_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await answers_until_closed(socket, "at-limit")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def answers_until_closed(socket: websockets.ClientConnection, operation: str) -> None:
    """Receive until the server closes the socket: only answers to ``operation`` may come."""
    async with asyncio.timeout(10):
        while True:
            assert json.loads(await socket.recv())["id"] == operation


# -- numbers ------------------------------------------------------------------------------------


async def test_numbers_that_cannot_be_stored_or_used_are_refused_with_a_code(
    plant: Plant,
) -> None:
    admin = await admin_of(plant)
    alarm = await raise_alarm(plant)
    alarm_events = await event_count(plant, alarm)
    request = REQUEST.replace("$v", "$raw")

    for value, recorded in (
        ("9223372036854775808", "9223372036854775808"),  # 2**63
        ("-9223372036854775809", "-9223372036854775809"),
        ("1" + "0" * 400, "<an integer of 1329 bits>"),
    ):
        text = with_raw(request, value, d=plant.device, t="speed_setpoint")
        error = refusal(await post_text(plant, text, admin.token))
        assert error["extensions"]["code"] == "input_too_large"
        requested, rejected = await command_events(plant, error["extensions"]["commandId"])
        assert (field(requested, "value"), field(rejected, "reason")) == (
            recorded,
            "input_too_large",
        )
    literal = (
        f'mutation {{ requestCommand(device: "{plant.device}", tag: "speed_setpoint",'
        f" value: 1{'0' * 400}) {{ commandId }} }}"
    )
    assert code(await plant.gql(literal, admin.token)) == "input_too_large"
    for value, recorded in (("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")):
        text = with_raw(request, value, d=plant.device, t="speed_setpoint")
        error = refusal(await post_text(plant, text, admin.token))
        assert error["extensions"]["code"] == "not_a_number"
        requested, _ = await command_events(plant, error["extensions"]["commandId"])
        assert field(requested, "value") == recorded

    shelve = SHELVE_FOR.replace("$m", "$raw")
    for minutes in ("1099511627776", "NaN", "Infinity", "1e400"):
        text = with_raw(shelve, minutes, id=str(alarm))
        assert code(await post_text(plant, text, admin.token)) == "invalid_number", minutes
    literal = (
        f'mutation {{ shelveAlarm(alarmId: "{alarm}", reason: "r", minutes: {2**40}) {{ state }} }}'
    )
    assert code(await plant.gql(literal, admin.token)) == "invalid_number"
    journal = (
        'query($n: Int!) { alarmJournal(since: "2026-01-01T00:00:00Z",'
        ' until: "2026-02-01T00:00:00Z", first: $n) { endCursor } }'
    )
    assert code(await plant.gql(journal, admin.token, n=2**31)) == "invalid_number"
    # A 32-bit Int, but more hours than a datetime can go back.
    kpis = "query($h: Int!) { alarmKpis(hours: $h) { since } }"
    assert code(await plant.gql(kpis, admin.token, h=2**31 - 1)) == "invalid_number"
    assert await event_count(plant, alarm) == alarm_events


# -- every text field at and over its bound, and the largest stored event -----------------------


async def test_every_text_at_its_bound_is_accepted_over_it_refused_or_cut_and_no_event_tops_4_kib(
    plant: Plant, http: httpx.AsyncClient, database_url: str
) -> None:
    admin = await admin_of(plant)
    touched = {
        operator_id(admin.username),
        operator_id(plant.username),
        directory_id(plant.app.plant_id),
        plant_mode_id(plant.app.plant_id),
    }

    touched |= await _operators(plant, admin)
    touched |= await _commands(plant, admin)
    touched |= await _alarms(plant, admin)
    await _logins(plant, http)
    await _plant_mode(plant, admin)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT max(octet_length(state)), count(*) FROM plantapplication_events"
            " WHERE originator_id = ANY(%s)",
            (list(touched),),
        )
        largest, rows = await cursor.fetchone() or (None, 0)
    assert rows > 20
    assert largest is not None
    assert largest < LARGEST_EVENT, f"an event of {largest} bytes was stored"


async def _operators(plant: Plant, admin: Admin) -> set[UUID]:
    # Names of this test's own (the event table outlives it), filled up to the bound.
    prefix = unique("op")
    # A user name holds no control character (invalid_username): its costliest is WIDE.
    username = prefix + WIDE * (MAX_USERNAME_LENGTH - len(prefix))
    full_name = COSTLY * MAX_FULL_NAME_LENGTH
    for refused_name, refused_full_name, refused_field in (
        (username + WIDE, full_name, "username"),
        (username, full_name + COSTLY, "full_name"),
    ):
        error = refusal(await plant.gql(CREATE, admin.token, u=refused_name, n=refused_full_name))
        assert error["extensions"]["code"] == "input_too_large", error
        assert error["extensions"]["field"] == refused_field
        assert await event_count(plant, operator_id(refused_name)) == 0
    created = await plant.gql(CREATE, admin.token, u=username, n=full_name)
    assert "errors" not in created, created

    reason, scope = COSTLY * MAX_TEXT_LENGTH, "device:" + COSTLY * MAX_ID_LENGTH
    assert len(scope) == MAX_SCOPE_LENGTH
    recorded = await event_count(plant, operator_id(username))
    for query, variables in ((DISABLE, {"r": reason + COSTLY}), (GRANT, {"s": scope + COSTLY})):
        body = await plant.gql(query, admin.token, u=username, **variables)
        assert code(body) == "input_too_large"
    assert await event_count(plant, operator_id(username)) == recorded
    for query, variables in ((GRANT, {"s": scope}), (DISABLE, {"r": reason})):
        body = await plant.gql(query, admin.token, u=username, **variables)
        assert "errors" not in body, body
    return {operator_id(username)}


async def _commands(plant: Plant, admin: Admin) -> set[UUID]:
    touched: set[UUID] = set()
    longest_id, longest_value = COSTLY * MAX_ID_LENGTH, WIDE * (MAX_RECORDED_LENGTH - 2)
    for device, tag, value, reason in (
        (longest_id, longest_id, longest_value, "unknown_device"),
        (plant.device, longest_id, longest_value, "unknown_tag"),
        (plant.device, "speed_setpoint", longest_value, "not_a_number"),
        (longest_id + COSTLY, "speed_setpoint", 1, "input_too_large"),
        (plant.device, longest_id + COSTLY, 1, "input_too_large"),
        (plant.device, "speed_setpoint", longest_value + WIDE, "input_too_large"),
        (plant.device, "speed_setpoint", {"k": [COSTLY * 100] * 3}, "input_too_large"),
    ):
        error = refusal(await plant.gql(REQUEST, admin.token, d=device, t=tag, v=value))
        assert error["extensions"]["code"] == reason, error
        command_id = error["extensions"]["commandId"]
        requested, rejected = await command_events(plant, command_id)
        assert len(field(requested, "device")) <= MAX_ID_LENGTH
        assert len(field(requested, "tag")) <= MAX_ID_LENGTH
        assert len(str(field(requested, "value"))) <= MAX_RECORDED_LENGTH
        assert field(rejected, "reason") == reason
        touched.add(UUID(command_id))

    # A critical write waiting for its second person, declined with the longest reason.
    waiting = await plant.store_executor.call(
        plant.app.request_command, actor=plant.username, device=plant.device,
        tag="pressure_setpoint", value=100, at=datetime.now(UTC),
    )  # fmt: skip
    await plant.store_executor.call(
        plant.app.confirm_command, actor=plant.username, command_id=waiting.command_id,
        totp_step=1, at=datetime.now(UTC),
    )  # fmt: skip
    touched.add(waiting.command_id)
    reason = COSTLY * MAX_TEXT_LENGTH
    over = await plant.gql(DECLINE, admin.token, id=str(waiting.command_id), reason=reason + "x")
    assert code(over) == "input_too_large"
    assert names(await command_events(plant, str(waiting.command_id)))[-1] == "ApprovalRequested"
    declined = await plant.gql(DECLINE, admin.token, id=str(waiting.command_id), reason=reason)
    assert declined["data"]["declineCommand"]["reason"] == reason, declined
    return touched


async def _alarms(plant: Plant, admin: Admin) -> set[UUID]:
    alarm = await raise_alarm(plant)
    longest = COSTLY * MAX_TEXT_LENGTH
    recorded = await event_count(plant, alarm)
    for query, variables in (
        (ACKNOWLEDGE, {"c": longest + "x"}),
        (SHELVE, {"r": longest + "x"}),
        (REMOVE, {"r": longest + "x"}),
    ):
        assert code(await plant.gql(query, admin.token, id=str(alarm), **variables)) == (
            "input_too_large"
        )
    assert await event_count(plant, alarm) == recorded
    for query, variables in ((ACKNOWLEDGE, {"c": longest}), (SHELVE, {"r": longest})):
        body = await plant.gql(query, admin.token, id=str(alarm), **variables)
        assert "errors" not in body, body
    unshelve = f'mutation {{ unshelveAlarm(alarmId: "{alarm}") {{ state }} }}'
    assert "errors" not in await plant.gql(unshelve, admin.token)
    removed = await plant.gql(REMOVE, admin.token, id=str(alarm), r=longest)
    assert "errors" not in removed, removed
    return {alarm}


async def _logins(plant: Plant, http: httpx.AsyncClient) -> None:
    """A failed login of an unknown name, and one from a forged forwarded address."""
    unknown = COSTLY * 2000  # 12 KB of variables, within their limit
    assert code(await plant.gql(LOGIN, u=unknown, p=PASSWORD + "!")) == "invalid_credentials"
    source = "s" * 10_000  # what a client claims through X-Forwarded-For, via a trusted proxy
    response = await http.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"u": plant.username, "p": PASSWORD + "!"}},
        headers={"X-Forwarded-For": source},
    )
    assert codes(response.json()) == ["invalid_credentials"]

    last_unknown = (await directory_events(plant))[-1]
    assert field(last_unknown, "username") == clipped(unknown)
    failed = (await operator_events(plant, plant.username))[-1]
    assert names([failed]) == ["LoginFailed"]
    assert field(failed, "source") == clipped(source)


async def _plant_mode(plant: Plant, admin: Admin) -> None:
    longest = COSTLY * MAX_TEXT_LENGTH
    assert code(await plant.gql(SET_MODE, admin.token, r=longest + "x")) == "input_too_large"
    assert await event_count(plant, plant_mode_id(plant.app.plant_id)) == 0
    changed = await plant.gql(SET_MODE, admin.token, r=longest)
    assert changed["data"]["setPlantMode"]["reason"] == longest, changed


async def test_json_python_cannot_read_is_a_bad_request_not_a_server_fault(plant: Plant) -> None:
    huge = with_raw(REQUEST.replace("$v", "$raw"), "1" + "0" * 5000, d=plant.device, t="t")
    deep = with_raw(REQUEST.replace("$v", "$raw"), "[" * 20_000 + "]" * 20_000, d="d", t="t")
    for text in (huge, deep):
        response = await plant.client.post(
            "/graphql", content=text.encode(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.text == "Unable to parse request body as JSON"

    async with websockets.connect(
        plant.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(f'{{"id": "1", "type": "subscribe", "payload": {huge}}}')
        with pytest.raises(ConnectionClosed) as closed:
            await answers_until_closed(socket, "1")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400  # graphql-transport-ws: not a valid message
