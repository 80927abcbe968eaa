"""The MQTT device block of the plant file: defaults and the mistakes it refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from plantfile.protocols.mqtt import MqttDevice

DEVICE = """
id: sensor-1
protocol: mqtt
mqtt: {host: broker.local}
tags:
  - {name: speed, type: float32, topic: plant/press/state, path: motor.speed}
  - name: setpoint
    type: uint16
    topic: plant/press/state
    path: speed_setpoint
    writable: true
    low: 0
    high: 3000
    command_topic: plant/press/cmd/setpoint
"""


def device(**changes: Any) -> dict[str, Any]:
    """The valid device above, with top-level keys or ``mqtt`` keys replaced."""
    raw: dict[str, Any] = yaml.safe_load(DEVICE)
    raw["mqtt"].update(changes.pop("mqtt", {}))
    raw.update(changes)
    return raw


def first_tag(**changes: Any) -> dict[str, Any]:
    raw = device()
    raw["tags"][0].update(changes)
    return raw


def test_defaults() -> None:
    config = MqttDevice.model_validate(device())
    conn = config.mqtt
    assert (conn.port, conn.client_id, conn.qos, conn.tls) == (1883, None, 1, False)
    assert (conn.username, conn.password_env) == (None, None)
    assert (conn.staleness_seconds, conn.status_topic) == (10.0, None)
    assert (conn.online_payload, conn.offline_payload) == ("online", "offline")
    speed, setpoint = config.tags
    assert (speed.path, speed.command_topic) == ("motor.speed", None)
    # Commands default to {"value": v}.
    assert setpoint.command_path == "value"


def test_a_full_connection_block_is_accepted() -> None:
    config = MqttDevice.model_validate(
        device(
            mqtt={
                "port": 8883,
                "client_id": "plantcore-line-2",
                "username": "plantcore",
                "password_env": "PLANT_MQTT_PASSWORD",
                "tls": True,
                "ca_file": "/etc/plantcore/broker-ca.pem",
                "keepalive_seconds": 15,
                "staleness_seconds": None,
                "status_topic": "plant/press/status",
                "online_payload": "up",
                "offline_payload": "down",
                "qos": 0,
            }
        )
    )
    assert config.mqtt.password_env == "PLANT_MQTT_PASSWORD"
    assert config.mqtt.staleness_seconds is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (device(protocol="modbus"), "mqtt"),
        (device(mqtt={"port": 0}), "greater than or equal to 1"),
        (device(mqtt={"password_env": "PLANT_MQTT_PASSWORD"}), "needs a username"),
        (device(mqtt={"username": "u", "password_env": "not a name"}), "pattern"),
        (device(mqtt={"ca_file": "/etc/ca.pem"}), "needs tls"),
        (device(mqtt={"staleness_seconds": None}), "only with a status_topic"),
        (device(mqtt={"staleness_seconds": 0}), "greater than 0"),
        (device(mqtt={"qos": 3}), "qos"),
        (device(mqtt={"status_topic": "plant/+/status"}), "pattern"),
        (
            device(mqtt={"status_topic": "s", "online_payload": "x", "offline_payload": "x"}),
            "differ",
        ),
        (device(mqtt={"status_topic": "plant/press/state"}), "also a tag's state topic"),
        (device(mqtt={"password": "secret"}), "Extra inputs are not permitted"),
        (device(tags=[]), "at least 1 item"),
        (first_tag(topic="plant/#"), "pattern"),
        (first_tag(topic=""), "pattern"),
        (first_tag(path="motor..speed"), "pattern"),
        (first_tag(path=".speed"), "pattern"),
        (first_tag(writable=True, low=0, high=1), "needs a command_topic"),
        (first_tag(command_topic="plant/press/cmd/speed"), "not writable"),
        (first_tag(address=3), "Extra inputs are not permitted"),
        (first_tag(name="setpoint"), "duplicate tag name: setpoint"),
    ],
)
def test_invalid_blocks_are_refused(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        MqttDevice.model_validate(raw)


def test_the_models_are_frozen() -> None:
    config = MqttDevice.model_validate(device())
    with pytest.raises(ValidationError, match="frozen"):
        config.mqtt.host = "elsewhere"  # type: ignore[misc]
