"""A device block's password: never one of plantcore's own settings, never unencrypted by default.

A plant file names the variable that holds a device's password; the driver reads
it and sends it to the server the block names. Were that variable one of
plantcore's settings (``PLANTCORE_JWT_SECRET``, ``PLANTCORE_DATABASE_URL``, ...),
whoever edits the plant file would receive plantcore's own secret at a server of
their choice. The plant-file models refuse such a name, and the reader refuses it
again; both rules must agree with the prefix plantcore's settings are read under.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from plantcore.settings import Settings
from plantfile.loader import read_plant_file
from plantfile.plant import AnyDevice
from support.secret_source import SecretSourceError, device_secret

SETTINGS_VARIABLES = [
    "PLANTCORE_JWT_SECRET",
    "PLANTCORE_DATABASE_URL",
    "PLANTCORE_SECRETS_KEY",
    "PLANTCORE_AUDIT_SIGNING_KEY",
    # pydantic-settings reads plantcore's variables whatever their case.
    "plantcore_jwt_secret",
    "Plantcore_Redis_Url",
]
DEVICE_VARIABLES = ["OVEN1_OPCUA_PASSWORD", "SENSOR7_BROKER_PASSWORD", "PLANTCOREPRESS_PASSWORD"]

_DEVICE: TypeAdapter[AnyDevice] = TypeAdapter(AnyDevice)
OPCUA_SECURE = {
    "endpoint": "opc.tcp://oven-1.plant.local:4840/line2",
    "certificate": "pki/own/plantcore.der",
    "private_key": "pki/own/plantcore.key.pem",
    "trusted_server_certificates": ["pki/trusted/oven-1.der"],
}
OPCUA_UNSECURED: dict[str, Any] = {
    "security_policy": "None",
    "certificate": None,
    "private_key": None,
    "trusted_server_certificates": [],
}
MQTT_TLS = {"host": "broker.plant.local", "port": 8883, "tls": True}
MQTT_PLAIN = {"port": 1883, "tls": False}


def opcua(**connection: Any) -> dict[str, Any]:
    return {
        "id": "oven-1",
        "protocol": "opcua",
        "opcua": {**OPCUA_SECURE, **connection},
        "tags": [{"name": "temperature", "node_id": "ns=2;s=Oven.T", "type": "float64"}],
    }


def mqtt(**connection: Any) -> dict[str, Any]:
    return {
        "id": "sensor-7",
        "protocol": "mqtt",
        "mqtt": {**MQTT_TLS, **connection},
        "tags": [{"name": "vibration", "topic": "plant/sensor7/state", "type": "float32"}],
    }


def block(protocol: str, **connection: Any) -> dict[str, Any]:
    return opcua(**connection) if protocol == "opcua" else mqtt(**connection)


def refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        _DEVICE.validate_python(raw)
    return str(caught.value)


# -- plantcore's own settings ------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["opcua", "mqtt"])
@pytest.mark.parametrize("variable", SETTINGS_VARIABLES)
def test_a_password_cannot_be_one_of_plantcores_settings(protocol: str, variable: str) -> None:
    reason = refusal(block(protocol, username="plantcore", password_env=variable))
    assert f"{protocol}.password_env" in reason
    assert "plantcore's own settings" in reason


@pytest.mark.parametrize("protocol", ["opcua", "mqtt"])
@pytest.mark.parametrize("variable", DEVICE_VARIABLES)
def test_a_password_in_a_variable_of_its_own_is_accepted(protocol: str, variable: str) -> None:
    device = _DEVICE.validate_python(block(protocol, username="plantcore", password_env=variable))
    assert getattr(device, protocol).password_env == variable


LEAKY_PLANT = """\
plant_id: line-2
devices:
  - id: sensor-7
    protocol: mqtt
    mqtt: {host: broker.plant.local, port: 8883, tls: true}
    tags:
      - {name: vibration, topic: plant/sensor7/state, type: float32}
  - id: oven-1
    protocol: mqtt
    mqtt:
      host: collector.example.net
      port: 8883
      tls: true
      username: plantcore
      password_env: PLANTCORE_JWT_SECRET
    tags:
      - {name: temperature, topic: plant/oven1/state, type: float32}
