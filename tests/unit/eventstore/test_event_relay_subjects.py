"""The event relay's message for one event: its subject, its headers, its payload."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from domain.command import ControlCommand
from domain.operator import Operator
from eventstore.event_relay import (
    REDACTED,
    EventRelay,
    event_headers,
    event_id,
    event_subject,
    redact_credentials,
    subject_token,
)

AGGREGATE = UUID("8b497dee-60f8-435f-8881-99f85943a3a9")


def notification(topic: str, state: bytes = b"{}", *, position: int = 42) -> Notification:
    return Notification(
        id=position, originator_id=AGGREGATE, originator_version=3, topic=topic, state=state
    )


@pytest.mark.parametrize(
    ("topic", "subject"),
    [
        ("domain.command:ControlCommand.Confirmed", "plant.events.ControlCommand.Confirmed"),
        ("domain.operator:Operator.Registered", "plant.events.Operator.Registered"),
        ("domain.alarm_flood:AlarmFlood.FloodStarted", "plant.events.AlarmFlood.FloodStarted"),
        # Nested deeper: the event and the class it is nested in.
        ("pkg.mod:Outer.Inner.Happened", "plant.events.Inner.Happened"),
        # A top-level event class: the module's last name stands for the aggregate.
        ("pkg.things:Happened", "plant.events.things.Happened"),
        # Not a library topic at all: still one subject, never an invalid one.
        ("no colon", "plant.events._.no_colon"),
        ("", "plant.events._._"),
    ],
)
def test_the_subject_is_the_aggregate_and_the_event_class(topic: str, subject: str) -> None:
    assert event_subject(topic) == subject


def test_the_domain_s_own_topics_map_to_their_class_names() -> None:
    assert event_subject(get_topic(ControlCommand.Confirmed)) == (
        "plant.events.ControlCommand.Confirmed"
    )
    assert event_subject(get_topic(Operator.Registered), "site-2.events") == (
        "site-2.events.Operator.Registered"
    )


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("Confirmed", "Confirmed"),
        ("write_failed-2", "write_failed-2"),
        ("a b", "a_b"),  # whitespace separates a subject's parts
        ("a.b", "a_b"),  # a dot would make two tokens
        ("*", "_"),
        (">", "_"),
        ("Überwachung", "_berwachung"),  # ASCII only
        ("tab\there", "tab_here"),
        ("", "_"),  # a token is never empty
    ],
)
def test_odd_characters_become_underscores(name: str, token: str) -> None:
    assert subject_token(name) == token


def test_an_odd_topic_still_gives_three_plain_tokens_after_the_prefix() -> None:
    subject = event_subject("weird.mod:Agg regate*.Ev>ent.x y")
    assert subject == "plant.events.Ev_ent.x_y"
    assert all(token and "*" not in token and ">" not in token for token in subject.split("."))


def test_the_event_id_is_the_aggregate_id_and_version() -> None:
    assert event_id(notification("m:A.B")) == f"{AGGREGATE}:3"


def test_the_headers_carry_the_id_position_aggregate_version_and_topic() -> None:
    headers = event_headers(notification("domain.command:ControlCommand.Confirmed"))
    assert headers == {
        "Nats-Msg-Id": f"{AGGREGATE}:3",
        "Plantcore-Position": "42",
        "Plantcore-Aggregate-Id": str(AGGREGATE),
        "Plantcore-Version": "3",
        "Plantcore-Topic": "domain.command:ControlCommand.Confirmed",
    }


def test_a_header_never_breaks_a_line() -> None:
    headers = event_headers(notification("m:A.B\r\nInjected: yes"), ["password_hash"])
    assert headers["Plantcore-Topic"] == "m:A.B  Injected: yes"
    assert headers["Plantcore-Redacted"] == "password_hash"


def test_a_payload_without_credentials_is_relayed_byte_for_byte() -> None:
    stored = b'{"tag":"speed","value":1.0,"note":"caf\xc3\xa9","password":"not a field we know"}'
    assert redact_credentials(stored) == (stored, ())


def test_credential_values_are_redacted_and_named() -> None:
    stored = json.dumps(
        {"username": "ana", "password_hash": "$argon2id$x", "totp_secret": "JBSWY3DP", "n": 1}
    ).encode()
    payload, redacted = redact_credentials(stored)
    assert redacted == ("password_hash", "totp_secret")
    assert json.loads(payload) == {
        "username": "ana",
        "password_hash": REDACTED,
        "totp_secret": REDACTED,
        "n": 1,
    }


@pytest.mark.parametrize(
    "stored",
    [
        b'\xff\x00 "password_hash" not json',
        b'["password_hash"]',
        b'{"nested": {"password_hash": "x"}',  # truncated
    ],
)
def test_a_payload_that_is_not_a_json_object_is_relayed_as_it_is(stored: bytes) -> None:
    assert redact_credentials(stored) == (stored, ())


@pytest.mark.parametrize("prefix", ["plant.events.>", "plant.*", "", "plant..events", "a b"])
def test_a_subject_prefix_must_be_plain_tokens(prefix: str) -> None:
    with pytest.raises(ValueError, match="subject prefix"):
        EventRelay(None, None, None, None, subject_prefix=prefix)  # type: ignore[arg-type]
