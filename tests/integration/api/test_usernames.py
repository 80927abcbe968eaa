"""User names through the API: whatever form a person types, it is the same account.

``createOperator`` stores the normal form of the name (the TOTP secret its
owner enrols is sealed to it, and opens whenever they sign), refuses an empty
name, control characters and any look-alike of a name already taken.
``login``, ``refreshToken`` and the admin's fields take any form of the name.
An account registered before names were normalised keeps its name, its
sealed secret and its sessions, and is found by any form of its name too.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pyotp
import pytest

from domain.operator import Operator
from domain.operator_directory import OperatorDirectory, directory_id
from support.clock import utc_now
from tests.integration.api.access import CONFIRM, ME, REQUEST, open_session, refusal
from tests.integration.api.conftest import PASSWORD, PASSWORD_HASH, SECRETS, Plant, PlantFactory
from tests.support import unique

pytestmark = pytest.mark.integration

CREATE = """mutation($u: String!) { createOperator(username: $u, fullName: "Ana Gil",
    roles: ["operator"], password: "correct horse battery") { username enrolmentToken } }"""
ENROL = """mutation($t: String!) {
    enrollTotpWithToken(enrolmentToken: $t) { username provisioningUri } }"""
GRANT = """mutation($u: String!, $s: String!) {
    grantPermission(username: $u, scope: $s) { username scopes } }"""
LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { accessToken refreshToken username } }"""
REFRESH = "mutation($t: String!) { refreshToken(token: $t) { accessToken username } }"


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


async def admin_token(plant: Plant) -> str:
    admin = await plant.add_operator(["admin"], full_name="Ada Admin")
    return (await open_session(plant, admin.username)).access_token


async def data(plant: Plant, query: str, token: str | None = None, **variables: Any) -> Any:
    body = await plant.gql(query, token, **variables)
    assert "errors" not in body, body
    return body["data"]


async def log_in(plant: Plant, username: str) -> dict[str, str]:
    login: dict[str, str] = (await data(plant, LOGIN, u=username, p=PASSWORD))["login"]
    return login


async def signs_a_command(plant: Plant, username: str, totp: pyotp.TOTP) -> str:
    """Log in as ``username`` typed so, and confirm a write with the TOTP code; its status."""
    login = await log_in(plant, username)
    token = login["accessToken"]
    refreshed = (await data(plant, REFRESH, t=login["refreshToken"]))["refreshToken"]
    assert refreshed["username"] == login["username"]
    ticket = await data(plant, REQUEST, token, d=plant.device, t="speed_setpoint", v=900)
    command_id = ticket["requestCommand"]["commandId"]
    confirmed = await data(plant, CONFIRM, token, id=command_id, code=totp.now())
    status: str = confirmed["confirmCommand"]["status"]
    return status


async def test_a_name_created_in_any_form_is_one_account_that_signs_with_its_code(
    plant: Plant,
) -> None:
    admin = await admin_token(plant)
    name = unique("gil")
    typed = "\uff21na." + name.upper()  # a full-width A, the rest in capitals
    created = (await data(plant, CREATE, admin, u=typed))["createOperator"]
    assert created["username"] == f"ana.{name}"
    # Its owner enrols, having logged in with yet another form of the name.
    token = (await log_in(plant, f"ANA.{name}"))["accessToken"]
    enrolled = (await data(plant, ENROL, token, t=created["enrolmentToken"]))["enrollTotpWithToken"]
    assert enrolled["username"] == f"ana.{name}"
    totp = pyotp.parse_uri(enrolled["provisioningUri"])
    assert isinstance(totp, pyotp.TOTP)

    granted = await data(plant, GRANT, admin, u=f" ANA.{name} ", s=f"device:{plant.device}")
    assert granted["grantPermission"] == {
        "username": f"ana.{name}",
        "scopes": [f"device:{plant.device}"],
    }
    assert await signs_a_command(plant, f"Ana.{name}", totp) == "CONFIRMED"


async def test_a_look_alike_an_empty_name_and_control_characters_are_refused(
    plant: Plant,
) -> None:
    admin = await admin_token(plant)
    name = unique("eve")
    await data(plant, CREATE, admin, u=name)
    for look_alike in (name.upper(), f" {name} ", name.replace("e", "\uff45")):
        error = refusal(await plant.gql(CREATE, admin, u=look_alike))
        assert error["extensions"]["code"] == "operator_exists", look_alike
    for invalid in ("", "   ", "\u3000", f"{name}\x00x", f"{name}\u200b"):
        error = refusal(await plant.gql(CREATE, admin, u=invalid))
        assert error["extensions"]["code"] == "invalid_username", repr(invalid)


async def test_an_account_from_before_keeps_its_name_and_secret_and_takes_any_form(
    plant: Plant,
) -> None:
    stored_name = "Legacy." + unique("Ruiz")
    secret = pyotp.random_base32()
    # What createOperator stored before names were normalised: the name as typed,
    # the TOTP secret sealed to it.
    operator = Operator.register(
        username=stored_name, full_name="Luz Ruiz", roles=["operator"],
        password_hash=PASSWORD_HASH,
        totp_secret_sealed=SECRETS.seal(secret, username=stored_name),
        actor="admin", at=utc_now(),
    )  # fmt: skip

    def save() -> None:
        directory: OperatorDirectory = plant.app.repository.get(directory_id(plant.app.plant_id))
        directory.list_operator(stored_name, actor="admin", at=utc_now())
        plant.app.save(operator, directory)

    await plant.store_executor.call(save)
    await plant.store_executor.call(
        partial(
            plant.app.grant_permission,
            username=stored_name,
            scope=f"device:{plant.device}",
            actor="admin",
            at=utc_now(),
        )
    )
    assert await signs_a_command(plant, stored_name.lower(), pyotp.TOTP(secret)) == "CONFIRMED"
    token = (await open_session(plant, stored_name.upper())).access_token
    assert (await data(plant, ME, token))["me"]["username"] == stored_name

    admin = await admin_token(plant)
    error = refusal(await plant.gql(CREATE, admin, u=stored_name.lower()))
    assert error["extensions"]["code"] == "operator_exists"
