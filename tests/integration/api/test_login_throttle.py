"""Logins are throttled per source address, before any password is checked.

The window itself is tested on the machine's real Redis with explicit times
(nothing waits or reads the clock); the API's refusal over real HTTP, where
uvicorn takes the source address from ``X-Forwarded-For`` of a proxy on the
same host, as in production.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.rate_limit import LoginThrottle
from tests.integration.api.access import codes, directory_events, field, named, operator_events
from tests.integration.api.conftest import PASSWORD, Plant, PlantFactory
from tests.support import free_port, unique

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=1)
LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { sessionId } }"""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = unique("plant:login_rate:test") + ":"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}*")]
    if keys:
        await redis_client.delete(*keys)


async def test_a_source_gets_its_limit_per_sliding_window_and_refusals_do_not_count(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    throttle = LoginThrottle(redis_client, limit=3, window=WINDOW, prefix=prefix)

    assert [await throttle.admit("10.0.0.1", at(s)) for s in (0, 10, 20)] == [None] * 3
    # The fourth in (-40 s, 20 s] waits until the first leaves the window, at 60 s.
    assert await throttle.admit("10.0.0.1", at(20)) == timedelta(seconds=40)
    assert await throttle.admit("10.0.0.1", at(59)) == timedelta(seconds=1)
    # Another address is counted apart.
    assert await throttle.admit("10.0.0.2", at(59)) is None
    # At 60 s the login of 0 s is out; the refused ones were never in.
    assert await throttle.admit("10.0.0.1", at(60)) is None
    assert await throttle.admit("10.0.0.1", at(60)) == timedelta(seconds=10)
    assert throttle.refused == 3
    # Only what was let in is kept, and it expires a window after the last one.
    key = throttle.key("10.0.0.1")
    assert await redis_client.zcard(key) == 3
    assert 0 < await redis_client.pttl(key) <= WINDOW // timedelta(milliseconds=1)


async def test_without_redis_logins_are_let_in_and_the_outage_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = aioredis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", decode_responses=True, socket_connect_timeout=0.2
    )
    throttle = LoginThrottle(unreachable, limit=1, window=WINDOW)
    try:
        with caplog.at_level(logging.WARNING, logger="api.rate_limit"):
            assert [await throttle.admit("10.0.0.1", at(0)) for _ in range(3)] == [None] * 3
    finally:
        await unreachable.aclose()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "cannot count logins per source, letting them in"
    ]


def http_client(plant: Plant, source: str) -> httpx.AsyncClient:
    """A client of the plant's real HTTP server, behind a proxy that names ``source``."""
    return httpx.AsyncClient(
        base_url=plant.ws_url.replace("ws://", "http://").removesuffix("/graphql"),
        headers={"X-Forwarded-For": source},
    )


async def log_in(http: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": LOGIN, "variables": {"u": username, "p": password}}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_source_over_its_limit_is_refused_before_any_password_is_checked(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False, login_rate=3)
    nobody = "nobody-" + plant.username

    async with http_client(plant, "192.0.2.7") as guesser, http_client(plant, "192.0.2.8") as other:
        tried = [await log_in(guesser, plant.username, f"guess {n}") for n in range(2)]
        tried.append(await log_in(guesser, nobody, "guess"))
        refused = [await log_in(guesser, plant.username, PASSWORD) for _ in range(3)]
        # The right password from another address is let in, and is right.
        let_in = await log_in(other, plant.username, PASSWORD)

    assert [codes(body) for body in tried] == [["invalid_credentials"]] * 3
    assert [codes(body) for body in refused] == [["login_rate_limited"]] * 3
    for body in refused:
        [error] = body["errors"]
        assert 0 < error["extensions"]["retryAfter"] <= 60
    assert "errors" not in let_in, let_in
    # Only what was let in reached the password check and the record.
    failed = named(await operator_events(plant, plant.username), "LoginFailed")
    assert [field(e, "source") for e in failed] == ["192.0.2.7"] * 2
    [succeeded] = named(await operator_events(plant, plant.username), "LoginSucceeded")
    assert field(succeeded, "source") == "192.0.2.8"
    [unknown] = named(await directory_events(plant), "UnknownLoginFailed")
    assert field(unknown, "source") == "192.0.2.7"
