"""OpcUaDriver against the real asyncua simulator, over Basic256Sha256 with SignAndEncrypt.

An asyncua server takes seconds to build its standard address space, so one
secure simulator serves the whole module, on the module's event loop, and each
test puts its press back to the same steady state. Tests that stop a server or
need one offering NoSecurity start their own. Certificates are generated once
per module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from devices.device_errors import DeviceConnectionError, DeviceRequestError
from devices.driver import BAD_READING, Reading
from devices.drivers.opcua import OpcUaDriver
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.messages import (
    ConnectionState,
    Quality,
    TelemetryBatch,
    WriteErrorKind,
    WriteRequest,
)
from plantfile.protocols.opcua import OpcUaConnection, OpcUaDevice, OpcUaTag
from simulators.certificates import ApplicationCertificate, generate_application_certificate
from simulators.model import PressModel
from simulators.opcua_server import (
    CLIENT_APPLICATION_URI,
    PRESS_VARIABLES,
    SERVER_APPLICATION_URI,
    OpcUaSimulator,
)
from tests.integration.devices.conftest import assert_plausible_press
from tests.support import eventually, free_port, unique
from tests.unit.devices.fakes import RecordingSink

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

STEADY_RPM = 1200
USER, PASSWORD = "operator", "correct horse battery staple"
PASSWORD_ENV = "TEST_OPCUA_PRESS_PASSWORD"  # a device's own variable: never PLANTCORE_*
SECURE = "Basic256Sha256 SignAndEncrypt"
# A bound on a wait that must end: a guard against a hang, far above any normal wait.
HANG_GUARD_SECONDS = 30.0

GHOST = OpcUaTag(name="ghost", node_id="ns=2;s=Press.ghost", type="uint16")
POLLED_GHOST = GHOST.model_copy(update={"name": "polled_ghost", "subscribe": False})
MISFIT = OpcUaTag(
    name="temperature_as_int16", node_id="ns=2;s=Press.motor_temperature", type="int16"
)
SETPOINT_AS_DOUBLE = OpcUaTag(
    name="setpoint_as_double", node_id="ns=2;s=Press.speed_setpoint", type="float64"
)


@dataclass(frozen=True)
class Pki:
    server: ApplicationCertificate
    client: ApplicationCertificate
    stranger: ApplicationCertificate  # neither end trusts it
    trust_dir: Path  # the server's certificate alone, as PEM


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    server = generate_application_certificate(
        directory, "press-simulator", SERVER_APPLICATION_URI, role="server"
    )
    trust_dir = directory / "trusted"
    trust_dir.mkdir()
    pem = x509.load_der_x509_certificate(server.certificate.read_bytes()).public_bytes(
        serialization.Encoding.PEM
    )
    (trust_dir / "press-simulator.pem").write_bytes(pem)
    return Pki(
        server=server,
        client=generate_application_certificate(
            directory, "plantcore-client", CLIENT_APPLICATION_URI, role="client"
        ),
        stranger=generate_application_certificate(
            directory, "stranger", "urn:plantcore:tests:stranger", role="client"
        ),
        trust_dir=trust_dir,
    )


def steady_press() -> PressModel:
    # Already at its setpoint, so the speed it serves is known exactly.
    return PressModel(running=True, speed_setpoint=STEADY_RPM, speed=STEADY_RPM)


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def shared_simulator(pki: Pki) -> AsyncIterator[OpcUaSimulator]:
    # autouse: started before any test, so the worker thread asyncua builds its
    # address space on belongs to the module, not to whichever test runs first.
    async with OpcUaSimulator(
        certificate=pki.server,
        port=free_port(),
        model=steady_press(),
        trusted_clients=[pki.client.certificate],
        users={USER: PASSWORD},
    ) as sim:
        yield sim


@pytest_asyncio.fixture(loop_scope="module")
async def simulator(shared_simulator: OpcUaSimulator) -> OpcUaSimulator:
    """The shared simulator, its press steady at STEADY_RPM again and its read counts zero."""
    press = shared_simulator.model
    press.running, press.speed_setpoint, press.speed = True, STEADY_RPM, STEADY_RPM
    await shared_simulator.publish()
    shared_simulator.reads.clear()
    return shared_simulator


def press_config(
    simulator: OpcUaSimulator, pki: Pki, *extra_tags: OpcUaTag, **connection: Any
) -> OpcUaDevice:
    """The simulator's press under a fresh id, secured with the module's certificates."""
    opcua = {
        "endpoint": simulator.endpoint,
        "certificate": pki.client.certificate,
        "private_key": pki.client.private_key,
        "trusted_server_certificates": [pki.server.certificate],
        "publishing_interval_ms": 50,
        "timeout_seconds": 2.0,
        **connection,
    }
    tags = [variable.tag for variable in PRESS_VARIABLES]
    return OpcUaDevice.model_validate(
        {
            "id": unique("press"),
            "protocol": "opcua",
            "opcua": {key: value for key, value in opcua.items() if value is not None},
            "tags": [tag.model_dump() for tag in (*tags, *extra_tags)],
        }
    )


@asynccontextmanager
async def connected(config: OpcUaDevice) -> AsyncIterator[OpcUaDriver]:
    driver = OpcUaDriver(config)
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def press(simulator: OpcUaSimulator, pki: Pki) -> OpcUaDevice:
    return press_config(simulator, pki)


@pytest_asyncio.fixture(loop_scope="module")
async def driver(press: OpcUaDevice) -> AsyncIterator[OpcUaDriver]:
    async with connected(press) as driver:
        yield driver


def tag(config: OpcUaDevice, name: str) -> OpcUaTag:
    found = config.tag(name)
    assert isinstance(found, OpcUaTag)
    return found


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def probe() -> None:
        assert condition()

    await eventually(probe, timeout=timeout)


async def until_read(driver: OpcUaDriver, target: OpcUaTag, expected: Reading) -> None:
    async def probe() -> None:
        assert (await driver.read([target]))[target.name] == expected

    await eventually(probe)


async def test_reads_every_tag_good_over_sign_and_encrypt(
    driver: OpcUaDriver, press: OpcUaDevice, simulator: OpcUaSimulator
) -> None:
    readings = await driver.read(press.tags)
    assert_plausible_press(readings, simulator.model, STEADY_RPM)
    assert driver.connected
    assert set(simulator.channel_security()) == {SECURE}


async def test_sign_only_is_used_when_the_plant_file_asks_for_it(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(simulator, pki, security_mode="Sign")
    async with connected(config) as driver:
        assert (await driver.read(config.tags))["running"] == Reading(True, Quality.GOOD)
        assert "Basic256Sha256 Sign" in simulator.channel_security()


async def test_a_data_change_arrives_without_polling_the_node(
    driver: OpcUaDriver, press: OpcUaDevice, simulator: OpcUaSimulator
) -> None:
    setpoint = tag(press, "speed_setpoint")
    await until_read(driver, setpoint, Reading(STEADY_RPM, Quality.GOOD))
    polled = simulator.reads["speed_setpoint"]

    # Changed at the press itself, not through the driver.
    simulator.model.set_input("speed_setpoint", 2100)

    await until_read(driver, setpoint, Reading(2100, Quality.GOOD))
    assert simulator.reads["speed_setpoint"] == polled


async def test_a_write_reaches_the_press_and_is_read_back_at_once(
    driver: OpcUaDriver, press: OpcUaDevice, simulator: OpcUaSimulator
) -> None:
    setpoint, running = tag(press, "speed_setpoint"), tag(press, "running")
    await until_read(driver, setpoint, Reading(STEADY_RPM, Quality.GOOD))

    await driver.write(setpoint, 1500)
    await driver.write(running, False)

    assert (simulator.model.speed_setpoint, simulator.model.running) == (1500, False)
    # No waiting: the read-back right after a write never sees the value from before it.
    assert await driver.read([setpoint, running]) == {
        "speed_setpoint": Reading(1500, Quality.GOOD),
        "running": Reading(False, Quality.GOOD),
    }


async def test_the_server_refuses_what_it_must_not_accept(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(simulator, pki, SETPOINT_AS_DOUBLE)
    async with connected(config) as driver:
        with pytest.raises(DeviceRequestError, match="BadOutOfRange"):
            await driver.write(tag(config, "speed_setpoint"), 4000)
        with pytest.raises(DeviceRequestError, match="BadUserAccessDenied"):
            await driver.write(tag(config, "speed"), 10.0)
        with pytest.raises(DeviceRequestError, match="BadTypeMismatch"):
            await driver.write(tag(config, "setpoint_as_double"), 1500.0)
        assert simulator.model.speed_setpoint == STEADY_RPM
        assert driver.connected


async def test_a_missing_node_or_a_misfit_value_is_bad_and_logged_the_rest_reads_good(
    simulator: OpcUaSimulator, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = press_config(simulator, pki, GHOST, POLLED_GHOST, MISFIT)
    with caplog.at_level(logging.WARNING, logger="devices.drivers.opcua"):
        async with connected(config) as driver:
            readings = await driver.read(config.tags)
            assert driver.connected
    assert readings["ghost"] == BAD_READING
    assert readings["polled_ghost"] == BAD_READING
    assert readings["temperature_as_int16"] == BAD_READING
    assert readings["speed"] == Reading(float(STEADY_RPM), Quality.GOOD)
    assert readings["running"] == Reading(True, Quality.GOOD)
    logged = [record.getMessage() for record in caplog.records]
    assert any("ghost " in line and "BadNodeIdUnknown" in line for line in logged)
    assert any("polled_ghost" in line and "BadNodeIdUnknown" in line for line in logged)
    assert any("temperature_as_int16" in line and "does not fit int16" in line for line in logged)


async def test_a_stopped_server_is_a_connection_error_and_a_restarted_one_delivers_again(
    pki: Pki,
) -> None:
    async with OpcUaSimulator(
        certificate=pki.server, port=free_port(), model=steady_press()
    ) as sim:
        config = press_config(sim, pki)
        setpoint = tag(config, "speed_setpoint")
        driver = OpcUaDriver(config)
        await driver.connect()
        try:
            assert (await driver.read(config.tags))["speed"] == Reading(1200.0, Quality.GOOD)

            await sim.stop()
            with pytest.raises(DeviceConnectionError, match="session lost"):
                await driver.read(config.tags)
            with pytest.raises(DeviceConnectionError):
                await driver.write(setpoint, 1000)
            assert not driver.connected

            # What the supervisor does: close, then connect again until it works.
            await driver.close()
            await sim.start()

            async def reconnect() -> None:
                try:
                    await driver.connect()
                except DeviceConnectionError as exc:
                    raise AssertionError(exc.reason) from exc

            await eventually(reconnect, timeout=HANG_GUARD_SECONDS)
            assert driver.connected
            await until_read(driver, setpoint, Reading(STEADY_RPM, Quality.GOOD))
            polled = sim.reads["speed_setpoint"]
            sim.model.set_input("speed_setpoint", 2400)
            await until_read(driver, setpoint, Reading(2400, Quality.GOOD))
            assert sim.reads["speed_setpoint"] == polled
        finally:
            await driver.close()


async def test_a_server_that_stops_answering_is_a_lost_session_once_the_keepalive_fails(
    simulator: OpcUaSimulator, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = press_config(simulator, pki, timeout_seconds=1.0)
    setpoint = tag(config, "speed_setpoint")
    driver = OpcUaDriver(config)
    await driver.connect()
    try:
        await until_read(driver, setpoint, Reading(STEADY_RPM, Quality.GOOD))
        simulator.hang()  # the socket stays open: only the keep-alive can tell

        async def lost() -> None:
            try:
                await driver.read(config.tags)
            except DeviceConnectionError as exc:
                outcome = exc.reason
            else:
                outcome = "values of the silent server still served"
            assert outcome.startswith("session lost"), outcome

        await eventually(lost, timeout=5.0)
        assert not driver.connected
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="asyncua"):
            # The server never answers while hung: a close that asked it to close the
            # session or the channel would wait out its request timeout and fail, which
            # asyncua logs ("close_session raised during disconnect"), or hang until the guard.
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                await driver.close()
        failed = [r.getMessage() for r in caplog.records if "during disconnect" in r.getMessage()]
        assert failed == []
    finally:
        await driver.close()
        simulator.resume()


async def test_an_untrusted_server_certificate_is_refused(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(simulator, pki, trusted_server_certificates=[pki.stranger.certificate])
    driver = OpcUaDriver(config)
    with pytest.raises(DeviceConnectionError, match=r"'press-simulator'.*not in the trust list"):
        await driver.connect()
    assert not driver.connected


async def test_a_trust_list_directory_of_pem_certificates_is_accepted(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(simulator, pki, trusted_server_certificates=pki.trust_dir)
    async with connected(config) as driver:
        assert (await driver.read(config.tags))["running"] == Reading(True, Quality.GOOD)


async def test_a_client_certificate_the_server_does_not_trust_is_refused(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(
        simulator, pki, certificate=pki.stranger.certificate, private_key=pki.stranger.private_key
    )
    with pytest.raises(DeviceConnectionError, match="BadCertificateUntrusted"):
        await OpcUaDriver(config).connect()


async def test_no_security_only_when_the_plant_file_says_none(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    # Without security fields the connection is Basic256Sha256, which needs a certificate.
    with pytest.raises(ValidationError, match="needs certificate and private_key"):
        OpcUaConnection(endpoint=simulator.endpoint)
    unsecured = {
        "security_policy": "None",
        "certificate": None,
        "private_key": None,
        "trusted_server_certificates": None,
    }

    # Said explicitly, None is still refused by a server that does not offer it...
    with pytest.raises(DeviceConnectionError, match=r"no unsecured \(None\) endpoint"):
        await OpcUaDriver(press_config(simulator, pki, **unsecured)).connect()

    # ...and used by one that does, while a secure config there stays secure.
    open_press = OpcUaSimulator(
        certificate=pki.server, port=free_port(), model=steady_press(), allow_no_security=True
    )
    async with open_press:
        config = press_config(open_press, pki, **unsecured)
        async with connected(config) as driver:
            assert (await driver.read(config.tags))["running"] == Reading(True, Quality.GOOD)
            assert open_press.channel_security() == ["None"]
        await until(lambda: open_press.channel_security() == [])
        async with connected(press_config(open_press, pki)):
            assert open_press.channel_security() == [SECURE]


async def test_a_password_comes_from_the_environment(
    simulator: OpcUaSimulator, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = press_config(simulator, pki, username=USER, password_env=PASSWORD_ENV)

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    async with connected(config) as driver:
        assert (await driver.read(config.tags))["running"] == Reading(True, Quality.GOOD)

    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(DeviceConnectionError, match="BadUserAccessDenied"):
        await OpcUaDriver(config).connect()

    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(DeviceConnectionError, match=PASSWORD_ENV):
        await OpcUaDriver(config).connect()


async def test_a_supervisor_publishes_the_press_and_confirms_a_write_by_read_back(
    simulator: OpcUaSimulator, press: OpcUaDevice
) -> None:
    sink = RecordingSink()
    policy = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)
    supervisor = DeviceSupervisor(press, OpcUaDriver(press), sink, policy=policy)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: len(sink.batches) >= 2)
        assert sample(sink.batches[-1], "speed") == (float(STEADY_RPM), Quality.GOOD)
        assert {s.tag for s in sink.batches[-1].samples} == {t.name for t in press.tags}

        request = WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=1500)
        reply = await supervisor.submit_write(request)

        assert (reply.ok, reply.read_back) == (True, 1500)
        assert simulator.model.speed_setpoint == 1500
        await until(lambda: sample(sink.batches[-1], "speed_setpoint") == (1500, Quality.GOOD))
    finally:
        task.cancel()
        await asyncio.wait({task})


def sample(batch: TelemetryBatch, name: str) -> tuple[object, Quality]:
    (found,) = [s for s in batch.samples if s.tag == name]
    return found.value, found.quality


async def test_a_write_the_server_answers_too_late_is_an_unknown_outcome_though_it_applied_it(
    simulator: OpcUaSimulator, pki: Pki
) -> None:
    config = press_config(simulator, pki, timeout_seconds=1.0)
    policy = SupervisionPolicy(poll_seconds=0.1)
    supervisor = DeviceSupervisor(config, OpcUaDriver(config), RecordingSink(), policy=policy)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: supervisor.state is ConnectionState.CONNECTED)
        simulator.hang()  # the write waits, unread, on the open connection
        try:
            request = WriteRequest(tag="speed_setpoint", command_id=unique("cmd"), value=1700)
            reply = await supervisor.submit_write(request)
        finally:
            simulator.resume()

        assert (reply.ok, reply.kind) == (False, WriteErrorKind.OUTCOME_UNKNOWN), reply
        # The server reads the write it held and applies it: "write_failed" would be false.
        await until(lambda: simulator.model.speed_setpoint == 1700)
    finally:
        task.cancel()
        await asyncio.wait({task})
