"""JSON that is not an object is a malformed request, over HTTP and graphql-transport-ws alike.

A GraphQL request and every graphql-transport-ws message is a JSON object. A
body or message that is valid JSON of another kind (``null``, a number, a text,
a boolean, an array) is answered as malformed: HTTP 400, or the socket closed
with 4400. A refusal whose reason quotes a long message still closes the socket
with 4400, its reason cut to the 123 bytes a close frame holds. Found by
``test_fuzz.py``: the HTTP request was answered 500 and the socket dropped
without a close frame, each with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.typing import Subprotocol

from domain.messages import TELEMETRY_SUBJECT, Quality, Sample, TelemetryBatch
from tests.integration.api.conftest import Plant, PlantFactory

pytestmark = pytest.mark.integration

NOT_OBJECTS = (
    "null",
    "5",
    "-1.5e300",
    '"query"',
    "true",
    "[]",
    '[{"query": "{ me { username } }"}]',
)
MALFORMED = 4400
MAX_REASON_BYTES = 123


@pytest.fixture
async def plant(make_plant: PlantFactory) -> Plant:
    return await make_plant(dispatcher=False)


@pytest.mark.parametrize("body", NOT_OBJECTS)
async def test_an_http_body_of_json_that_is_not_an_object_is_a_bad_request(
    plant: Plant, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    response = await plant.client.post(
        "/graphql", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert [record.getMessage() for record in caplog.records] == []


@pytest.mark.parametrize("message", NOT_OBJECTS)
async def test_a_socket_message_of_json_that_is_not_an_object_closes_the_socket_4400(
    plant: Plant, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    close = await close_after(plant, message)
    assert close.code == MALFORMED
    assert [record.getMessage() for record in caplog.records] == []


# Messages whose fields are of the wrong kind: strawberry read them as they came and
# failed with a TypeError, dropping the socket without a close frame (found by
# test_fuzz.py: a subscribe whose payload was an array).
WRONG_FIELDS = {
    "type not a text": {"type": ["subscribe"]},
    "payload an array": {"id": "1", "type": "subscribe", "payload": [1, 2]},
    "payload a text": {"id": "1", "type": "subscribe", "payload": "{ me { username } }"},
    "query not a text": {"id": "1", "type": "subscribe", "payload": {"query": 5}},
    "variables an array": {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "{ me { username } }", "variables": []},
    },
    "operation name a number": {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "{ me { username } }", "operationName": 1},
    },
    "id an array": {"id": [1], "type": "subscribe", "payload": {"query": "{ me { username } }"}},
    "id a number": {"id": 7, "type": "subscribe", "payload": {"query": "{ me { username } }"}},
    "complete with an object id": {"id": {"a": 1}, "type": "complete"},
}


@pytest.mark.parametrize("message", WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
async def test_a_socket_message_with_fields_of_the_wrong_kind_closes_the_socket_4400(
    plant: Plant, message: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    close = await close_after(plant, json.dumps(message))
    assert close.code == MALFORMED
    assert [record.getMessage() for record in caplog.records] == []


async def test_a_subscription_answering_as_its_socket_closes_for_a_bad_message_is_no_fault(
    plant: Plant, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by test_fuzz.py: a sample sent after the 4400 close was logged as a fault."""
    caplog.set_level(logging.WARNING)
    subject = TELEMETRY_SUBJECT.format(device=plant.device)

    async def flood() -> None:
        while True:  # cancelled below, once every socket has closed
            now = datetime.now(UTC)
            batch = TelemetryBatch(plant.device, now, (Sample("speed", 1, Quality.GOOD, "", now),))
            await plant.nc.publish(subject, batch.encode())
            await asyncio.sleep(0)

    token = await plant.login()
    publisher = asyncio.create_task(flood())
    try:
        for _ in range(20):  # each socket is one chance for the race
            async with websockets.connect(
                plant.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
            ) as socket:
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                await socket.send(json.dumps(init))
                assert json.loads(await socket.recv())["type"] == "connection_ack"
                query = f'subscription {{ tagUpdates(device: "{plant.device}") {{ tag }} }}'
                await socket.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
                )
                assert json.loads(await socket.recv())["type"] == "next"
                await socket.send(json.dumps({"type": "subscribe", "id": "2", "payload": []}))
                closed = await until_closed(socket)
            assert closed.rcvd is not None
            assert closed.rcvd.code == MALFORMED
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
    assert [record.getMessage() for record in caplog.records] == []


async def close_after(plant: Plant, message: str) -> Close:
    """The close frame the server answers ``message`` with, on an acknowledged socket."""
    async with websockets.connect(
        plant.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(message)
        closed = await until_closed(socket)
    assert closed.rcvd is not None
    return closed.rcvd


async def until_closed(socket: websockets.ClientConnection) -> ConnectionClosed:
    """Read (and drop) what the server sends until it closes the socket."""
    while True:
        try:
            await socket.recv()
        except ConnectionClosed as closed:
            return closed


@pytest.mark.parametrize(
    "message",
    [
        {"type": "x" * 200},
        {"id": "1", "type": "subscribe", "payload": {"query": '{ "' + "é" * 200 + '" }'}},
    ],
    ids=["unknown type", "syntax error"],
)
async def test_a_refusal_that_quotes_a_long_message_still_closes_the_socket_4400(
    plant: Plant, message: object, caplog: pytest.LogCaptureFixture
) -> None:
    # strawberry puts the unknown type, or the syntax error with its token, in the close
    # frame's reason, which holds at most 123 bytes.
    caplog.set_level(logging.WARNING)
    close = await close_after(plant, json.dumps(message))
    assert close.code == MALFORMED
    assert len(close.reason.encode()) <= MAX_REASON_BYTES
    assert [record.getMessage() for record in caplog.records] == []


@pytest.mark.parametrize("logged_in", [True, False], ids=["operator", "anonymous"])
async def test_a_subscription_over_http_is_refused_as_a_bad_request(
    plant: Plant, logged_in: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A subscription is a stream, served over a socket: run once as a query, its
    # resolver's generator was answered as a value, an internal error logged each time.
    caplog.set_level(logging.WARNING)
    headers = {"Authorization": f"Bearer {await plant.login()}"} if logged_in else {}
    response = await plant.client.post(
        "/graphql", json={"query": "subscription { alarmEvents { alarmId } }"}, headers=headers
    )
    assert response.status_code == 400, response.text
    assert [record.getMessage() for record in caplog.records] == []
