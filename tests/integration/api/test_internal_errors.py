"""A fault of the server reaches the client as ``internal_error`` and an id; the details, the log.

The exception's text can name hosts, ports, files, SQL or secrets: the client
gets ``extensions.code: "internal_error"`` and an ``errorId``, and the log line
with the traceback carries the same id, so that a report from the control room
finds its cause. Refusals keep their codes and messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from api.app import create_app
from api.services import Services
from tests.graphql_client import GraphQLSocket
from tests.integration.api.access import first_message, open_session
from tests.integration.api.conftest import Plant, PlantFactory
from tests.support import eventually, free_port

pytestmark = pytest.mark.integration

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEVICES = "{ devices { id tags { name value } } }"
TAG_UPDATES = "subscription($d: String!) { tagUpdates(device: $d) { tag value } }"


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


@pytest.fixture
async def redis_down(plant: Plant) -> AsyncIterator[tuple[Services, int]]:
    """The plant's services with Redis at a port nothing listens on, and that port."""
    port = free_port()
    dead = aioredis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    yield dataclasses.replace(plant.services, redis=dead), port
    await dead.aclose()


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """The API of ``services`` on a real server; its WebSocket URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())

    async def listening() -> None:
        assert server.started

    try:
        await eventually(listening)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


def logged_fault(caplog: pytest.LogCaptureFixture, error_id: str) -> logging.LogRecord:
    """The one log record naming ``error_id``, which must carry the exception."""
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is not None
    return record


def assert_hidden(error: dict[str, Any], record: logging.LogRecord) -> None:
    """The client's error says nothing of the exception the log holds."""
    assert record.exc_info is not None
    exception = record.exc_info[1]
    assert error["extensions"]["code"] == "internal_error"
    assert str(exception) not in error["message"]
    assert type(exception).__name__ not in error["message"]
    assert set(error["extensions"]) == {"code", "errorId"}


async def test_a_fault_in_a_query_is_an_internal_error_with_the_id_of_its_log_line(
    plant: Plant, redis_down: tuple[Services, int], caplog: pytest.LogCaptureFixture
) -> None:
    services, port = redis_down
    token = (await open_session(plant, plant.username)).access_token
    caplog.set_level(logging.ERROR)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)), base_url="http://plant"
    ) as client:
        response = await client.post(
            "/graphql", json={"query": DEVICES}, headers={"Authorization": f"Bearer {token}"}
        )
    body = response.json()
    assert body["errors"], body
    for error in body["errors"]:
        error_id = error["extensions"]["errorId"]
        assert UUID_TEXT.fullmatch(error_id)
        assert str(port) not in response.text
        record = logged_fault(caplog, error_id)
        assert_hidden(error, record)
        assert error["path"][0] == "devices"  # where it failed stays visible
    assert len({error["extensions"]["errorId"] for error in body["errors"]}) == len(body["errors"])


async def test_a_fault_in_a_subscription_is_an_internal_error_with_the_id_of_its_log_line(
    plant: Plant, redis_down: tuple[Services, int], caplog: pytest.LogCaptureFixture
) -> None:
    services, port = redis_down
    token = (await open_session(plant, plant.username)).access_token
    caplog.set_level(logging.ERROR)
    async with serving(services) as url:
        socket = await GraphQLSocket.open(url, token)
        try:
            operation = await socket.subscribe(TAG_UPDATES, d=plant.device)
            message = await first_message(socket, operation)
        finally:
            await socket.close()
    payload = message["payload"]
    errors = payload if message["type"] == "error" else payload["errors"]
    [error] = errors
    assert str(port) not in str(message)
    assert_hidden(error, logged_fault(caplog, error["extensions"]["errorId"]))


async def test_refusals_keep_their_codes_and_messages(plant: Plant) -> None:
    body = await plant.gql(DEVICES)
    [error] = body["errors"]
    assert error["extensions"] == {"code": "unauthenticated"}
    assert error["message"] == "missing bearer token"
    invalid = await plant.gql("{ nothing }")
    [error] = invalid["errors"]
    assert "Cannot query field 'nothing'" in error["message"]
