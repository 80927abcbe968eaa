"""Access tokens, refresh tokens and sessions: what is accepted, what ends a session.

A valid signature is not enough: the token's session must still be open and
its operator enabled, and the roles are the operator's current ones.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis

from api.credentials import JWT_ALGORITHM, issue_token, new_refresh_token
from domain.messages import Quality, Sample
from projections.live_state import LIVE_KEY, sample_json
from tests.graphql_client import GraphQLSocket
from tests.integration.api.access import (
    ME,
    REQUEST,
    codes,
    command_events,
    field,
    first_message,
    message_codes,
    named,
    names,
    open_session,
    operator_events,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, TOKENS, PlantFactory

pytestmark = pytest.mark.integration

LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { accessToken refreshToken sessionId } }"""
REFRESH = """mutation($t: String!) {
    refreshToken(token: $t) { accessToken refreshToken sessionId } }"""
LOGOUT = "mutation { logout }"
END_SESSION = "mutation($u: String!, $s: String!) { endSession(username: $u, sessionId: $s) }"
SESSIONS = "{ sessions { sessionId username source startedAt expiresAt refreshes } }"
DISABLE = """mutation($u: String!) {
    disableOperator(username: $u, reason: "left the company") { enabled } }"""
ENABLE = "mutation($u: String!) { enableOperator(username: $u) { enabled } }"
REVOKE_ROLE = """mutation($u: String!, $r: String!) {
    revokeRole(username: $u, role: $r) { roles } }"""
TAG_UPDATES = "subscription($d: String!) { tagUpdates(device: $d) { tag snapshot } }"


def unauthenticated(body: dict[str, Any]) -> str:
    """The message of an ``unauthenticated`` refusal."""
    error = refusal(body)
    assert error["extensions"]["code"] == "unauthenticated", error
    message: str = error["message"]
    return message


def claims(username: str, session_id: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    given = {
        "sub": username,
        "sid": session_id,
        "roles": ["operator"],
        "aud": TOKENS.audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=15)).timestamp()),
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return {name: value for name, value in given.items() if value is not None}


