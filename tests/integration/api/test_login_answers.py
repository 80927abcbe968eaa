"""A refused login tells the client nothing about the account; the record keeps the truth.

A wrong password, a user name nobody has, a locked account and a disabled one
(the last two with the right password) get the same answer, in the same time:
otherwise an outsider learns which names exist and what state their accounts
are in. The event log still says which it was, with the source address.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

import pytest

from api.credentials import verify_password
from api.graphql.login import LOGIN_REFUSED
from domain.errors import LoginRefused
from domain.operator import LoginPolicy
from support.clock import utc_now
from tests.integration.api.access import (
    directory_events,
    field,
    named,
    operator_events,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, PASSWORD_HASH, Plant, PlantFactory

pytestmark = pytest.mark.integration

LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { sessionId } }"""
ONE_ANSWER = {"message": LOGIN_REFUSED, "extensions": {"code": "invalid_credentials"}}
# Far above the attempts of a test: the wrong-password account must not lock on the way.
MAX_FAILURES = 20
SOURCE = "127.0.0.1"


@dataclass(frozen=True)
class Attempt:
    """A login bound to be refused, and the reason the record must give."""

    username: str
    password: str
    reason: str


async def refused_attempts(plant: Plant) -> dict[str, Attempt]:
    """One account in each state a login is refused for, and the attempt on it."""
    locked = await plant.add_operator(["operator"])
    for _ in range(MAX_FAILURES):  # through the domain: the lockout, without Argon2's cost
        with contextlib.suppress(LoginRefused):
            await plant.store_executor.call(
                plant.app.check_password,
                username=locked.username,
                password_matches=False,
                source="test",
                at=utc_now(),
            )
    disabled = await plant.add_operator(["operator"])
    await plant.store_executor.call(
        plant.app.disable_operator,
        username=disabled.username,
        reason="left the plant",
        actor="admin",
        at=utc_now(),
    )
    return {
        "wrong password": Attempt(plant.username, "not the password", "invalid_credentials"),
        "unknown user": Attempt("nobody-" + plant.username, PASSWORD, "unknown"),
        "locked": Attempt(locked.username, PASSWORD, "locked"),
        "disabled": Attempt(disabled.username, PASSWORD, "disabled"),
    }


async def log_in(plant: Plant, attempt: Attempt) -> dict[str, Any]:
    return await plant.gql(LOGIN, u=attempt.username, p=attempt.password)


async def recorded_reason(plant: Plant, attempt: Attempt) -> str:
    """The reason the event log gives for the last refused login of ``attempt``."""
    if attempt.reason == "unknown":
        tried = named(await directory_events(plant), "UnknownLoginFailed")
        assert [(field(e, "username"), field(e, "source")) for e in tried][-1:] == [
            (attempt.username, SOURCE)
        ]
        return "unknown"
    failed = named(await operator_events(plant, attempt.username), "LoginFailed")
    assert field(failed[-1], "source") == SOURCE
    return str(field(failed[-1], "reason"))


async def test_every_refused_login_gets_one_answer_and_the_record_keeps_the_reason(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False, login_policy=LoginPolicy(max_failures=MAX_FAILURES))
    attempts = await refused_attempts(plant)

    answers = {}
    for kind, attempt in attempts.items():
        error = refusal(await log_in(plant, attempt))
        answers[kind] = {"message": error["message"], "extensions": error["extensions"]}
        assert await recorded_reason(plant, attempt) == attempt.reason, kind

    assert all(answer == answers["wrong password"] for answer in answers.values()), answers
    assert answers["wrong password"] == ONE_ANSWER


async def test_the_time_of_a_refused_login_does_not_tell_which_refusal_it_was(
    make_plant: PlantFactory,
) -> None:
    """The median answer time of each refusal, against the cost of one Argon2 verification.

    Leaving Argon2 out of one path makes it faster by a whole verification; the
    medians of interleaved rounds may differ by half of one at most, which the
    noise of a shared machine does not reach (a median ignores a few slow laps).
    """
    plant = await make_plant(dispatcher=False, login_policy=LoginPolicy(max_failures=MAX_FAILURES))
    attempts = await refused_attempts(plant)
    rounds = 5
    laps: dict[str, list[float]] = {kind: [] for kind in attempts}
    argon2: list[float] = []
    kinds = list(attempts)
    for lap in range(rounds):
        # Each round in another order, so that no kind always follows the same one.
        for kind in kinds[lap % len(kinds) :] + kinds[: lap % len(kinds)]:
            started = time.perf_counter()
            refusal(await log_in(plant, attempts[kind]))
            laps[kind].append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.to_thread(verify_password, PASSWORD_HASH, "not the password")
        argon2.append(time.perf_counter() - started)

    medians = {kind: statistics.median(durations) for kind, durations in laps.items()}
    spread = max(medians.values()) - min(medians.values())
    assert spread < statistics.median(argon2) / 2, (medians, statistics.median(argon2))
