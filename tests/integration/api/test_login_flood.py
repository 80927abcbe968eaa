"""A flood of logins neither delays an emergency stop nor ends in a server error.

Logins arrive over the real HTTP server at the attacker's pace, not the
server's: one every 50 ms, each without waiting for the answers to the
others, most from addresses of their own (a proxy on the same host names them
in ``X-Forwarded-For``), some from one shared address. While they do, an
operator with an open session sends three emergency stops in turn; their
writes must reach the device within a bound far below what the same flood
cost before logins had a lane of their own (ADR 0028).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import httpx
import pytest

from tests.integration.api.access import REQUEST, open_session
from tests.integration.api.conftest import Plant, PlantFactory, Responder
from tests.support import eventually

pytestmark = pytest.mark.integration

LOGIN = """mutation($u: String!, $p: String!) {
    login(username: $u, password: $p) { sessionId } }"""
# Some 20 logins a second: more than two cores can check with Argon2.
LOGIN_INTERVAL_SECONDS = 0.05
# Logins sent before the stop: the flood has been on for a while by then.
LOGINS_BEFORE_THE_STOP = 40
# One login in this many comes from the shared address, which the throttle refuses.
SHARED_ADDRESS_EVERY = 4
LOGINS_PER_SOURCE = 3
STOPS = 3
# The median stop took 0.1 to 0.4 s on a loaded two-core machine; the same flood held
# it back 2 to 3 s (single stops up to 6 s) when Argon2 ran on asyncio's default executor
# and logins' store calls on the commands' one.
STOP_BOUND_SECONDS = 1.0
REFUSED_ALIKE = {"invalid_credentials", "login_busy", "login_rate_limited"}


def base_url(plant: Plant) -> str:
    return plant.ws_url.replace("ws://", "http://").removesuffix("/graphql")


def address(attempt: int) -> str:
    if attempt % SHARED_ADDRESS_EVERY == 0:
        return "198.51.100.1"
    return f"203.0.{attempt // 250 % 250}.{attempt % 250}"


class Flood:
    """Logins with wrong passwords at a fixed pace; each answer counted by status and code."""

    def __init__(self, plant: Plant, http: httpx.AsyncClient) -> None:
        self.answers: Counter[tuple[int, str]] = Counter()
        self.sent = 0
        self._plant = plant
        self._http = http
        self._requests: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        usernames = (self._plant.username, "nobody-" + self._plant.username)
        while True:
            request = asyncio.create_task(self._log_in(usernames[self.sent % 2], self.sent))
            self._requests.add(request)
            request.add_done_callback(self._requests.discard)
            self.sent += 1
            # The attacker's pace: a fixed offered load, whatever the server answers.
            await asyncio.sleep(LOGIN_INTERVAL_SECONDS)

    async def _log_in(self, username: str, attempt: int) -> None:
        response = await self._http.post(
            "/graphql",
            json={"query": LOGIN, "variables": {"u": username, "p": "guess"}},
            headers={"X-Forwarded-For": address(attempt)},
        )
        errors = response.json().get("errors") if response.status_code == 200 else None
        code = (errors[0].get("extensions") or {}).get("code") if errors else None
        self.answers[(response.status_code, str(code))] += 1

    async def stop(self) -> None:
        """Stop sending, and wait for the answers of what was sent."""
        await asyncio.gather(*self._requests)


async def test_a_login_flood_delays_no_emergency_stop_and_gets_no_server_error(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(login_rate=LOGINS_PER_SOURCE, login_queue=2)
    responder = await Responder().start(plant.nc, plant.device)
    token = (await open_session(plant, plant.username)).access_token
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url(plant), limits=limits, timeout=60) as http:
        flood = Flood(plant, http)
        flooding = asyncio.create_task(flood.run())

        async def under_way() -> None:
            assert flood.sent >= LOGINS_BEFORE_THE_STOP

        await eventually(under_way, timeout=30)
        # One after the other, each until its write reaches the device.
        took = [await emergency_stop(plant, http, token, responder) for _ in range(STOPS)]
        flooding.cancel()
        await asyncio.gather(flooding, return_exceptions=True)
        await flood.stop()

    answers = flood.answers
    # The median: a slow moment of the machine delays one stop, the flood would delay all.
    assert statistics.median(took) < STOP_BOUND_SECONDS, (took, dict(answers))
    # The flood was refused, never failed: every answer a 200 with a login refusal's code.
    assert {status for status, _ in answers} == {200}, answers
    assert {code for _, code in answers} <= REFUSED_ALIKE, answers
    assert answers[(200, "login_busy")] > 0, answers
    assert answers[(200, "login_rate_limited")] > 0, answers


async def emergency_stop(
    plant: Plant, http: httpx.AsyncClient, token: str, responder: Responder
) -> float:
    """Seconds from sending an emergency stop to its write reaching the device."""
    written_before = len(responder.requests)
    sent = time.monotonic()
    response = await http.post(
        "/graphql",
        json={"query": REQUEST, "variables": {"d": plant.device, "t": "running", "v": False}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json()["data"]["requestCommand"]["challenge"] == "none", response.text

    async def written() -> float:
        assert [(r.tag, r.value) for r in responder.requests[written_before:]] == [
            ("running", False)
        ]
        return time.monotonic() - sent

    return await eventually(written, timeout=60, interval=0.01)