"""


def test_the_loader_leaves_the_block_out_and_names_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(LEAKY_PLANT, encoding="utf-8")

    loaded = read_plant_file(path)

    assert [device.id for device in loaded.plant.devices] == ["sensor-7"]
    assert loaded.rejected_ids == {"oven-1"}
    (problem,) = loaded.problems
    line = LEAKY_PLANT.splitlines().index("      password_env: PLANTCORE_JWT_SECRET") + 1
    assert (problem.field, problem.line) == ("devices[oven-1].mqtt.password_env", line)
    assert str(problem).startswith(f"{path}:{line}: devices[oven-1].mqtt.password_env: ")
    assert "PLANTCORE_JWT_SECRET is one of plantcore's own settings" in problem.reason


# -- the reader ------------------------------------------------------------------------


@pytest.mark.parametrize("variable", SETTINGS_VARIABLES)
def test_the_reader_never_returns_one_of_plantcores_settings(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "plantcore's own secret")
    with pytest.raises(SecretSourceError, match="plantcore's own settings"):
        device_secret(variable)


def test_the_reader_refuses_the_file_form_of_plantcores_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "jwt_secret"
    secret.write_text("plantcore's own secret\n", encoding="utf-8")
    monkeypatch.delenv("PLANTCORE_JWT_SECRET", raising=False)
    monkeypatch.setenv("PLANTCORE_JWT_SECRET_FILE", str(secret))
    with pytest.raises(SecretSourceError, match="plantcore's own settings"):
        device_secret("PLANTCORE_JWT_SECRET")


def test_the_reader_reads_a_devices_own_variable_and_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVEN1_OPCUA_PASSWORD", "oven secret")
    assert device_secret("OVEN1_OPCUA_PASSWORD") == "oven secret"
    secret = tmp_path / "broker_password"
    secret.write_text("broker secret\n", encoding="utf-8")
    monkeypatch.setenv("SENSOR7_BROKER_PASSWORD_FILE", str(secret))
    assert device_secret("SENSOR7_BROKER_PASSWORD") == "broker secret"


@pytest.mark.parametrize("variable", SETTINGS_VARIABLES + DEVICE_VARIABLES)
def test_the_models_and_the_reader_refuse_the_same_names(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two lines of defence are written apart (the plant file may not import the reader)."""
    monkeypatch.setenv(variable, "secret")
    try:
        device_secret(variable)
        reader_refuses = False
    except SecretSourceError:
        reader_refuses = True
    try:
        _DEVICE.validate_python(mqtt(username="plantcore", password_env=variable))
        model_refuses = False
    except ValidationError:
        model_refuses = True
    in_settings_namespace = variable.casefold().startswith(
        Settings.model_config["env_prefix"].casefold()
    )
    assert reader_refuses == model_refuses == in_settings_namespace


# -- unencrypted connections ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        mqtt(**MQTT_PLAIN, username="plantcore", password_env="SENSOR7_PASSWORD"),
        opcua(**OPCUA_UNSECURED, username="plantcore", password_env="OVEN1_PASSWORD"),
        opcua(security_mode="Sign", username="plantcore", password_env="OVEN1_PASSWORD"),
    ],
    ids=["mqtt without tls", "opcua policy None", "opcua mode Sign"],
)
def test_a_password_over_an_unencrypted_connection_needs_the_blocks_consent(
    raw: dict[str, Any],
) -> None:
    assert "a password must not travel unencrypted" in refusal(raw)
    section = raw["protocol"]
    consenting = {**raw, section: {**raw[section], "allow_unencrypted_password": True}}
    device = _DEVICE.validate_python(consenting)
    assert getattr(device, section).allow_unencrypted_password


def test_an_encrypted_connection_takes_a_password_without_consent() -> None:
    for protocol in ("mqtt", "opcua"):
        raw = block(protocol, username="plantcore", password_env="DEVICE_PASSWORD")
        device = _DEVICE.validate_python(raw)
        assert getattr(device, protocol).password_env == "DEVICE_PASSWORD"
        assert not getattr(device, protocol).allow_unencrypted_password


@pytest.mark.parametrize(
    "raw",
    [
        mqtt(username="u", password_env="SENSOR7_PASSWORD", allow_unencrypted_password=True),
        mqtt(**MQTT_PLAIN, allow_unencrypted_password=True),
        opcua(username="u", password_env="OVEN1_PASSWORD", allow_unencrypted_password=True),
    ],
    ids=["mqtt with tls", "mqtt without a password", "opcua SignAndEncrypt"],
)
def test_a_consent_that_consents_to_nothing_is_refused(raw: dict[str, Any]) -> None:
    assert "drop allow_unencrypted_password" in refusal(raw)
