"""Failed logins: recorded with their source, locking the account for longer each time.

The client is told none of it: every refused login gets the same answer
(``invalid_credentials``), so the lockout is read where it is kept, in the
event log and in the admin's ``operators``.

The plant's clock is moved by hand (nothing sleeps). Access tokens are still
checked against the real clock, so an admin's token is taken before the
plant's clock moves ahead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.graphql.login import LOGIN_REFUSED
from tests.integration.api.access import (
    ME,
    MutableClock,
    directory_events,
    field,
    named,
    names,
    open_session,
    operator_events,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, Plant, PlantFactory

pytestmark = pytest.mark.integration

LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { sessionId } }"""
UNLOCK = """mutation($u: String!) {
    unlockOperator(username: $u) { failedLogins lockedUntil } }"""
OPERATORS = "{ operators { username failedLogins lockedUntil } }"
# What httpx's ASGI transport reports as the client of every request.
SOURCE = "127.0.0.1"


async def log_in(plant: Plant, password: str, username: str | None = None) -> dict[str, Any]:
    return await plant.gql(LOGIN, u=username or plant.username, p=password)


async def wrong(plant: Plant, times: int) -> None:
    """``times`` logins with a wrong password, each refused with the one answer."""
    for _ in range(times):
        await refused(plant, "not the password")


async def refused(plant: Plant, password: str) -> None:
    error = refusal(await log_in(plant, password))
    assert (error["message"], error["extensions"]) == (
        LOGIN_REFUSED,
        {"code": "invalid_credentials"},
    )


async def locked_until(plant: Plant) -> list[datetime]:
    """The end of each lockout of the plant's operator so far, as the event log has it."""
    events = await operator_events(plant, plant.username)
    return [field(e, "until") for e in named(events, "LockedOut")]


async def test_wrong_passwords_lock_the_account_for_longer_each_time(
    make_plant: PlantFactory,
) -> None:
    clock = MutableClock(datetime.now(UTC))
    plant = await make_plant(dispatcher=False, clock=clock)

    await wrong(plant, 4)
    assert await locked_until(plant) == []
    await wrong(plant, 1)
    assert await locked_until(plant) == [clock.now + timedelta(minutes=1)]
    # The right password is refused alike while the lockout lasts.
    await refused(plant, PASSWORD)

    events = await operator_events(plant, plant.username)
    failed = named(events, "LoginFailed")
    assert [(field(e, "reason"), field(e, "failures")) for e in failed] == [
        *(("invalid_credentials", n) for n in range(1, 6)),
        ("locked", 5),  # a try during the lockout does not lengthen it
    ]
    assert {field(e, "source") for e in failed} == {SOURCE}
    [locked] = named(events, "LockedOut")
    assert (field(locked, "until"), field(locked, "lockouts")) == (
        clock.now + timedelta(minutes=1),
        1,
    )

    # After the lockout, the next five wrong passwords lock it for twice as long.
    clock.advance(timedelta(minutes=1, seconds=1))
    await wrong(plant, 4)
    assert len(await locked_until(plant)) == 1
    await wrong(plant, 1)
    assert (await locked_until(plant))[-1] == clock.now + timedelta(minutes=2)

    # A login with the right password, once the lockout is over, starts afresh.
    clock.advance(timedelta(minutes=2, seconds=1))
    assert "errors" not in await log_in(plant, PASSWORD)
    await wrong(plant, 5)
    assert (await locked_until(plant))[-1] == clock.now + timedelta(minutes=1)

    events = await operator_events(plant, plant.username)
    assert [field(e, "lockouts") for e in named(events, "LockedOut")] == [1, 2, 1]
    assert names(events).count("LoginSucceeded") == 1
    assert names(events).count("LoginFailed") == 16


async def test_a_failed_login_for_an_unknown_name_is_recorded_on_the_directory(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    nobody = "nobody-" + plant.username
    error = refusal(await log_in(plant, PASSWORD, username=nobody))
    # The same answer as a wrong password: the API does not tell which names exist.
    assert (error["message"], error["extensions"]) == (
        LOGIN_REFUSED,
        {"code": "invalid_credentials"},
    )
    [attempt] = named(await directory_events(plant), "UnknownLoginFailed")
    assert (field(attempt, "username"), field(attempt, "source"), field(attempt, "actor")) == (
        nobody,
        SOURCE,
        "system",
    )


async def test_an_admin_ends_a_lockout(make_plant: PlantFactory) -> None:
    clock = MutableClock(datetime.now(UTC))
    plant = await make_plant(dispatcher=False, clock=clock)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = (await open_session(plant, admin.username)).access_token
    at_the_console = (await open_session(plant, plant.username)).access_token

    await wrong(plant, 5)
    assert await locked_until(plant) == [clock.now + timedelta(minutes=1)]
    # Someone guessing the password does not log out the operator at the console.
    assert "errors" not in await plant.gql(ME, at_the_console)
    [listed] = [
        o
        for o in (await plant.gql(OPERATORS, admin_token))["data"]["operators"]
        if o["username"] == plant.username
    ]
    assert listed["failedLogins"] == 5
    assert datetime.fromisoformat(listed["lockedUntil"]) == clock.now + timedelta(minutes=1)

    unlocked = await plant.gql(UNLOCK, admin_token, u=plant.username)
    assert unlocked == {"data": {"unlockOperator": {"failedLogins": 0, "lockedUntil": None}}}
    # At once, with the plant's clock where it was.
    assert "errors" not in await log_in(plant, PASSWORD)
    [unlock] = named(await operator_events(plant, plant.username), "Unlocked")
    assert (field(unlock, "actor"), field(unlock, "at")) == (admin.username, clock.now)

    # Only an admin may unlock.
    forbidden = refusal(await plant.gql(UNLOCK, at_the_console, u=plant.username))
    assert forbidden["extensions"]["code"] == "forbidden"
