"""The running API under fuzz (docs/security.md#fuzzing-the-api, ADR 0030).

- Over five thousand documents of queries and mutations generated from the
  schema by hypothesis-graphql, valid and invalid, literal and in variables,
  each sent once as the logged-in operator and once without a token: over ten
  thousand operations, over four HTTP connections at once.
- Hundreds of raw HTTP requests a GraphQL server should refuse: not JSON, not
  UTF-8, the wrong content type or method, documents and variables nested or
  repeated past every bound, bodies over the limit.
- Hundreds of graphql-transport-ws conversations in any order, with
  subscriptions generated from the schema.

Every answer is checked: no HTTP status of 500 or more; every GraphQL error
carries ``extensions.code``; without a token no protected field answers
anything but ``unauthenticated``; the operator's session holds throughout.
Nothing is logged at ERROR and no traceback, the API answers ``/health`` and
a real query at the end, and the largest stored event stays under 4 KiB.

Drawing a document costs hypothesis some milliseconds of CPU: the documents are
drawn in a worker process (the machine's other core) batch by batch, each batch
from a seed of its own, while the batches already drawn are sent, through a
bare HTTP client (:mod:`.bare_http`). The documents are the same on every run;
only the order in which concurrent answers arrive varies.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.conftest import TEST_DATABASE_URL
from tests.integration.api.access import REQUEST, open_session, raise_alarm
from tests.integration.api.bare_http import Answer, KeepAlive
from tests.integration.api.conftest import AREA, Plant, PlantFactory, other_device
from tests.integration.api.fuzz_operations import (
    ARGON2_FIELDS,
    OPEN_FIELDS,
    SESSION_ENDING_FIELDS,
    Batch,
    Mode,
    Operation,
    every_field,
    generate,
)
from tests.integration.api.fuzz_requests import (
    TOKEN,
    Conversation,
    RawRequest,
    conversations,
    raw_requests,
)
from tests.support import fresh_database

pytestmark = pytest.mark.integration

CHEAP = every_field() - ARGON2_FIELDS - SESSION_ENDING_FIELDS
PLAN = (
    # 3000 valid documents of one root field, 2000 invalid ones, interleaved.
    *(
        batch
        for seed in range(8)
        for batch in (
            Batch(Mode.POSITIVE, CHEAP, 375, seed),
            Batch(Mode.NEGATIVE, CHEAP, 250, 100 + seed, single=False),
        )
    ),
    Batch(Mode.POSITIVE, CHEAP, 150, 200, single=False),
    Batch(Mode.POSITIVE, CHEAP, 150, 201, single=False),
    Batch(Mode.POSITIVE, ARGON2_FIELDS, 12, 300),
    Batch(Mode.NEGATIVE, ARGON2_FIELDS, 40, 301, single=False),
    Batch(Mode.POSITIVE, SESSION_ENDING_FIELDS | {"me", "refreshToken"}, 20, 400, single=False),
)
MIN_OPERATIONS = 10_000
CONNECTIONS = 4
LARGEST_EVENT = 4096
WS_CLOSE_CODES = {1000, 1009} | set(range(4400, 4500))


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of the fuzz's own: every stored event is one it caused."""
    with fresh_database(TEST_DATABASE_URL) as url:
        yield url


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False, read_models=True)


@pytest.fixture
def drawing() -> Iterator[ProcessPoolExecutor]:
    """One worker process that draws the documents (spawned: the test process has threads)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
async def http(plant: Plant) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the plant's real server, over a few TCP connections."""
    base = plant.ws_url.replace("ws://", "http://").removesuffix("/graphql")
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        yield client


@dataclass
class Targets:
    """Things that exist, for the arguments of an aimed operation."""

    values: dict[str, tuple[str, ...]]

    def pick(self, sequence: int) -> Callable[[str], str]:
        return lambda argument: self.values[argument][sequence % len(self.values[argument])]


async def targets_of(plant: Plant, token: str) -> Targets:
    ticket = await plant.gql(REQUEST, token, d=plant.device, t="speed_setpoint", v=900)
    assert "errors" not in ticket, ticket
    alarm = await raise_alarm(plant)
    return Targets(
        {
            "device": (plant.device, other_device(plant.device)),
            "tag": ("speed_setpoint", "pressure_setpoint", "running", "speed"),
            "commandId": (ticket["data"]["requestCommand"]["commandId"],),
            "alarmId": (str(alarm),),
            "username": (plant.username,),
            "area": (AREA,),
        }
    )


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def check(self, found: list[str], what: object) -> None:
        self.problems += [f"{problem}: {what!r}"[:600] for problem in found]


