"""Abusive queries refused over HTTP, before any resolver runs; an HMI's queries pass.

The refused documents are sent without a token on purpose: every resolver
but ``login``'s starts by asking who calls, so a refusal that came from a
resolver would be ``unauthenticated``. Only the limit's error, with data
null, shows that nothing ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from api.app import create_app
from api.services import DEFAULT_MAX_QUERY_COST
from tests.integration.api.access import names, open_session, operator_events, refusal
from tests.integration.api.conftest import Plant, PlantFactory

pytestmark = pytest.mark.integration

HMI = """query Hmi { plantMode { mode reason }
  me { username roles }
  devices { id area status { state detail } tags { name value boolValue quality unit ts
    writable kind low high critical emergencyValues } } }"""
JOURNAL_FIELDS = "position alarmId device condition area priority event actor at state detail"
COSTLY = (
    'query Costly { alarmJournal(since: "2026-01-01T00:00:00Z", until: "2026-02-01T00:00:00Z",'
    f" first: 500) {{ events {{ {JOURNAL_FIELDS} }} }} }}"
)
ALIASED_LOGINS = (
    "mutation Spray { "
    + " ".join(
        f'a{i}: login(username: $u, password: "guess-{i}") {{ accessToken }}' for i in range(31)
    )
    + " }"
).replace("mutation Spray {", "mutation Spray($u: String!) {")
DEEP = "query Deep($id: ID!) { commandTimeline(commandId: $id) { signature { fullName } } }"
LARGE = "{ " + " ".join(["__typename"] * 2100) + " }"


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


@pytest.fixture
async def http(plant: Plant) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the plant's real server, over TCP."""
    base = plant.ws_url.replace("ws://", "http://").removesuffix("/graphql")
    async with httpx.AsyncClient(base_url=base) as client:
        yield client


async def post(
    client: httpx.AsyncClient, query: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    return body


async def test_abusive_queries_are_refused_before_any_resolver_runs(
    plant: Plant, http: httpx.AsyncClient
) -> None:
    before = names(await operator_events(plant, plant.username))

    aliased = refusal(await post(http, ALIASED_LOGINS, u=plant.username))
    assert aliased["extensions"]["code"] == "too_many_aliases"
    costly = refusal(await post(http, COSTLY))
    assert costly["extensions"]["code"] == "query_too_costly"
    # 500 journal events of 11 fields each, against the default maximum.
    assert costly["extensions"]["cost"] > costly["extensions"]["maxCost"] == DEFAULT_MAX_QUERY_COST
    large = refusal(await post(http, LARGE))
    assert large["extensions"]["code"] == "query_too_large"

    # 31 password guesses, and not one of them tried: no LoginFailed on the record.
    assert names(await operator_events(plant, plant.username)) == before


async def test_a_query_deeper_than_the_limit_is_refused(plant: Plant) -> None:
    """At the default limit (12) no query of this schema can be too deep: its deepest is 2.

    So the plant's own services are served with a limit of 1.
    """
    shallow = create_app(dataclasses.replace(plant.services, max_query_depth=1))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shallow), base_url="http://plant"
    ) as client:
        deep = refusal(await post(client, DEEP, id="00000000-0000-0000-0000-000000000001"))
        flat = await post(client, "{ plantMode { mode } }")
    assert deep["extensions"]["code"] == "query_too_deep"
    assert "maximum operation depth of 1" in deep["message"]
    # Within the limit the query runs: its resolver asks who calls.
    assert refusal(flat)["extensions"]["code"] == "unauthenticated"


async def test_an_hmi_query_and_introspection_pass(plant: Plant, http: httpx.AsyncClient) -> None:
    token = (await open_session(plant, plant.username)).access_token
    body = await post(http, HMI, token)
    assert "errors" not in body, body
    assert body["data"]["me"]["username"] == plant.username
    assert {d["id"] for d in body["data"]["devices"]} >= {plant.device}
    # Introspection is served only when enabled (PLANTCORE_INTROSPECTION); then the limits pass it.
    exploring = create_app(dataclasses.replace(plant.services, introspection=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=exploring), base_url="http://plant"
    ) as client:
        introspection = await post(client, get_introspection_query(), token)
    assert "errors" not in introspection
    assert introspection["data"]["__schema"]["queryType"]["name"] == "Query"
