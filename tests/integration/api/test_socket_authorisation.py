"""Operations over a graphql-transport-ws connection are authorised like HTTP requests.

A socket presents its access token once, in ``connection_init``. Every query and
mutation it sends afterwards must still be refused once that token has expired
or its session has ended; a ``refreshToken`` sent over the socket keys it with
the new token; a socket whose token expires without one is closed with 4401.
Tokens here live a few seconds (``SHORT``): each test waits for the API itself
to call the token expired, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from eventsourcing.utils import get_topic
from websockets.typing import Subprotocol

from api.credentials import IssuedToken, issue_token
from domain.command import ControlCommand
from tests.graphql_client import GraphQLSocket
from tests.integration.api.access import (
    ME,
    REQUEST,
    OpenSession,
    codes,
    message_codes,
    open_session,
)
from tests.integration.api.conftest import PASSWORD, TOKENS, Plant, PlantFactory
from tests.support import eventually

pytestmark = pytest.mark.integration

SHORT = timedelta(seconds=3)
REFRESH = """mutation($t: String!) {
    refreshToken(token: $t) { accessToken refreshToken expiresAt sessionId } }"""
CONFIRM = """mutation($id: ID!, $code: String!) {
    confirmCommand(commandId: $id, code: $code) { commandId status } }"""
STATUS = "subscription($id: ID!) { commandStatus(commandId: $id) { step status } }"
END_SESSION = "mutation($u: String!, $s: String!) { endSession(username: $u, sessionId: $s) }"
RESET_PASSWORD = """mutation($u: String!, $p: String!) {
    resetPassword(username: $u, password: $p) { username } }"""
# How a session ends: the document, and whether an admin sends it (else its own operator).
ENDINGS = {
    "logout": ("mutation { logout }", False),
    "endSession": (END_SESSION, True),
    "resetPassword": (RESET_PASSWORD, True),
}


def short_token(session: OpenSession) -> IssuedToken:
    """An access token of ``session`` that expires ``SHORT`` from now."""
    return issue_token(
        replace(TOKENS, ttl=SHORT),
        username=session.username,
        session_id=session.session_id,
        roles=("operator",),
        now=datetime.now(UTC),
    )


async def expired(plant: Plant, token: str) -> None:
    """Returns once the API refuses ``token`` over HTTP because it expired."""

    async def refused() -> None:
        body = await plant.gql(ME, token)
        assert codes(body) == ["unauthenticated"], body
        assert body["errors"][0]["message"] == "token expired", body

    await eventually(refused)


class Client:
    """A socket whose messages are kept per operation, so none is lost waiting for another."""

    def __init__(self, socket: GraphQLSocket) -> None:
        self.socket = socket
        self._waiting: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    @classmethod
    async def open(cls, plant: Plant, token: str) -> Client:
        return cls(await GraphQLSocket.open(plant.ws_url, token))

    async def next_of(self, operation: str) -> dict[str, Any]:
        while not self._waiting[operation]:
            message = await self.socket.receive()
            self._waiting[message["id"]].append(message)
        return self._waiting[operation].pop(0)

    async def ask(self, query: str, **variables: Any) -> dict[str, Any] | None:
        """The first answer to one operation, or ``None`` if the server closed the socket."""
        try:
            return await self.next_of(await self.socket.subscribe(query, **variables))
        except websockets.ConnectionClosed:
            return None

    async def answered(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of an operation the socket must be allowed."""
        message = await self.ask(query, **variables)
        assert message is not None, "the server closed the socket"
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    async def request_command(self, plant: Plant) -> str:
        data = await self.answered(REQUEST, d=plant.device, t="speed_setpoint", v=100)
        command_id: str = data["requestCommand"]["commandId"]
        return command_id


async def requested_commands(plant: Plant) -> list[str]:
    """Every command recorded for the plant's device (its name is this test's own)."""
    notifications = await plant.store_executor.call(
        plant.app.recorder.select_notifications,
        plant.start_position,
        10_000,
        topics=[f"{get_topic(ControlCommand)}.Requested"],
    )
    events = [plant.app.mapper.to_domain_event(notification) for notification in notifications]
    return [
        str(event.originator_id)
        for event in events
        if getattr(event, "device", None) == plant.device
    ]