def graphql_problems(answer: Answer) -> list[str]:
    """What is wrong with any answer: a server fault, or an error without a code."""
    if answer.status >= 500:
        return [f"HTTP {answer.status} {answer.body[:200]!r}"]
    try:
        body = answer.json()
    except ValueError:
        return []  # a refusal before GraphQL (400 "Unable to parse…", 405, 415): not JSON
    errors = body.get("errors") if isinstance(body, dict) else None
    return [
        f"error without a code: {error.get('message')!r}"
        for error in errors or ()
        if not isinstance((error.get("extensions") or {}).get("code"), str)
    ]


def anonymous_problems(answer: Answer) -> list[str]:
    """Without a token, a protected field is refused as unauthenticated and answers nothing."""
    body = answer.json()
    found = [
        f"{error['path'][0]} answered {error['extensions']['code']} without a token"
        for error in body.get("errors") or ()
        if error.get("path")
        and error["path"][0] not in OPEN_FIELDS
        and error["extensions"]["code"] != "unauthenticated"
    ]
    data = body.get("data") or {}
    found += [f"{name} answered without a token" for name in data if name not in OPEN_FIELDS]
    return found


def operator_problems(answer: Answer) -> list[str]:
    """The operator's session holds: no protected field says unauthenticated."""
    return [
        f"{error['path'][0]} refused the operator's token"
        for error in answer.json().get("errors") or ()
        if error.get("path")
        and error["path"][0] not in OPEN_FIELDS
        and error["extensions"]["code"] == "unauthenticated"
    ]


class Fuzzer:
    """Sends operations as the operator and without a token, and checks every answer."""

    def __init__(self, plant: Plant, token: str, targets: Targets, leaver: str) -> None:
        self.plant = plant
        self.token = token
        self.targets = targets
        # Another operator, whose sessions the operations that end theirs run in: the aimed
        # operations may lock the operator's account out (their password is drawn).
        self.leaver = leaver
        self.tally = Tally()

    async def run(self, pool: ProcessPoolExecutor, plan: tuple[Batch, ...]) -> Tally:
        loop = asyncio.get_running_loop()
        drawn = [loop.run_in_executor(pool, generate, batch) for batch in plan]
        queue: asyncio.Queue[tuple[int, Operation, bool] | None] = asyncio.Queue(maxsize=100)

        async def feed() -> None:
            sequence = 0
            for batch in drawn:
                for operation in await batch:
                    for anonymous in (False, True):
                        await queue.put((sequence, operation, anonymous))
                    sequence += 1
            for _ in range(CONNECTIONS):
                await queue.put(None)

        async def send() -> None:
            connection = KeepAlive("127.0.0.1", urlsplit(self.plant.ws_url).port or 80)
            try:
                while (item := await queue.get()) is not None:
                    await self.send(connection, *item)
            finally:
                await connection.close()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(feed())
                for _ in range(CONNECTIONS):
                    group.create_task(send())
        finally:
            for batch in drawn:
                batch.cancel()  # after a failure: the batches not yet drawn are not needed
        return self.tally

    async def send(
        self, connection: KeepAlive, sequence: int, operation: Operation, anonymous: bool
    ) -> None:
        own_session = not anonymous and bool(operation.fields & SESSION_ENDING_FIELDS)
        token = None if anonymous else self.token
        if own_session:
            token = (await open_session(self.plant, self.leaver)).access_token
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = operation.body(self.targets.pick(sequence))
        # Python's encoder, as a client might: a float literal past the double's range is Infinity.
        answer = await connection.post("/graphql", json.dumps(body).encode(), headers)
        found = graphql_problems(answer)
        if not found and answer.status == 200:
            if anonymous:
                found = anonymous_problems(answer)
            elif not own_session:
                found = operator_problems(answer)
        self.tally.sent["anonymous" if anonymous else "operator"] += 1
        self.tally.check(found, body)


# graphql-core leaves the coroutines of a query's async root fields unstarted when a sibling
# non-null field fails while they are pending: the answer is the same (its data is null), and
# Python warns when it collects them. Nothing of the API's own is behind it.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.timeout(300)  # some 75 s alone on two cores; more when they are shared
async def test_ten_thousand_generated_operations_as_operator_and_anonymous(
    plant: Plant,
    http: httpx.AsyncClient,
    drawing: ProcessPoolExecutor,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
) -> None:
    caplog.set_level(logging.WARNING)
    token = await plant.login()
    leaver = await plant.add_operator(["operator"], [f"device:{plant.device}"])
    fuzzer = Fuzzer(plant, token, await targets_of(plant, token), leaver.username)

    tally = await fuzzer.run(drawing, PLAN)

    assert tally.problems == [], f"{len(tally.problems)} problems, first: {tally.problems[:10]}"
    assert tally.sent.total() >= MIN_OPERATIONS, tally.sent
    assert tally.sent["operator"] == tally.sent["anonymous"], tally.sent
    await assert_still_serving(plant, http, token, caplog)
    assert await largest_event(database_url) < LARGEST_EVENT
    gc.collect()  # the unstarted coroutines above are collected while their warning is ignored


