"""The write request and reply on ``plant.write.<device>``: what is accepted, what is refused."""

from __future__ import annotations

import json

import pytest

from domain.messages import MalformedMessage, WriteErrorKind, WriteReply, WriteRequest


def encoded(**fields: object) -> bytes:
    body = {"schema": 1, "op": "write", "tag": "speed_setpoint", "command_id": "c1", "value": 1}
    return json.dumps({**body, **fields}).encode()


def test_a_request_round_trips_with_its_expiry() -> None:
    request = WriteRequest(
        tag="speed_setpoint", command_id="c1", op="write", value=1500, expires_in_ms=5000
    )
    assert WriteRequest.decode(request.encode()) == request


def test_a_request_without_expiry_waits_as_long_as_it_must() -> None:
    assert WriteRequest.decode(encoded(expires_in_ms=None)).expires_in_ms is None


@pytest.mark.parametrize("expiry", [0, -5, 1.5, "5000", True])
def test_an_expiry_that_is_not_a_positive_integer_is_malformed(expiry: object) -> None:
    with pytest.raises(MalformedMessage, match="expires_in_ms"):
        WriteRequest.decode(encoded(expires_in_ms=expiry))


@pytest.mark.parametrize("kind", list(WriteErrorKind))
def test_every_error_kind_round_trips(kind: WriteErrorKind) -> None:
    reply = WriteReply.failure("speed_setpoint", kind, "why")
    assert WriteReply.decode(reply.encode()) == reply
