"""Helpers of the access-control tests: sessions without Argon2, the record, error codes.

A login through GraphQL costs an Argon2 verification (some 0.15 s) on purpose;
the tests that are not about logging in open their sessions through the
domain instead (:func:`open_session`), exactly as ``login`` records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import pyotp
from eventsourcing.domain import DomainEvent

from api.credentials import issue_token, new_refresh_token, new_session_id
from domain.alarm import alarm_id
from domain.application import PlantApplication
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition
from domain.operator import operator_id
from domain.operator_directory import directory_id
from tests.graphql_client import GraphQLSocket
from tests.integration.api.conftest import TOKENS, Plant

REQUEST = """mutation($d: String!, $t: String!, $v: JSON) {
    requestCommand(device: $d, tag: $t, value: $v) { commandId challenge expiresAt } }"""
CONFIRM = """mutation($id: ID!, $code: String!) {
    confirmCommand(commandId: $id, code: $code) { commandId status } }"""
APPROVE = """mutation($id: ID!, $code: String!) {
    approveCommand(commandId: $id, code: $code) { commandId status approvedBy } }"""
DECLINE = """mutation($id: ID!, $reason: String!) {
    declineCommand(commandId: $id, reason: $reason) { commandId status reason } }"""
CANCEL = """mutation($id: ID!) { cancelCommand(commandId: $id) { commandId status } }"""
ME = "{ me { username roles scopes sessionId } }"


@dataclass(frozen=True)
class OpenSession:
    """A session opened as ``login`` opens one: its id and both tokens."""

    username: str
    session_id: str
    access_token: str
    refresh_token: str


async def open_session(plant: Plant, username: str, *, source: str = "test") -> OpenSession:
    """Open a session through the domain (recorded ``LoginSucceeded``), without Argon2."""
    session_id = new_session_id()
    refresh, refresh_hash = new_refresh_token(username, session_id)
    now = plant.services.clock()
    operator = await plant.store_executor.call(
        plant.app.log_in,
        username=username,
        password_matches=True,
        source=source,
        session_id=session_id,
        refresh_hash=refresh_hash,
        at=now,
    )
    issued = issue_token(
        TOKENS, username=username, session_id=session_id, roles=operator.roles, now=now
    )
    return OpenSession(username, session_id, issued.token, refresh)


async def raise_alarm(plant: Plant) -> UUID:
    """An alarm of the plant's device, raised at its source."""
    now = datetime.now(UTC)
    transition = AlarmTransition(
        transition_id=f"{plant.device}-1", device=plant.device, condition="speed_hi",
        kind=AlarmKind.HI, priority=AlarmPriority.HIGH, area="stamping", tag="speed",
        active=True, suppressed=False, latch=False, value=1900.0, limit=1800.0,
        message="speed high", ts=now,
    )  # fmt: skip
    await plant.store_executor.call(plant.app.record_alarm_transitions, [transition], now)
    return alarm_id(plant.device, "speed_hi")


def _stored(app: PlantApplication, originator: UUID) -> list[DomainEvent]:
    return cast(list[DomainEvent], list(app.events.get(originator)))


async def events_of(plant: Plant, originator: UUID) -> list[DomainEvent]:
    """Every stored event of one aggregate, oldest first."""
    return await plant.store_executor.call(_stored, plant.app, originator)


async def operator_events(plant: Plant, username: str) -> list[DomainEvent]:
    return await events_of(plant, operator_id(username))


async def directory_events(plant: Plant) -> list[DomainEvent]:
    return await events_of(plant, directory_id(plant.app.plant_id))


async def command_events(plant: Plant, command_id: str) -> list[DomainEvent]:
    return await events_of(plant, UUID(command_id))


def names(events: list[DomainEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


def named(events: list[DomainEvent], name: str) -> list[DomainEvent]:
    return [event for event in events if type(event).__name__ == name]


def field(event: DomainEvent, name: str) -> Any:
    """An attribute every event of that kind carries (``reason``, ``source``, ...)."""
    return getattr(event, name)


def codes(body: dict[str, Any]) -> list[str | None]:
    """The ``extensions.code`` of each error of an answer (``None`` for an uncoded one)."""
    errors: list[dict[str, Any]] = body.get("errors") or []
    return [(error.get("extensions") or {}).get("code") for error in errors]


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    """The one error of a refused operation, whose data is null."""
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert isinstance(error, dict)
    return error


def message_codes(message: dict[str, Any]) -> list[str | None]:
    """The error codes of a graphql-transport-ws message (``error`` or ``next``)."""
    payload = message.get("payload")
    if message["type"] == "error":
        errors = payload if isinstance(payload, list) else []
    else:
        errors = (payload or {}).get("errors") or []
    return [(error.get("extensions") or {}).get("code") for error in errors]


async def first_message(socket: GraphQLSocket, operation: str) -> dict[str, Any]:
    """The next message of ``operation`` (those of other operations are dropped)."""
    while True:
        message = await socket.receive()
        if message.get("id") == operation:
            return message


def next_code(totp: pyotp.TOTP, at: datetime) -> str:
    """The code of the step after ``at``'s: the verifier accepts it, one step ahead."""
    return str(totp.at(at + timedelta(seconds=totp.interval)))


@dataclass
class MutableClock:
    """A clock a test moves by hand (``make_plant(clock=...)``)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
