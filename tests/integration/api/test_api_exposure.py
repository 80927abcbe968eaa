"""What the API shows to whoever asks: GraphiQL, introspection and /health, closed by default.

An attacker who reaches the API port learns nothing it does not need: no
GraphiQL page, no schema (``__schema``, ``__type``), and from ``/health`` only
whether the plant core is up. GraphiQL and introspection are served when the
services say so (``PLANTCORE_GRAPHIQL``, ``PLANTCORE_INTROSPECTION``; the demo
turns both on); the services' details of ``/health`` go to a token whose role
holds ``health.read``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.app import create_app
from api.services import Services
from domain.permissions import Role
from tests.integration.api.access import open_session
from tests.integration.api.conftest import Plant, PlantFactory
from tests.support import free_port

pytestmark = pytest.mark.integration

BROWSER = {"Accept": "text/html"}
SCHEMA = "{ __schema { queryType { name } types { name } } }"
TYPE = '{ __type(name: "Query") { fields { name } } }'


@asynccontextmanager
async def client_of(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)), base_url="http://plant"
    ) as client:
        yield client


def assert_refused_introspection(body: dict[str, Any]) -> None:
    """Refused before it ran: an error for each introspection field, nothing of the schema."""
    assert body["data"] is None
    assert body["errors"]
    for error in body["errors"]:
        assert "introspection has been disabled" in error["message"]


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


# -- GraphiQL and introspection ------------------------------------------------------------


async def test_no_graphiql_page_and_no_schema_by_default(plant: Plant) -> None:
    page = await plant.client.get("/graphql", headers=BROWSER)
    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()

    token = (await open_session(plant, plant.username)).access_token
    for query in (SCHEMA, TYPE):
        assert_refused_introspection(await plant.gql(query, token))
    # The schema's own name of a type stays answerable: clients need it for unions.
    assert await plant.gql("{ __typename }", token) == {"data": {"__typename": "Query"}}


async def test_graphiql_and_introspection_are_served_when_enabled(plant: Plant) -> None:
    services = dataclasses.replace(plant.services, graphiql=True, introspection=True)
    token = (await open_session(plant, plant.username)).access_token
    async with client_of(services) as client:
        page = await client.get("/graphql", headers=BROWSER)
        schema = await client.post(
            "/graphql", json={"query": SCHEMA}, headers={"Authorization": f"Bearer {token}"}
        )
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert schema.json()["data"]["__schema"]["queryType"] == {"name": "Query"}


async def test_graphiql_alone_serves_the_page_but_not_the_schema(plant: Plant) -> None:
    services = dataclasses.replace(plant.services, graphiql=True)
    async with client_of(services) as client:
        page = await client.get("/graphql", headers=BROWSER)
        schema = await client.post("/graphql", json={"query": SCHEMA})
    assert page.status_code == 200
    assert_refused_introspection(schema.json())


# -- /health ---------------------------------------------------------------------------------


# Those who run the plant and those who check it (health.read in domain/permissions.py).
HEALTH_READERS = [Role.ADMIN, Role.SUPERVISOR, Role.AUDITOR]


async def test_health_without_a_token_says_only_up(plant: Plant) -> None:
    anonymous = await plant.client.get("/health")
    forged = await plant.client.get("/health", headers={"Authorization": "Bearer forged"})
    for response in (anonymous, forged):
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_health_without_a_token_says_only_down_when_a_service_is_down(plant: Plant) -> None:
    dead_redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    services = dataclasses.replace(plant.services, redis=dead_redis, health_timeout=1.0)
    try:
        async with client_of(services) as client:
            response = await client.get("/health")
    finally:
        await dead_redis.aclose()
    assert response.status_code == 503
    assert response.json() == {"status": "error"}


@pytest.mark.parametrize("role", [r for r in Role if r not in HEALTH_READERS], ids=str)
async def test_a_role_without_health_read_gets_the_anonymous_answer(
    plant: Plant, role: Role
) -> None:
    person = await plant.add_operator([role.value])
    token = (await open_session(plant, person.username)).access_token
    response = await plant.client.get("/health", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_health_reader_sees_every_service_up(plant: Plant) -> None:
    person = await plant.add_operator([Role.AUDITOR.value])
    token = (await open_session(plant, person.username)).access_token
    response = await plant.client.get("/health", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "services": {
            name: {"status": "ok", "detail": ""} for name in ("postgresql", "nats", "redis")
        },
    }


@pytest.mark.parametrize("role", HEALTH_READERS, ids=str)
async def test_a_health_reader_sees_each_service_and_the_error_of_one_down(
    plant: Plant, role: Role
) -> None:
    person = await plant.add_operator([role.value])
    token = (await open_session(plant, person.username)).access_token
    dead_port = free_port()
    dead_redis = aioredis.from_url(f"redis://127.0.0.1:{dead_port}/0", decode_responses=True)
    services = dataclasses.replace(plant.services, redis=dead_redis, health_timeout=1.0)
    try:
        async with client_of(services) as client:
            response = await client.get("/health", headers={"Authorization": f"Bearer {token}"})
    finally:
        await dead_redis.aclose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    report = body["services"]
    assert (report["postgresql"]["status"], report["nats"]["status"]) == ("ok", "ok")
    assert report["redis"]["status"] == "error"
    assert str(dead_port) in report["redis"]["detail"]


async def test_a_token_of_an_ended_session_gets_the_anonymous_answer(plant: Plant) -> None:
    person = await plant.add_operator([Role.ADMIN.value])
    session = await open_session(plant, person.username)
    await plant.store_executor.call(
        plant.app.log_out,
        username=person.username,
        session_id=session.session_id,
        at=plant.services.clock(),
    )
    headers = {"Authorization": f"Bearer {session.access_token}"}
    response = await plant.client.get("/health", headers=headers)
    assert response.json() == {"status": "ok"}
