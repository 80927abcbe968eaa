"""The whole stack, as ``plantcore demo`` runs it, driven through GraphQL.

A real Modbus simulator; the plant core's runtime with its supervisor,
projections, dispatcher and API on the machine's PostgreSQL (a database of
this test's own), NATS JetStream and Redis. The test logs in, watches the
simulator's speed arrive on ``tagUpdates``, asks for a new setpoint, confirms
it with a real TOTP code, sees the simulator's register change and the
``commandStatus`` steps arrive in order, and finds the whole event sequence
(and the speed's history) in PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plantcore.operators import Credentials
from plantcore.runtime import PlantRuntime
from simulators.modbus_server import ModbusSimulator
from tests.e2e.stack import Account, area_of, press_plant, running_plant
from tests.graphql_client import GraphQLSocket
from tests.support import (
    eventually,
    free_port,
    unique,
)

pytestmark = pytest.mark.e2e

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
REQUEST = (
    "mutation($d: String!, $t: String!, $v: JSON) {"
    " requestCommand(device: $d, tag: $t, value: $v) { commandId challenge expiresAt } }"
)
CONFIRM = (
    "mutation($id: ID!, $code: String!) { confirmCommand(commandId: $id, code: $code) { status } }"
)
TAG_UPDATES = (
    "subscription($d: String!) { tagUpdates(device: $d) { tag value quality ts snapshot } }"
)
COMMAND_STATUS = (
    "subscription($id: ID!) { commandStatus(commandId: $id) { step status actor detail } }"
)


@dataclass
class Stack:
    runtime: PlantRuntime
    simulator: ModbusSimulator
    device: str
    operator: Credentials
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.runtime.api_url.replace("http://", "ws://") + "/graphql"

    async def raw(self, query: str, token: str | None = None, **variables: Any) -> Any:
        """The whole response body, errors included."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        return response.json()

    async def gql(self, query: str, token: str | None = None, **variables: Any) -> Any:
        body = await self.raw(query, token, **variables)
        assert "errors" not in body, body
        return body["data"]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    device = unique("press")
    operator = {"operator": Account(["operator"], scopes=[f"device:{device}"])}
    async with (
        ModbusSimulator(port=free_port(), tick_seconds=0.05) as simulator,
        running_plant(press_plant(device, simulator.port), operator) as plant,
        httpx.AsyncClient(base_url=plant.url) as http,
    ):
        yield Stack(plant.runtime, simulator, device, plant.people["operator"], http)


async def next_speed(updates: GraphQLSocket) -> dict[str, Any]:
    while True:
        message = await updates.receive()
        assert message["type"] == "next", message
        update: dict[str, Any] = message["payload"]["data"]["tagUpdates"]
        if update["tag"] == "speed":
            return update


async def test_setpoint_round_trip_through_every_component(stack: Stack) -> None:
    token = (await stack.gql(LOGIN, u=stack.operator.username, p=stack.operator.password))["login"][
        "accessToken"
    ]

    # The simulator's speed reaches the HMI: a snapshot, then live samples.
    updates = await GraphQLSocket.open(stack.ws_url, token)
    await updates.subscribe(TAG_UPDATES, d=stack.device)
    live = await next_speed(updates)
    while live["snapshot"] or live["quality"] != "GOOD":
        live = await next_speed(updates)
    assert live["value"] == pytest.approx(stack.simulator.model.speed, abs=150)

    # The operator asks for 1500 rpm and confirms with the second factor.
    old_setpoint = stack.simulator.model.speed_setpoint
    assert old_setpoint < 1500
    ticket = (await stack.gql(REQUEST, token, d=stack.device, t="speed_setpoint", v=1500))[
        "requestCommand"
    ]
    command_id = ticket["commandId"]
    assert ticket["challenge"] == "totp"
    steps = await GraphQLSocket.open(stack.ws_url, token)
    await steps.subscribe(COMMAND_STATUS, id=command_id)
    code = pyotp.TOTP(stack.operator.totp_secret).now()
    confirmed = (await stack.gql(CONFIRM, token, id=command_id, code=code))["confirmCommand"]
    assert confirmed["status"] in ("CONFIRMED", "DISPATCHED", "SUCCEEDED")

    # Each step arrives in order, ending with the value the PLC read back.
    seen = []
    while True:
        message = await steps.receive()
        if message["type"] == "complete":
            break
        assert message["type"] == "next", message
        seen.append(message["payload"]["data"]["commandStatus"])
    assert [step["step"] for step in seen] == [
        "Requested",
        "ChallengeIssued",
        "Confirmed",
        "WriteDispatched",
        "WriteSucceeded",
    ]
    assert seen[-1]["status"] == "SUCCEEDED"
    assert seen[2]["actor"] == stack.operator.username

    # The simulator's register changed, and the press runs faster than the old setpoint allowed.
    assert stack.simulator.model.speed_setpoint == 1500

    async def speeding_up() -> None:
        assert (await next_speed(updates))["value"] > old_setpoint

    await eventually(speeding_up, timeout=15)
    await updates.close()
    await steps.close()

    # The event store holds the whole sequence, in order, with the read-back value.
    conn = await asyncpg.connect(stack.runtime.config.database_url)
    try:
        rows = await conn.fetch(
            "SELECT topic, state FROM plantapplication_events"
            " WHERE originator_id = $1 ORDER BY originator_version",
            command_id,
        )
        assert [row["topic"].rsplit(".", 1)[-1] for row in rows] == [
            "Requested",
            "ChallengeIssued",
            "Confirmed",
            "WriteDispatched",
            "WriteSucceeded",
        ]
        assert json.loads(rows[-1]["state"])["read_back"] == 1500

        # And the history projection has the speed's samples.
        async def speed_in_history() -> None:
            count = await conn.fetchval(
                "SELECT count(*) FROM samples WHERE device = $1 AND tag = 'speed'", stack.device
            )
            assert count > 0

        await eventually(speed_in_history)
    finally:
        await conn.close()

    # /metrics reports the connected press, its samples and the command's figures.
    scraped = {
        family.name: family
        for family in text_string_to_metric_families((await stack.http.get("/metrics")).text)
    }

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value for s in scraped[family].samples if s.name == sample and s.labels == labels
        )

    assert value("core_engine_plc_connections_active", "core_engine_plc_connections_active") == 1
    assert value("plantcore_commands_requested", "plantcore_commands_requested_total") == 1
    assert value("core_engine_latency_ms", "core_engine_latency_ms") > 0
    published = "plantcore_device_samples_published_total"
    assert value("plantcore_device_samples_published", published, device=stack.device) > 0
    cycles = "plantcore_device_poll_cycle_seconds_count"
    assert value("plantcore_device_poll_cycle_seconds", cycles, device=stack.device) > 0
    # Everything went through the buffer, and none of it was given up.
    assert value("plantcore_buffer_forwarded", "plantcore_buffer_forwarded_total") > 0
    assert not [s for s in scraped["plantcore_buffer_dropped"].samples if s.value]