async def test_tokens_that_must_not_be_accepted(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    ana = await open_session(plant, plant.username)
    assert "errors" not in await plant.gql(ME, ana.access_token)

    def signed(secret: str = TOKENS.secret, **changes: Any) -> str:
        return jwt.encode(claims(plant.username, ana.session_id, **changes), secret, JWT_ALGORITHM)

    now = datetime.now(UTC)
    refused = {
        "forged signature": signed(secret="another-secret-" + "y" * 32),
        "tampered claims": ana.access_token.rsplit(".", 2)[0]
        + "."
        + signed(sub="admin").split(".")[1]
        + "."
        + ana.access_token.rsplit(".", 1)[1],
        "expired": issue_token(
            TOKENS,
            username=plant.username,
            session_id=ana.session_id,
            roles=("operator",),
            now=now - timedelta(minutes=16),
        ).token,
        "another audience": issue_token(
            dataclasses.replace(TOKENS, audience="historian"),
            username=plant.username,
            session_id=ana.session_id,
            roles=("operator",),
            now=now,
        ).token,
        "no sid": signed(sid=None),
        "empty sid": signed(sid=""),
        "a session that never was": signed(sid=uuid.uuid4().hex),
        "not a jwt": "not-a-token",
    }
    messages = {
        case: unauthenticated(await plant.gql(ME, token)) for case, token in refused.items()
    }
    assert messages["expired"] == "token expired"
    assert messages["another audience"] == "token not issued for this service"
    assert messages["forged signature"] == messages["no sid"] == "invalid token"
    assert messages["a session that never was"] == "session ended: log in again"
    # None of them touched the session they named: the real token still works.
    assert "errors" not in await plant.gql(ME, ana.access_token)


async def test_a_session_ends_with_logout_with_an_admin_and_with_its_operator(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = (await open_session(plant, admin.username)).access_token
    leaving = await plant.add_operator(["operator"], [f"device:{plant.device}"])
    logged_out, ended, disabled = (
        await open_session(plant, plant.username),
        await open_session(plant, plant.username),
        await open_session(plant, leaving.username),
    )
    for token in (logged_out.access_token, ended.access_token, disabled.access_token):
        assert "errors" not in await plant.gql(ME, token)

    assert await plant.gql(LOGOUT, logged_out.access_token) == {"data": {"logout": True}}
    assert await plant.gql(END_SESSION, admin_token, u=plant.username, s=ended.session_id) == {
        "data": {"endSession": True}
    }
    assert "errors" not in await plant.gql(DISABLE, admin_token, u=leaving.username)

    assert unauthenticated(await plant.gql(ME, logged_out.access_token)).startswith("session ended")
    assert unauthenticated(await plant.gql(ME, ended.access_token)).startswith("session ended")
    assert unauthenticated(await plant.gql(ME, disabled.access_token)).startswith(
        "session disabled"
    )
    # Their refresh tokens are dead too.
    for dead in (logged_out, ended, disabled):
        unauthenticated(await plant.gql(REFRESH, t=dead.refresh_token))
    # Enabling the account again does not bring its old sessions back.
    assert "errors" not in await plant.gql(ENABLE, admin_token, u=leaving.username)
    unauthenticated(await plant.gql(ME, disabled.access_token))

    ana_events = await operator_events(plant, plant.username)
    [logout] = named(ana_events, "LoggedOut")
    assert (field(logout, "session_id"), field(logout, "actor")) == (
        logged_out.session_id,
        plant.username,
    )
    [revoked] = named(ana_events, "SessionRevoked")
    assert (field(revoked, "session_id"), field(revoked, "actor")) == (
        ended.session_id,
        admin.username,
    )
    assert field(revoked, "reason") == f"ended by {admin.username}"
    [disabling] = named(await operator_events(plant, leaving.username), "Disabled")
    assert (field(disabling, "actor"), field(disabling, "reason")) == (
        admin.username,
        "left the company",
    )


async def test_a_refresh_token_works_once_and_its_reuse_revokes_the_session(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    first = (await plant.gql(LOGIN, u=plant.username, p=PASSWORD))["data"]["login"]
    # A token never issued for the session is refused, and an outsider cannot end it so.
    made_up, _ = new_refresh_token(plant.username, first["sessionId"])
    outsider = refusal(await plant.gql(REFRESH, t=made_up))
    assert outsider["extensions"] == {"code": "unauthenticated", "reason": "invalid"}
    second = (await plant.gql(REFRESH, t=first["refreshToken"]))["data"]["refreshToken"]
    third = (await plant.gql(REFRESH, t=second["refreshToken"]))["data"]["refreshToken"]
    assert first["sessionId"] == second["sessionId"] == third["sessionId"]
    assert len({first["refreshToken"], second["refreshToken"], third["refreshToken"]}) == 3
    assert "errors" not in await plant.gql(ME, third["accessToken"])

    # The second refresh token was used already: someone holds a copy.
    reused = refusal(await plant.gql(REFRESH, t=second["refreshToken"]))
    assert reused["extensions"] == {"code": "unauthenticated", "reason": "refresh_reused"}
    for token in (first["accessToken"], third["accessToken"]):
        assert unauthenticated(await plant.gql(ME, token)).startswith("session ended")
    newest = refusal(await plant.gql(REFRESH, t=third["refreshToken"]))
    assert newest["extensions"] == {"code": "unauthenticated", "reason": "ended"}

    events = await operator_events(plant, plant.username)
    session_events = [
        event for event in events if getattr(event, "session_id", None) == first["sessionId"]
    ]
    assert names(session_events) == [
        "LoginSucceeded",
        "SessionRefreshed",
        "SessionRefreshed",
        "SessionRevoked",
    ]
    revoked = session_events[-1]
    assert (field(revoked, "reason"), field(revoked, "actor")) == ("refresh_reused", "system")
    assert [field(e, "generation") for e in session_events[1:3]] == [1, 2]
    # A malformed or made-up refresh token is refused without ending anything.
    assert refusal(await plant.gql(REFRESH, t="garbage"))["extensions"]["code"] == (
        "unauthenticated"
    )


async def test_an_admin_sees_open_sessions_with_their_source(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = (await open_session(plant, admin.username)).access_token
    login = (await plant.gql(LOGIN, u=plant.username, p=PASSWORD))["data"]["login"]
    refreshed = (await plant.gql(REFRESH, t=login["refreshToken"]))["data"]["refreshToken"]

    listed = (await plant.gql(SESSIONS, admin_token))["data"]["sessions"]
    [ana] = [s for s in listed if s["sessionId"] == login["sessionId"]]
    # httpx's ASGI transport reports its client as 127.0.0.1, as uvicorn would a local one.
    assert (ana["username"], ana["source"], ana["refreshes"]) == (plant.username, "127.0.0.1", 1)
    started = datetime.fromisoformat(ana["startedAt"])
    assert datetime.fromisoformat(ana["expiresAt"]) - started == timedelta(hours=12)
    assert {s["username"] for s in listed} == {plant.username, admin.username}

    # Only an admin may look.
    forbidden = refusal(await plant.gql(SESSIONS, refreshed["accessToken"]))
    assert forbidden["extensions"]["code"] == "forbidden"

    assert await plant.gql(LOGOUT, refreshed["accessToken"]) == {"data": {"logout": True}}
    listed = (await plant.gql(SESSIONS, admin_token))["data"]["sessions"]
    assert login["sessionId"] not in {s["sessionId"] for s in listed}
    [succeeded] = named(await operator_events(plant, plant.username), "LoginSucceeded")
    assert field(succeeded, "source") == "127.0.0.1"


async def test_a_revoked_role_is_refused_at_once_with_the_old_token(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = (await open_session(plant, admin.username)).access_token
    person = await plant.add_operator(["operator", "viewer"], [f"device:{plant.device}"])
    token = (await open_session(plant, person.username)).access_token
    ask: dict[str, Any] = {"d": plant.device, "t": "speed_setpoint", "v": 100}
    assert "errors" not in await plant.gql(REQUEST, token, **ask)

    revoked = await plant.gql(REVOKE_ROLE, admin_token, u=person.username, r="operator")
    assert revoked == {"data": {"revokeRole": {"roles": ["viewer"]}}}
    # The token still says "operator"; the plant reads the roles from the record.
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == [
        "operator",
        "viewer",
    ]
    me = (await plant.gql(ME, token))["data"]["me"]
    assert me["roles"] == ["viewer"]
    error = refusal(await plant.gql(REQUEST, token, **ask))
    assert error["extensions"]["code"] == "forbidden"
    events = await command_events(plant, error["extensions"]["commandId"])
    assert names(events) == ["Requested", "Rejected"]
    assert field(events[-1], "reason") == "forbidden"
    [role_revoked] = named(await operator_events(plant, person.username), "RoleRevoked")
    assert (field(role_revoked, "role"), field(role_revoked, "actor")) == (
        "operator",
        admin.username,
    )


async def test_a_subscription_ends_unauthenticated_after_logout(
    make_plant: PlantFactory, redis_client: aioredis.Redis
) -> None:
    """The stream rechecks its session every ``session_recheck_seconds`` (0.2 s in these tests)."""
    plant = await make_plant(dispatcher=False)
    key = LIVE_KEY.format(device=plant.device)
    sample = Sample("speed", 1000, Quality.GOOD, "rpm", datetime.now(UTC))
    await redis_client.hset(key, "speed", sample_json(sample))
    ana = await open_session(plant, plant.username)
    socket = await GraphQLSocket.open(plant.ws_url, ana.access_token)
    try:
        operation = await socket.subscribe(TAG_UPDATES, d=plant.device)
        snapshot = await first_message(socket, operation)
        assert snapshot["payload"]["data"]["tagUpdates"] == {"tag": "speed", "snapshot": True}
        assert await plant.gql(LOGOUT, ana.access_token) == {"data": {"logout": True}}
        ended = await first_message(socket, operation)
        after = await first_message(socket, operation)
    finally:
        await socket.close()
        await redis_client.delete(key)
    assert message_codes(ended) == ["unauthenticated"], ended
    assert after["type"] == "complete"
    assert codes(await plant.gql(ME, ana.access_token)) == ["unauthenticated"]
