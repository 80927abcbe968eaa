"""Every refusal of the permission matrix through GraphQL is on the record."""

from __future__ import annotations

import pytest

from tests.integration.api.access import codes, field, named, open_session, operator_events
from tests.integration.api.conftest import PlantFactory

pytestmark = pytest.mark.integration

SET_MODE = """mutation { setPlantMode(mode: READ_ONLY, reason: "try") { mode } }"""
OPERATORS = "{ operators { username } }"


async def test_refusals_are_recorded_with_the_action_the_device_and_the_source(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    viewer = await plant.add_operator(["viewer"], ["plant"])
    token = (await open_session(plant, viewer.username)).access_token

    answers = [await plant.gql(query, token) for query in (SET_MODE, OPERATORS)]

    assert [codes(answer) for answer in answers] == [["forbidden"], ["forbidden"]]
    denied = named(await operator_events(plant, viewer.username), "AccessDenied")
    assert [(field(e, "action"), field(e, "target"), field(e, "source")) for e in denied] == [
        ("plant.mode", "", "127.0.0.1"),
        ("operators.manage", "", "127.0.0.1"),
    ]
    mode = await plant.gql("{ plantMode { mode } }", token)
    assert mode["data"]["plantMode"]["mode"] == "NORMAL"