ALARM_EVENTS = "subscription { alarmEvents { alarmId device condition event state actor } }"
ACKNOWLEDGE = (
    "mutation($id: ID!, $c: String!) {"
    " acknowledgeAlarm(alarmId: $id, comment: $c) { state acknowledged } }"
)
ACTIVE_ALARMS = "query($d: String!) { alarms(device: $d) { alarmId condition state } }"
JOURNAL = (
    "query($s: DateTime!, $u: DateTime!, $d: String!, $a: String) {"
    " alarmJournal(since: $s, until: $u, device: $d, first: 2, after: $a)"
    " { events { event } endCursor hasNextPage } }"
)
KPIS = "{ alarmKpis { perHour { area alarms } mostFrequent { device condition activations } } }"


async def next_alarm_event(events: GraphQLSocket, device: str, event: str) -> dict[str, Any]:
    while True:
        message = await events.receive()
        assert message["type"] == "next", message
        entry: dict[str, Any] = message["payload"]["data"]["alarmEvents"]
        if entry["device"] == device and entry["event"] == event:
            return entry


async def test_a_hot_motor_raises_an_alarm_that_is_acknowledged_and_clears(stack: Stack) -> None:
    token = (await stack.gql(LOGIN, u=stack.operator.username, p=stack.operator.password))["login"][
        "accessToken"
    ]
    events = await GraphQLSocket.open(stack.ws_url, token)
    await events.subscribe(ALARM_EVENTS)
    model = stack.simulator.model

    # The winding overheats past the Hi limit (48 °C) for longer than its on-delay.
    model.motor_temperature = 65.0
    raised = await next_alarm_event(events, stack.device, "Raised")
    assert (raised["condition"], raised["state"]) == ("motor_temperature_hi", "unack_active")
    active = (await stack.gql(ACTIVE_ALARMS, token, d=stack.device))["alarms"]
    assert [(a["condition"], a["state"]) for a in active] == [
        ("motor_temperature_hi", "unack_active")
    ]

    acknowledged = (await stack.gql(ACKNOWLEDGE, token, id=raised["alarmId"], c="fan checked"))[
        "acknowledgeAlarm"
    ]
    assert acknowledged == {"state": "ack_active", "acknowledged": True}
    entry = await next_alarm_event(events, stack.device, "Acknowledged")
    assert entry["actor"] == stack.operator.username

    # Cooled below the limit minus its deadband for longer than the off-delay.
    model.motor_temperature = 30.0
    cleared = await next_alarm_event(events, stack.device, "Cleared")
    assert cleared["state"] == "normal"
    await events.close()
    assert (await stack.gql(ACTIVE_ALARMS, token, d=stack.device))["alarms"] == []

    # Acknowledging what is no longer there to acknowledge is refused, and says why.
    again = await stack.raw(ACKNOWLEDGE, token, id=raised["alarmId"], c="twice")
    assert again["errors"][0]["extensions"]["code"] == "nothing_to_acknowledge"

    # The journal pages through the alarm's events in log order.
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    pages: list[str] = []
    after = None
    while True:
        page = (await stack.gql(JOURNAL, token, s=since, u=until, d=stack.device, a=after))[
            "alarmJournal"
        ]
        pages.extend(event["event"] for event in page["events"])
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    assert pages[pages.index("Raised") :] == ["Raised", "Acknowledged", "Cleared"]
    bad = await stack.raw(JOURNAL, token, s=since, u=until, d=stack.device, a="nonsense")
    assert bad["errors"][0]["extensions"]["code"] == "bad_cursor"

    kpis = (await stack.gql(KPIS, token))["alarmKpis"]
    assert {"area": area_of(stack.device), "alarms": 1} in [
        {"area": row["area"], "alarms": row["alarms"]} for row in kpis["perHour"]
    ]
    assert ("motor_temperature_hi", 1) in [
        (row["condition"], row["activations"])
        for row in kpis["mostFrequent"]
        if row["device"] == stack.device
    ]
