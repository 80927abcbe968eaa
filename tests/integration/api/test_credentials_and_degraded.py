"""Credentials changed by their owner or an admin, and commands when a dependency fails.

- A wrong current password to ``changePassword`` counts toward the lockout as a
  failed login does (a stolen access token is no password oracle).
- An admin's ``resetPassword`` ends every session of that operator.
- With Redis unreachable the rate cannot be counted: ordinary commands are
  refused (recorded), an emergency stop still goes through.
- A TOTP secret sealed under another key is refused with its own code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.app import create_app
from api.rate_limit import CommandRateCounter
from api.secrets import SecretBox, generate_key
from domain.operator import LoginPolicy
from tests.integration.api.access import (
    CONFIRM,
    ME,
    REQUEST,
    codes,
    command_events,
    field,
    named,
    names,
    open_session,
    operator_events,
)
from tests.integration.api.conftest import PASSWORD, PlantFactory
from tests.support import free_port

pytestmark = pytest.mark.integration

CHANGE_PASSWORD = """mutation($old: String!, $new: String!) {
    changePassword(currentPassword: $old, newPassword: $new) }"""
RESET_PASSWORD = """mutation($u: String!, $p: String!) {
    resetPassword(username: $u, password: $p) { username } }"""


async def test_wrong_current_passwords_are_recorded_and_lock_the_account(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False, login_policy=LoginPolicy(max_failures=3))
    session = await open_session(plant, plant.username)

    answers = [
        await plant.gql(CHANGE_PASSWORD, session.access_token, old="guess-" + str(n), new="x" * 12)
        for n in range(4)
    ]

    assert [codes(a) for a in answers] == [
        ["invalid_credentials"],
        ["invalid_credentials"],
        ["account_locked"],
        ["account_locked"],  # the right password or not, while locked
    ]
    failed = named(await operator_events(plant, plant.username), "LoginFailed")
    assert [(field(e, "reason"), field(e, "failures")) for e in failed] == [
        ("invalid_credentials", 1),
        ("invalid_credentials", 2),
        ("invalid_credentials", 3),
        ("locked", 3),
    ]
    locked = await plant.gql(CHANGE_PASSWORD, session.access_token, old=PASSWORD, new="y" * 12)
    assert codes(locked) == ["account_locked"]


async def test_an_admin_password_reset_ends_every_session_of_that_operator(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], ["plant"])
    admin_token = (await open_session(plant, admin.username)).access_token
    sessions = [await open_session(plant, plant.username) for _ in range(2)]

    reset = await plant.gql(RESET_PASSWORD, admin_token, u=plant.username, p="a new long password")

    assert reset["data"]["resetPassword"] == {"username": plant.username}
    for session in sessions:
        assert codes(await plant.gql(ME, session.access_token)) == ["unauthenticated"]
    revoked = named(await operator_events(plant, plant.username), "SessionRevoked")
    assert sorted(field(e, "session_id") for e in revoked) == sorted(s.session_id for s in sessions)
    assert {(field(e, "reason"), field(e, "actor")) for e in revoked} == {
        ("password reset", admin.username)
    }
    assert "errors" not in await plant.gql(ME, admin_token)  # the admin's own session stays


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a Redis that is not there: a port nothing listens on."""
    client = aioredis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", decode_responses=True, socket_connect_timeout=0.2
    )
    yield client
    await client.aclose()


async def test_without_redis_ordinary_commands_are_refused_but_an_emergency_stop_is_not(
    make_plant: PlantFactory, unreachable_redis: aioredis.Redis
) -> None:
    plant = await make_plant(dispatcher=False)
    services = dataclasses.replace(
        plant.services, command_rate=CommandRateCounter(unreachable_redis)
    )
    token = (await open_session(plant, plant.username)).access_token
    async with _client(services) as degraded:
        setpoint = await _ask(degraded, token, plant.device, "speed_setpoint", 900)
        stop = await _ask(degraded, token, plant.device, "running", False)

    assert codes(setpoint) == ["rate_limited"]
    refused = await command_events(plant, setpoint["errors"][0]["extensions"]["commandId"])
    assert names(refused) == ["Requested", "Rejected"]
    assert field(refused[-1], "detail") == "the commands of the last minute cannot be counted"
    assert stop["data"]["requestCommand"]["challenge"] == "none"
    released = await command_events(plant, stop["data"]["requestCommand"]["commandId"])
    assert names(released) == ["Requested", "Confirmed"]
    assert field(released[-1], "emergency") is True


async def test_a_secret_sealed_under_another_key_asks_to_enrol_again(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = (await open_session(plant, plant.username)).access_token
    body = await plant.gql(REQUEST, token, d=plant.device, t="speed_setpoint", v=700)
    command_id = body["data"]["requestCommand"]["commandId"]
    rekeyed = dataclasses.replace(plant.services, secrets=SecretBox.from_text(generate_key()))

    async with _client(rekeyed) as other_key:
        answer = await _gql(other_key, CONFIRM, token, id=command_id, code=plant.totp.now())

    assert codes(answer) == ["totp_unavailable"]
    # Nothing was decided on the command: it still waits for a readable code.
    assert names(await command_events(plant, command_id)) == ["Requested", "ChallengeIssued"]


def _client(services: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)), base_url="http://plant"
    )


async def _gql(
    client: httpx.AsyncClient, query: str, token: str, **variables: Any
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = response.json()
    return body


async def _ask(
    client: httpx.AsyncClient, token: str, device: str, tag: str, value: Any
) -> dict[str, Any]:
    return await _gql(client, REQUEST, token, d=device, t=tag, v=value)
