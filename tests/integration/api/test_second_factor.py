"""The second factor through the API: never replaced by the password, guessing bounded per person.

- ``enrollTotp`` over an existing authenticator needs a code of it; the
  password alone is refused, and the refusal recorded.
- ``createOperator`` answers a one-time enrolment token, not a secret; the
  operator enrols with it, once.
- A lost authenticator is recovered by two admins, each signing with their
  own code and each shown one part of the new token; the approval ends the
  operator's sessions; the operator enrols with both parts, once.
- Wrong codes count per person over every command: the sixth in 15 minutes is
  refused, and so is every code after it, until an admin unlocks.
- A second person's wrong codes never end the requester's critical command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pyotp
import pytest

from domain.command import CommandStatus
from tests.integration.api.access import (
    APPROVE,
    CONFIRM,
    ME,
    REQUEST,
    codes,
    command_events,
    field,
    names,
    next_code,
    open_session,
    operator_events,
    refusal,
)
from tests.integration.api.conftest import PASSWORD, SECRETS, Plant, PlantFactory
from tests.support import unique

pytestmark = pytest.mark.integration

ENROL_WITH_PASSWORD = """mutation($p: String!) {
    enrollTotp(password: $p) { username provisioningUri } }"""
ENROL_WITH_CODE = """mutation($p: String!, $c: String!) {
    enrollTotp(password: $p, code: $c) { username provisioningUri } }"""
ENROL_WITH_TOKEN = """mutation($t: String!) {
    enrollTotpWithToken(enrolmentToken: $t) { username provisioningUri } }"""
CREATE = """mutation($u: String!, $p: String!) {
    createOperator(username: $u, fullName: "Nina New", roles: ["operator"], password: $p) {
        __typename username enrolmentToken expiresAt } }"""
REQUEST_RECOVERY = """mutation($u: String!, $c: String!) {
    requestTotpRecovery(username: $u, reason: "phone lost", code: $c) {
        username requestedBy approvedBy tokenPart expiresAt } }"""
APPROVE_RECOVERY = """mutation($u: String!, $c: String!) {
    approveTotpRecovery(username: $u, code: $c) {
        username requestedBy approvedBy tokenPart expiresAt } }"""
LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { accessToken totpEnrolmentRequired } }"""
OPERATORS = """{ operators { username totpEnrolled secondFactorLockedUntil
    totpRecoveryRequestedBy } }"""
UNLOCK = """mutation($u: String!) {
    unlockSecondFactor(username: $u) { username secondFactorLockedUntil } }"""
COMMAND = "query($id: ID!) { command(commandId: $id) { status attemptsLeft approvedBy } }"