async def test_raw_malformed_requests_are_refused_without_a_fault(
    plant: Plant,
    http: httpx.AsyncClient,
    drawing: ProcessPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    token = await plant.login()
    requests = await asyncio.get_running_loop().run_in_executor(drawing, raw_requests, 600, 500)
    tally = Tally()
    semaphore = asyncio.Semaphore(CONNECTIONS)

    async def send(request: RawRequest, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        async with semaphore:
            response = await http.request(
                request.method, "/graphql", content=request.body or None, params=request.params,
                headers=headers,
            )  # fmt: skip
        tally.sent[request.method] += 1
        tally.check(graphql_problems(Answer(response.status_code, response.content)), request)

    async with asyncio.TaskGroup() as group:
        for request, sender in zip(requests, cycle((token, None)), strict=False):
            group.create_task(send(request, sender))

    assert tally.problems == [], f"{len(tally.problems)} problems, first: {tally.problems[:10]}"
    assert tally.sent.total() == len(requests) >= 500
    await assert_still_serving(plant, http, token, caplog)


async def test_graphql_transport_ws_messages_in_any_order_close_or_answer_cleanly(
    plant: Plant,
    http: httpx.AsyncClient,
    drawing: ProcessPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    token = await plant.login()
    talks = await asyncio.get_running_loop().run_in_executor(drawing, conversations, 300, 600)
    tally = Tally()
    semaphore = asyncio.Semaphore(CONNECTIONS)

    async def talk(conversation: Conversation) -> None:
        async with semaphore:
            found = await converse(plant.ws_url, conversation, token)
        tally.sent["frames"] += len(conversation.frames)
        tally.check(found, conversation)

    async with asyncio.TaskGroup() as group:
        for conversation in talks:
            group.create_task(talk(conversation))

    assert tally.problems == [], f"{len(tally.problems)} problems, first: {tally.problems[:10]}"
    assert len(talks) >= 250
    assert tally.sent["frames"] >= 1000
    await assert_still_serving(plant, http, token, caplog)


async def converse(url: str, conversation: Conversation, token: str) -> list[str]:
    """Say the conversation's frames, then a ping; read until its pong or the server closes."""
    subprotocols = [Subprotocol(conversation.subprotocol)] if conversation.subprotocol else None
    found: list[str] = []
    try:
        async with websockets.connect(url, subprotocols=subprotocols) as socket:
            for frame in conversation.frames:
                await socket.send(frame.replace(TOKEN, token) if isinstance(frame, str) else frame)
            await socket.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(10):
                while (message := json.loads(await socket.recv()))["type"] != "pong":
                    found += message_problems(message)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        if code not in WS_CLOSE_CODES:
            found.append(f"closed with {code}")
    except websockets.InvalidStatus as refused:
        if refused.response.status_code >= 500:
            found.append(f"handshake answered {refused.response.status_code}")
    return found


def message_problems(message: dict[str, Any]) -> list[str]:
    """The errors of a graphql-transport-ws message (``error``, ``next``) that lack a code."""
    payload = message.get("payload")
    if message["type"] == "error":
        errors = payload if isinstance(payload, list) else [payload]
    elif message["type"] == "next":
        errors = (payload or {}).get("errors") or []
    else:
        return []
    return [
        f"{message['type']} without a code: {error!r}"
        for error in errors
        if not isinstance(((error or {}).get("extensions") or {}).get("code"), str)
    ]


async def assert_still_serving(
    plant: Plant, http: httpx.AsyncClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = [
        f"{record.name}: {record.getMessage()[:300]}"
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info
    ]
    assert faults == [], f"{len(faults)} faults logged, first: {faults[:5]}"
    health = await http.get("/health")
    assert health.status_code == 200, health.text
    me = await http.post(
        "/graphql",
        json={"query": "{ me { username } devices { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert me.json()["data"]["me"] == {"username": plant.username}, me.text
    assert {device["id"] for device in me.json()["data"]["devices"]} >= {plant.device}


async def largest_event(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT max(octet_length(state)), count(*) FROM plantapplication_events"
        )
        largest, rows = await cursor.fetchone() or (None, 0)
    assert rows > 1000, f"only {rows} events were stored: the fuzz did not reach the domain"
    assert largest is not None
    return int(largest)
