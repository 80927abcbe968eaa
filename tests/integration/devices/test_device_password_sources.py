"""A device block naming one of plantcore's settings as its password never sends it anywhere.

The attack: whoever can edit the plant file points a device at a broker of
theirs and writes ``password_env: PLANTCORE_JWT_SECRET``; the driver would log
in there with plantcore's token signing key as the password. Here that broker is
a real Mosquitto of the test's own that lets in exactly one login: user
``press`` with plantcore's signing key. Every connection it accepts therefore
carried the key, and every login it saw, let in or refused, is in its log
(complete once it has stopped). An honest device whose own variable holds the
same value proves that the broker would have let the key in.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices.device_errors import DeviceConnectionError
from devices.drivers import driver_for
from devices.drivers.mqtt import MqttDriver
from devices.drivers.opcua import OpcUaDriver
from plantcore import embedded
from plantfile.loader import read_plant_file
from plantfile.protocols.mqtt import MqttConnection, MqttDevice, MqttTag
from plantfile.protocols.opcua import OpcUaDevice
from simulators.certificates import generate_application_certificate
from tests.support import free_port, unique

pytestmark = pytest.mark.integration

USER = "press"
SIGNING_KEY = "PLANTCORE_JWT_SECRET"
OWN_VARIABLE = "PRESS_BROKER_PASSWORD"
_LOGIN = re.compile(r"New client connected from \S+ as (\S+) \(.*u'(\S+)'\)")


@dataclass(frozen=True)
class BrokerLog:
    """Every login a stopped broker saw: the client ids it let in, and how many it refused."""

    text: str

    @property
    def logins(self) -> list[str]:
        return [client for client, user in _LOGIN.findall(self.text) if user == USER]

    @property
    def refused(self) -> int:
        return self.text.count("disconnected, not authorised")


@dataclass
class Broker:
    port: int
    ca_file: Path  # its own certificate: a broker of the attacker's is as well set up as any
    log_file: Path

    def log(self) -> BrokerLog:
        return BrokerLog(self.log_file.read_text(encoding="utf-8"))


@contextmanager
def broker_accepting(password: str, directory: Path) -> Iterator[Broker]:
    """A Mosquitto over TLS that lets in only ``press`` with ``password``; stopped (by its PID)
    on exit."""
    identity = generate_application_certificate(
        directory, "broker", "urn:plantcore:tests:broker", role="server"
    )
    certificate = x509.load_der_x509_certificate(identity.certificate.read_bytes())
    ca_file = directory / "broker.pem"
    ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    password_file = directory / "mosquitto.passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(password_file), USER, password],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\ncertfile {ca_file}\nkeyfile {identity.private_key}\n"
        f"allow_anonymous false\npassword_file {password_file}\n"
        # Started by root, Mosquitto would switch to a 'mosquitto' user that cannot read tmp_path.
        "user root\npersistence false\nlog_dest stdout\nlog_type all\n",
        encoding="utf-8",
    )
    broker = Broker(port, ca_file, directory / "mosquitto.log")
    with embedded.process(
        ["mosquitto", "-c", str(config)], port, "test Mosquitto", broker.log_file
    ):
        yield broker


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """plantcore's token signing key, set as plantcore's settings take it; and a device's
    own variable holding the same value."""
    key = secrets.token_urlsafe(32)
    monkeypatch.setenv(SIGNING_KEY, key)
    monkeypatch.setenv(OWN_VARIABLE, key)
    return key


def plant_file(broker: Broker, honest: str, leaky: str) -> str:
    def device(device_id: str, variable: str) -> str:
        return f"""\
  - id: {device_id}
    protocol: mqtt
    mqtt:
      host: 127.0.0.1
      port: {broker.port}
      tls: true
      ca_file: {broker.ca_file}
      username: {USER}
      password_env: {variable}
    tags:
      - {{name: vibration, topic: plant/{device_id}/state, type: float32}}