def wrong_code(totp: pyotp.TOTP) -> str:
    """A code of none of the steps the verifier accepts now."""
    step = totp.timecode(datetime.now(UTC))
    valid = {totp.generate_otp(s) for s in range(step - 2, step + 3)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


async def data(plant: Plant, query: str, token: str, **variables: Any) -> Any:
    body = await plant.gql(query, token, **variables)
    assert "errors" not in body, body
    return body["data"]


async def session_of(plant: Plant, username: str) -> str:
    return (await open_session(plant, username)).access_token


async def requested(plant: Plant, token: str, tag: str = "speed_setpoint", value: int = 900) -> str:
    ticket = await data(plant, REQUEST, token, d=plant.device, t=tag, v=value)
    command_id: str = ticket["requestCommand"]["commandId"]
    return command_id


async def signs(plant: Plant, token: str, code: str) -> dict[str, Any]:
    """Request a setpoint write and confirm it with ``code``: the answer of the confirmation."""
    return await plant.gql(CONFIRM, token, id=await requested(plant, token), code=code)


async def own_events(plant: Plant, username: str, after: int) -> list[str]:
    return names(await operator_events(plant, username))[after:]


def secret_of(uri: str) -> pyotp.TOTP:
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp


async def test_enrolling_over_a_secret_without_its_code_is_refused_and_recorded(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await session_of(plant, plant.username)
    before = len(await operator_events(plant, plant.username))

    # Whoever has the password and a session (a thief, an admin who reset it) tries.
    taken = await plant.gql(ENROL_WITH_PASSWORD, token, p=PASSWORD)
    assert refusal(taken)["extensions"]["code"] == "wrong_code"
    guessed = await plant.gql(ENROL_WITH_CODE, token, p=PASSWORD, c=wrong_code(plant.totp))
    assert refusal(guessed)["extensions"] == {"code": "wrong_code", "codesLeft": 3}
    events = (await operator_events(plant, plant.username))[before:]
    assert [(type(e).__name__, field(e, "target")) for e in events] == [
        ("SecondFactorFailed", "enrolment"),
        ("SecondFactorFailed", "enrolment"),
    ]
    operator = await plant.store_executor.call(plant.app.get_operator, plant.username)
    assert SECRETS.open(operator.totp_secret_sealed, username=plant.username) == plant.totp.secret

    # With a code of it, she replaces it; the old one stops signing, the new one signs.
    enrolled = await data(plant, ENROL_WITH_CODE, token, p=PASSWORD, c=plant.totp.now())
    new = secret_of(enrolled["enrollTotp"]["provisioningUri"])
    assert codes(await signs(plant, token, plant.totp.now())) == ["wrong_code"]
    assert codes(await signs(plant, token, next_code(new, datetime.now(UTC)))) == []
    replaced = [
        e
        for e in await operator_events(plant, plant.username)
        if type(e).__name__ == "TotpEnrolled"
    ]
    assert [(field(e, "method"), field(e, "actor")) for e in replaced] == [("code", plant.username)]


async def test_a_new_account_enrols_itself_once_with_its_token(make_plant: PlantFactory) -> None:
    plant = await make_plant(dispatcher=False)
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    created = await plant.gql(
        CREATE, await session_of(plant, admin.username), u=unique("nina"), p=PASSWORD
    )
    # What the admin gets: a token, nothing that computes a code.
    assert "errors" not in created, created
    assert "otpauth" not in json.dumps(created)
    grant = created["data"]["createOperator"]
    assert grant["__typename"] == "EnrolmentToken"
    nina = grant["username"]
    assert names(await operator_events(plant, nina)) == ["Registered", "EnrolmentTokenIssued"]
    assert field((await operator_events(plant, nina))[0], "totp_secret_sealed") == ""

    login = (await data(plant, LOGIN, "", u=nina, p=PASSWORD))["login"]
    assert login["totpEnrolmentRequired"] is True
    token = login["accessToken"]
    # The password alone gives no authenticator, and nothing signs without one.
    assert codes(await plant.gql(ENROL_WITH_PASSWORD, token, p=PASSWORD)) == ["totp_not_enrolled"]
    enrolled = await data(plant, ENROL_WITH_TOKEN, token, t=grant["enrolmentToken"])
    totp = secret_of(enrolled["enrollTotpWithToken"]["provisioningUri"])
    again = await plant.gql(ENROL_WITH_TOKEN, token, t=grant["enrolmentToken"])
    assert refusal(again)["extensions"]["code"] == "invalid_enrolment_token"
    operator = await plant.store_executor.call(plant.app.get_operator, nina)
    assert SECRETS.open(operator.totp_secret_sealed, username=nina) == totp.secret
    recorded = await operator_events(plant, nina)
    assert names(recorded)[2:] == ["LoginSucceeded", "TotpEnrolled", "SecondFactorFailed"]
    assert (field(recorded[3], "method"), field(recorded[4], "reason")) == (
        "token",
        "invalid_enrolment_token",
    )


async def test_a_lost_authenticator_is_recovered_by_two_admins_and_ends_the_sessions(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    ada = await plant.add_operator(["admin"], full_name="Ada Admin")
    rita = await plant.add_operator(["admin"], full_name="Rita Root")
    ada_token, rita_token = (
        await session_of(plant, ada.username),
        await session_of(plant, rita.username),
    )
    ana_token = await session_of(plant, plant.username)

    asked = await data(plant, REQUEST_RECOVERY, ada_token, u=plant.username, c=ada.code())
    request = asked["requestTotpRecovery"]
    assert (request["requestedBy"], request["approvedBy"]) == (ada.username, None)
    # One admin is not enough: she cannot approve her own request.
    alone = await plant.gql(
        APPROVE_RECOVERY, ada_token, u=plant.username, c=next_code(ada.totp, datetime.now(UTC))
    )
    assert refusal(alone)["extensions"]["code"] == "second_person_required"
    assert codes(await plant.gql(ME, ana_token)) == []  # nothing happened yet
    waiting = (await data(plant, OPERATORS, rita_token))["operators"]
    assert {o["username"]: o["totpRecoveryRequestedBy"] for o in waiting}[
        plant.username
    ] == ada.username

    approved = (await data(plant, APPROVE_RECOVERY, rita_token, u=plant.username, c=rita.code()))[
        "approveTotpRecovery"
    ]
    assert (approved["requestedBy"], approved["approvedBy"]) == (ada.username, rita.username)
    # Ana's sessions ended with her old authenticator; neither admin saw a secret.
    assert codes(await plant.gql(ME, ana_token)) == ["unauthenticated"]
    assert "otpauth" not in json.dumps([asked, approved])
    target = await operator_events(plant, plant.username)
    assert names(target)[-2:] == ["TotpRecoveryRequested", "TotpRecoveryApproved"]
    assert [field(e, "actor") for e in target[-2:]] == [ada.username, rita.username]

    login = (await data(plant, LOGIN, "", u=plant.username, p=PASSWORD))["login"]
    assert login["totpEnrolmentRequired"] is True
    token = login["accessToken"]
    assert codes(await signs(plant, token, plant.totp.now())) == ["totp_not_enrolled"]
    # Each admin's part alone does not enrol; both together do, once.
    for part in (request["tokenPart"], approved["tokenPart"]):
        alone = await plant.gql(ENROL_WITH_TOKEN, token, t=part)
        assert refusal(alone)["extensions"]["code"] == "invalid_enrolment_token"
    whole = f"{request['tokenPart']}-{approved['tokenPart']}"
    enrolled = await data(plant, ENROL_WITH_TOKEN, token, t=whole)
    new = secret_of(enrolled["enrollTotpWithToken"]["provisioningUri"])
    assert codes(await signs(plant, token, new.now())) == []
    again = await plant.gql(ENROL_WITH_TOKEN, token, t=whole)
    assert refusal(again)["extensions"]["code"] == "invalid_enrolment_token"


async def test_six_wrong_codes_across_commands_lock_that_persons_confirmations(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await session_of(plant, plant.username)
    answers = [await signs(plant, token, wrong_code(plant.totp)) for _ in range(6)]
    assert [codes(answer) for answer in answers] == [["wrong_code"]] * 5 + [
        ["second_factor_locked"]
    ]
    assert [refusal(a)["extensions"]["codesLeft"] for a in answers[:5]] == [4, 3, 2, 1, 0]
    # Each of those commands has two attempts left: none was near its own limit.
    assert {refusal(a)["extensions"]["attemptsLeft"] for a in answers[:5]} == {2}
    until = refusal(answers[5])["extensions"]["until"]
    # Locked, even the right code is refused unchecked, and the command it was for waits on.
    command_id = await requested(plant, token)
    right = await plant.gql(CONFIRM, token, id=command_id, code=plant.totp.now())
    assert refusal(right)["extensions"] == {"code": "second_factor_locked", "until": until}
    assert names(await command_events(plant, command_id)) == ["Requested", "ChallengeIssued"]
    counted = [
        n
        for n in names(await operator_events(plant, plant.username))
        if n.startswith("SecondFactor")
    ]
    assert counted == [
        *["SecondFactorFailed"] * 5,
        "SecondFactorLockedOut",
        *["SecondFactorRefused"] * 2,
    ]

    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    admin_token = await session_of(plant, admin.username)
    shown = {o["username"]: o for o in (await data(plant, OPERATORS, admin_token))["operators"]}
    assert shown[plant.username]["secondFactorLockedUntil"] == until
    # Nobody unlocks themselves; another admin does.
    own = await plant.gql(UNLOCK, admin_token, u=admin.username)
    assert refusal(own)["extensions"]["code"] == "self"
    unlocked = await data(plant, UNLOCK, admin_token, u=plant.username)
    assert unlocked["unlockSecondFactor"]["secondFactorLockedUntil"] is None
    confirmed = await data(plant, CONFIRM, token, id=command_id, code=plant.totp.now())
    assert confirmed["confirmCommand"]["status"] == "CONFIRMED"


async def test_an_approver_guessing_does_not_end_the_requesters_command(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = await session_of(plant, plant.username)
    bob = await plant.add_operator(["operator"], [f"device:{plant.device}"], full_name="Bob Ruiz")
    bob_token = await session_of(plant, bob.username)
    command_id = await requested(plant, token, tag="pressure_setpoint", value=120)
    await data(plant, CONFIRM, token, id=command_id, code=plant.totp.now())

    for _ in range(3):
        guessed = await plant.gql(APPROVE, bob_token, id=command_id, code=wrong_code(bob.totp))
        assert refusal(guessed)["extensions"]["code"] == "wrong_code"
    command = (await data(plant, COMMAND, token, id=command_id))["command"]
    # Still Ana's to be approved, with all her attempts: Bob's guesses were his.
    assert (command["status"], command["attemptsLeft"]) == ("AWAITING_APPROVAL", 3)
    events = await command_events(plant, command_id)
    assert [(type(e).__name__, field(e, "reason")) for e in events[-3:]] == [
        ("ApprovalRefused", "wrong_code")
    ] * 3
    approved = await data(plant, APPROVE, bob_token, id=command_id, code=bob.code())
    assert approved["approveCommand"]["status"] == CommandStatus.CONFIRMED.name
    stored = await plant.store_executor.call(plant.app.get_command, UUID(command_id))
    assert stored.approved_by == bob.username