async def test_a_mutation_after_the_token_expired_is_not_run_and_the_socket_is_closed_4401(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = short_token(await open_session(plant, plant.username))
    client = await Client.open(plant, token.token)
    try:
        before = await client.request_command(plant)
        await expired(plant, token.token)
        after = await client.ask(REQUEST, d=plant.device, t="speed_setpoint", v=200)
        # The server either refused the operation or had closed the socket already.
        assert after is None or message_codes(after) == ["unauthenticated"], (
            f"run after the token expired: {after}"
        )
        closed = await client.socket.close_status()
    finally:
        await client.socket.close()
    assert closed == (4401, "access token expired")
    assert await requested_commands(plant) == [before]


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_mutation_after_the_session_ended_is_refused(
    make_plant: PlantFactory, ending: str
) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = (await open_session(plant, admin.username)).access_token
    ana = await open_session(plant, plant.username)
    client = await Client.open(plant, ana.access_token)
    try:
        before = await client.request_command(plant)
        document, by_admin = ENDINGS[ending]
        body = await plant.gql(
            document,
            admin_token if by_admin else ana.access_token,
            u=plant.username,
            s=ana.session_id,
            p=PASSWORD + " anew",
        )
        assert "errors" not in body, body
        after = await client.ask(REQUEST, d=plant.device, t="speed_setpoint", v=200)
    finally:
        await client.socket.close()
    assert after is not None, "the socket was closed, not the operation refused"
    assert message_codes(after) == ["unauthenticated"], f"run after {ending}: {after}"
    assert after["payload"]["errors"][0]["message"] == "session ended: log in again"
    assert await requested_commands(plant) == [before]


async def test_a_socket_refreshed_in_band_keeps_working_past_the_old_expiry(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    session = await open_session(plant, plant.username)
    token = short_token(session)
    client = await Client.open(plant, token.token)
    try:
        command_id = await client.request_command(plant)
        watching = await client.socket.subscribe(STATUS, id=command_id)
        steps = [await client.next_of(watching) for _ in range(2)]
        assert [m["payload"]["data"]["commandStatus"]["step"] for m in steps] == [
            "Requested",
            "ChallengeIssued",
        ]
        refreshed = (await client.answered(REFRESH, t=session.refresh_token))["refreshToken"]
        assert refreshed["sessionId"] == session.session_id
        await expired(plant, token.token)
        # Both run under the refreshed key: a mutation, and the subscription opened before.
        confirmed = await client.answered(CONFIRM, id=command_id, code=plant.totp.now())
        assert confirmed["confirmCommand"]["status"] == "CONFIRMED"
        step = await client.next_of(watching)
    finally:
        await client.socket.close()
    assert "errors" not in step["payload"], f"ended at the old token's expiry: {step}"
    assert step["payload"]["data"]["commandStatus"] == {"step": "Confirmed", "status": "CONFIRMED"}


async def test_a_refresh_of_another_session_does_not_key_the_socket_and_loses_nothing(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    ana = await open_session(plant, plant.username)
    other = await open_session(plant, plant.username)
    client = await Client.open(plant, ana.access_token)
    try:
        refused = await client.ask(REFRESH, t=other.refresh_token)
    finally:
        await client.socket.close()
    assert refused is not None, "the server closed the socket"
    assert message_codes(refused) == ["unauthenticated"], refused
    assert refused["payload"]["errors"][0]["extensions"]["reason"] == "other_session"
    # The other session's refresh token was not used: it still works, once.
    body = await plant.gql(REFRESH, t=other.refresh_token)
    assert body["data"]["refreshToken"]["sessionId"] == other.session_id


async def test_subscriptions_end_at_the_expiry_then_the_socket_is_closed_4401(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = short_token(await open_session(plant, plant.username))
    client = await Client.open(plant, token.token)
    try:
        command_id = await client.request_command(plant)
        watching = await client.socket.subscribe(STATUS, id=command_id)
        for _ in range(2):  # Requested, ChallengeIssued
            assert "errors" not in (await client.next_of(watching))["payload"]
        ended = await client.next_of(watching)
        complete = await client.next_of(watching)
        closed = await client.socket.close_status()
    finally:
        await client.socket.close()
    assert message_codes(ended) == ["unauthenticated"], ended
    assert ended["payload"]["errors"][0]["message"] == "token expired"
    assert complete["type"] == "complete"
    assert closed == (4401, "access token expired")
    assert datetime.now(UTC) >= token.expires_at


async def test_a_token_refused_at_connection_init_closes_the_socket_4401_unacknowledged(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    session = await open_session(plant, plant.username)
    stale = issue_token(
        TOKENS,
        username=session.username,
        session_id=session.session_id,
        roles=("operator",),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    answers: dict[str, tuple[list[str], int | None, str | None]] = {}
    for case, token in {"expired": stale.token, "forged": session.access_token + "x"}.items():
        async with websockets.connect(
            plant.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as connection:
            payload = {"authorization": f"Bearer {token}"}
            await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
            received: list[str] = []
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        received.append(json.loads(await connection.recv())["type"])
            answers[case] = (received, connection.close_code, connection.close_reason)
    assert answers == {
        "expired": ([], 4401, "token expired"),
        "forged": ([], 4401, "invalid token"),
    }


async def test_a_socket_opened_without_a_token_is_keyed_by_its_first_refresh(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    session = await open_session(plant, plant.username)
    client = Client(await GraphQLSocket.open(plant.ws_url, None))
    try:
        anonymous = await client.ask(ME)
        await client.answered(REFRESH, t=session.refresh_token)
        me = await client.answered(ME)
    finally:
        await client.socket.close()
    assert anonymous is not None
    assert message_codes(anonymous) == ["unauthenticated"], anonymous
    assert me["me"]["sessionId"] == session.session_id