"""

    return (
        "plant_id: line-2\ndevices:\n" + device(honest, OWN_VARIABLE) + device(leaky, SIGNING_KEY)
    )


async def test_a_device_block_naming_plantcores_signing_key_is_left_out_and_sends_nothing(
    tmp_path: Path, signing_key: str
) -> None:
    honest, leaky = unique("honest"), unique("leaky")
    with broker_accepting(signing_key, tmp_path) as broker:
        path = tmp_path / "plant.yaml"
        text = plant_file(broker, honest, leaky)
        path.write_text(text, encoding="utf-8")

        loaded = read_plant_file(path)
        # Every device the plant file lets run connects, as the fleet would start it.
        for device in loaded.plant.devices:
            driver = driver_for(device)
            await driver.connect()
            await driver.close()
    seen = broker.log()

    assert seen.logins == [f"plantcore-{honest}"], "the broker received plantcore's signing key"
    assert seen.refused == 0
    (problem,) = loaded.problems
    line = text.splitlines().index(f"      password_env: {SIGNING_KEY}") + 1
    assert (problem.field, problem.line) == (f"devices[{leaky}].mqtt.password_env", line)
    assert "one of plantcore's own settings" in problem.reason
    assert loaded.rejected_ids == {leaky}


def mqtt_device(device_id: str, broker: Broker, password_env: str) -> MqttDevice:
    """A device as validated models would hold it, built without validation."""
    connection = MqttConnection.model_construct(
        host="127.0.0.1",
        port=broker.port,
        tls=True,
        ca_file=str(broker.ca_file),
        username=USER,
        password_env=password_env,
        timeout_seconds=2.0,
    )
    tag = MqttTag(name="vibration", topic=f"plant/{device_id}/state", type="float32")
    return MqttDevice.model_construct(id=device_id, protocol="mqtt", mqtt=connection, tags=[tag])


async def test_the_reader_refuses_plantcores_signing_key_to_a_block_that_escaped_validation(
    tmp_path: Path, signing_key: str
) -> None:
    honest, leaky = unique("honest"), unique("leaky")
    with broker_accepting(signing_key, tmp_path) as broker:
        with pytest.raises(DeviceConnectionError, match=f"{SIGNING_KEY} is one of plantcore's own"):
            await MqttDriver(mqtt_device(leaky, broker, SIGNING_KEY)).connect()
        driver = MqttDriver(mqtt_device(honest, broker, OWN_VARIABLE))
        await driver.connect()
        await driver.close()
    seen = broker.log()

    assert seen.logins == [f"plantcore-{honest}"], "the broker received plantcore's signing key"
    assert seen.refused == 0


def opcua_device(endpoint: str, **paths: object) -> OpcUaDevice:
    return OpcUaDevice.model_validate(
        {
            "id": unique("oven"),
            "protocol": "opcua",
            "opcua": {"endpoint": endpoint, **paths},
            "tags": [{"name": "temperature", "node_id": "ns=2;s=Oven.T", "type": "float64"}],
        }
    )


@pytest.mark.parametrize("field", ["certificate", "private_key", "trusted_server_certificates"])
async def test_a_certificate_path_naming_plantcores_secret_file_sends_none_of_it(
    tmp_path: Path, signing_key: str, field: str
) -> None:
    """Why certificate and key paths are not restricted (ADR 0020): what they point at is
    read here, and a file that is no certificate or key ends the connect before the network."""
    secret_file = tmp_path / "jwt_secret"  # as PLANTCORE_JWT_SECRET_FILE would name it
    secret_file.write_text(signing_key, encoding="utf-8")
    own = generate_application_certificate(
        tmp_path, "plantcore", "urn:plantcore:tests:client", role="client"
    )
    paths: dict[str, object] = {
        "certificate": own.certificate,
        "private_key": own.private_key,
        "trusted_server_certificates": [own.certificate],
    }
    paths[field] = [secret_file] if field == "trusted_server_certificates" else secret_file
    # Nothing listens there: an attempt to connect would say "cannot reach".
    device = opcua_device(f"opc.tcp://127.0.0.1:{free_port()}/oven", **paths)

    with pytest.raises(DeviceConnectionError) as caught:
        await OpcUaDriver(device).connect()

    reason = str(caught.value)
    assert f"{secret_file} holds no readable" in reason
    assert signing_key not in reason
