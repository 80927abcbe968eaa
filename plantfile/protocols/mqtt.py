"""MQTT: the broker connection block, topic-and-path addressed tags, and the JSON codec.

A device on MQTT publishes its state as JSON documents on one or more *state
topics*; each tag names its topic and a dotted ``path`` into the document
(``motor.speed``, ``values.0`` for a list item, empty for a payload that is the
value itself). A writable tag names a ``command_topic``; the driver publishes
the raw value there as JSON, under ``command_path`` (``{"value": 1500}`` by
default, a bare ``1500`` when ``command_path`` is empty), because most devices
and bridges take a small object on their command topics and a field name is
what varies between them.

The optional ``status_topic`` is the device's online/offline topic, usually
also its last will, so that the broker reports a device that vanished.

The broker's password is named by ``password_env`` (see
:mod:`plantfile.protocols.passwords`) and needs ``tls: true``, unless the block
says ``allow_unencrypted_password: true``.

The pure helpers at the bottom (:func:`parse_payload`, :func:`extract`,
:func:`fit`, :func:`command_payload`) are shared by the driver and the MQTT
simulator, so both read and write the same documents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfile.protocols.base import DeviceConfig
from plantfile.protocols.passwords import (
    PasswordVariable,
    UnencryptedPasswordConsent,
    check_password_transport,
)
from plantfile.tags import FLOAT32_MAX, INTEGER_RANGES, DataType, RawValue, TagConfig

# A concrete topic: the driver routes messages by exact topic, so no wildcards.
TOPIC_PATTERN = r"^[^#+\x00]+$"
# Dot-separated, no empty segment; the empty string means the whole payload.
PATH_PATTERN = r"^([^.]+(\.[^.]+)*)?$"


class MqttConnection(BaseModel):
    """How to reach the broker, and how the device reports that it is alive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535, description="usually 8883 with tls")
    client_id: str | None = Field(
        None, min_length=1, description="default: plantcore-<device id>; unique per broker"
    )
    username: str | None = Field(None, min_length=1)
    password_env: PasswordVariable | None = Field(
        None,
        description="name of the environment variable holding the password, never the password;"
        " not one of plantcore's own (PLANTCORE_*)",
    )
    tls: bool = False
    allow_unencrypted_password: UnencryptedPasswordConsent = False
    ca_file: str | None = Field(
        None, min_length=1, description="CA bundle for the broker; default: the system's"
    )
    keepalive_seconds: int = Field(30, ge=1, le=65535)
    timeout_seconds: float = Field(5.0, gt=0, description="connect, subscribe and PUBACK")
    read_back_seconds: float = Field(
        2.0, ge=0, description="how long a write waits for the state to show the new value"
    )
    staleness_seconds: float | None = Field(
        10.0,
        gt=0,
        description="no message on a tag's topic for longer: the tag is uncertain; "
        "null for devices that publish only on change (needs status_topic)",
    )
    status_topic: str | None = Field(None, pattern=TOPIC_PATTERN)
    online_payload: str = "online"
    offline_payload: str = "offline"
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the subscriptions")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        check_password_transport(
            self.password_env,
            encrypted=self.tls,
            consent=self.allow_unencrypted_password,
            how_to_encrypt="set tls: true (port 8883, usually)",
        )
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls: true")
        # Without either, a device that died would keep its last values good for ever.
        if self.staleness_seconds is None and self.status_topic is None:
            raise ValueError("staleness_seconds can be null only with a status_topic")
        if self.online_payload == self.offline_payload:
            raise ValueError("online_payload and offline_payload must differ")
        return self


class MqttTag(TagConfig):
    """A tag read from a JSON state document, written through a command topic."""

    topic: str = Field(pattern=TOPIC_PATTERN, description="the state topic the value arrives on")
    path: str = Field(
        "", pattern=PATH_PATTERN, description="dotted path into the JSON; empty: the whole payload"
    )
    command_topic: str | None = Field(None, pattern=TOPIC_PATTERN)
    command_path: str = Field(
        "value",
        pattern=PATH_PATTERN,
        description='field the value is published under ({"value": v}); empty: the bare value',
    )

    @model_validator(mode="after")
    def _fits_mqtt(self) -> Self:
        if self.writable and self.command_topic is None:
            raise ValueError("a writable tag needs a command_topic")
        if self.command_topic is not None and not self.writable:
            raise ValueError("command_topic is set but the tag is not writable")
        return self


class MqttDevice(DeviceConfig):
    protocol: Literal["mqtt"]
    mqtt: MqttConnection
    tags: Sequence[MqttTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _status_apart(self) -> Self:
        status = self.mqtt.status_topic
        if status is not None and any(tag.topic == status for tag in self.tags):
            raise ValueError(f"status_topic {status!r} is also a tag's state topic")
        return self


def parse_payload(payload: bytes) -> object:
    """The JSON document of a payload; ValueError if it is not JSON (NaN and Infinity are not).

    A document nested deeper than the parser goes (a few thousand levels) is refused
    the same way: no sensor sends one, and it must not leave the last values standing.
    """
    try:
        return json.loads(payload, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def extract(document: object, path: str) -> object:
    """The value at a dotted ``path``; ValueError saying where the path stops."""
    if not path:
        return document
    node = document
    walked: list[str] = []
    for segment in path.split("."):
        where = ".".join(walked) or "the payload"
        walked.append(segment)
        if isinstance(node, dict):
            if segment not in node:
                raise ValueError(f"no field {'.'.join(walked)!r}")
            node = node[segment]
        elif isinstance(node, list):
            if not segment.isdigit() or int(segment) >= len(node):
                raise ValueError(f"no item {'.'.join(walked)!r} ({where} has {len(node)} items)")
            node = node[int(segment)]
        else:
            raise ValueError(f"{where} is {_kind(node)}, not an object or a list")
    return node


def fit(value: object, data_type: DataType) -> RawValue:
    """The raw value a JSON value gives a tag of ``data_type``; ValueError if it does not fit.

    No coercion beyond what JSON blurs: a whole float (``1200.0``) fits an integer
    type, an integer fits a float type. A string never fits a number, nor a
    number a bool: a device that sends them is misconfigured, not approximately right.
    """
    if data_type == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{data_type} expects true or false, got {_kind(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{data_type} expects a number, got {_kind(value)}")
    if data_type in INTEGER_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{data_type} expects a whole number, got {value!r}")
            value = int(value)
        low, high = INTEGER_RANGES[data_type]
        if not low <= value <= high:
            raise ValueError(f"{_short(value)} is outside {data_type} [{low}, {high}]")
        return value
    limit = FLOAT32_MAX if data_type == "float32" else 1.7976931348623157e308
    if abs(value) > limit:
        raise ValueError(f"{_short(value)} is outside the {data_type} range")
    return float(value)


def command_payload(tag: MqttTag, raw: RawValue) -> bytes:
    """The JSON a write publishes: ``raw`` nested under ``tag.command_path``."""
    document: object = raw
    if tag.command_path:
        for key in reversed(tag.command_path.split(".")):
            document = {key: document}
    return json.dumps(document, allow_nan=False).encode()


def same_value(data_type: DataType, a: RawValue, b: RawValue) -> bool:
    """Whether a state value shows a written one; floats within float32 precision."""
    if data_type in ("float32", "float64"):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _short(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
