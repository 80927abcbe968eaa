"""The press as an OPC UA server (asyncua), for the demo and the integration tests.

Address space: an object ``Press`` in namespace 2 (``urn:plantcore:simulators:press``)
with one variable per value of the :class:`~simulators.model.PressModel`, listed
in :data:`PRESS_VARIABLES` as the tags a plant file declares for them:

==================================  =======  ==============================  =====
node id                             type     access                          unit
==================================  =======  ==============================  =====
``ns=2;s=Press.running``            Boolean  read, write                     -
``ns=2;s=Press.speed_setpoint``     UInt16   read, write (0 to 3000)         rpm
``ns=2;s=Press.speed``              Double   read                            rpm
``ns=2;s=Press.motor_temperature``  Double   read                            °C
``ns=2;s=Press.produced_count``     Int32    read (wraps at 2^31, as the     parts
                                             model's counter does)
==================================  =======  ==============================  =====

A tick task steps the model every ``tick_seconds`` and writes the values that
changed, stamped with the time, so subscriptions see each change once.

Security: Basic256Sha256 endpoints, SignAndEncrypt and Sign (as PLC servers
commonly offer both), under the given server certificate; a NoSecurity
endpoint only with ``allow_no_security``. With
``trusted_clients`` only those client certificates may open a session (else
any). Sessions are anonymous, or user name and password when ``users`` names
them.

Writes: a value outside a variable's limits is refused with BadOutOfRange (as a
PLC refuses it), a value of another type with BadTypeMismatch, a write to a
read-only variable with BadUserAccessDenied (asyncua's answer for a session
without write access); an accepted write to ``running`` or ``speed_setpoint``
is applied to the model. ``reads`` counts the clients' Read requests per
variable, so tests can tell a subscription from polling, and
:meth:`OpcUaSimulator.channel_security` tells what each client negotiated.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.callback import CallbackService, CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import OPCUAProtocol
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plantfile.protocols.opcua import VARIANT_TYPES, OpcUaTag
from plantfile.tags import RawValue, to_raw
from simulators.certificates import ApplicationCertificate, ensure_application_certificate
from simulators.lifecycle import Simulator
from simulators.model import Point, PressModel, press_model

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:plantcore:simulators:press"
NAMESPACE_INDEX = 2  # the first namespace a server registers after its own
ENDPOINT_PATH = "/plantcore/press"
SERVER_APPLICATION_URI = "urn:plantcore:simulators:press-server"
CLIENT_APPLICATION_URI = "urn:plantcore:client"


Variable = Point[OpcUaTag]


def _node(name: str) -> str:
    return f"ns={NAMESPACE_INDEX};s=Press.{name}"


PRESS_VARIABLES: tuple[Variable, ...] = (
    Variable(OpcUaTag(name="running", node_id=_node("running"), type="bool", writable=True), True),
    Variable(
        OpcUaTag(
            name="speed_setpoint",
            node_id=_node("speed_setpoint"),
            type="uint16",
            unit="rpm",
            writable=True,
            low=0,
            high=3000,
        ),
        1200,
    ),
    Variable(OpcUaTag(name="speed", node_id=_node("speed"), type="float64", unit="rpm"), 0.0),
    Variable(
        OpcUaTag(
            name="motor_temperature", node_id=_node("motor_temperature"), type="float64", unit="°C"
        ),
        20.0,
    ),
    Variable(
        OpcUaTag(
            name="produced_count", node_id=_node("produced_count"), type="int32", unit="parts"
        ),
        0,
    ),
)


class OpcUaSimulator(Simulator):
    """``async with OpcUaSimulator(certificate=..., port=...) as sim``; ``sim.model`` is the press.

    It can be stopped and started again on the same port (the model keeps its
    state, the server its certificate), which is how tests cut and restore a
    device's connection.
    """

    def __init__(
        self,
        *,
        certificate: ApplicationCertificate,
        host: str = "127.0.0.1",
        port: int = 4840,
        model: PressModel | None = None,
        variables: Sequence[Variable] = PRESS_VARIABLES,
        tick_seconds: float = 0.1,
        allow_no_security: bool = False,
        trusted_clients: Sequence[Path] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.application_uri = certificate.application_uri
        self._variables = tuple(variables)
        self._by_node = {ua.NodeId.from_string(v.tag.node_id): v for v in self._variables}
        self._tick_seconds = tick_seconds
        self._allow_no_security = allow_no_security
        self._users = dict(users or {})
        # Read once here: a restart must present the same certificate.
        self._certificate = _der(certificate.certificate.read_bytes())
        self._private_key = certificate.private_key.read_bytes()
        self._key_format = "pem" if _is_pem(self._private_key) else "der"
        self._trusted_clients = (
            None
            if trusted_clients is None
            else frozenset(_der(path.read_bytes()) for path in trusted_clients)
        )
        self.model = model or press_model(self._variables)
        self.reads: Counter[str] = Counter()
        self._published: dict[str, RawValue] = {}
        self._server: Server | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{ENDPOINT_PATH}"

    async def start(self) -> None:
        server = Server(user_manager=_Users(self._users))
        server.disable_clock()  # its 1 s loop would only delay stop()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("plantcore press simulator")
        await server.set_application_uri(self.application_uri)
        await server.load_certificate(self._certificate, "der")
        await server.load_private_key(self._private_key, None, self._key_format)
        policies = [
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
        ]
        if self._allow_no_security:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        tokens: list[type] = [ua.AnonymousIdentityToken]
        if self._users:
            tokens.append(ua.UserNameIdentityToken)
        server.set_identity_tokens(tokens)
        if self._trusted_clients is not None:
            server.set_certificate_validator(self._check_client)
        await self._add_press(server)
        server.subscribe_server_callback(CallbackType.PreRead, self._count_reads)
        server.subscribe_server_callback(CallbackType.PreWrite, self._check_write)
        server.subscribe_server_callback(CallbackType.PostWrite, self._apply_write)
        await server.start()
        self._server = server
        self._start_ticking(
            self.model, self._tick_seconds, self.publish, name=f"opcua-sim-{self.port}"
        )
        log.info("opcua simulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        await self._stop_ticking()
        if self._server is not None:
            # Closes the listener and every client connection.
            await self._server.stop()
            self._server = None

    async def _add_press(self, server: Server) -> None:
        index = await server.register_namespace(NAMESPACE_URI)
        if index != NAMESPACE_INDEX:
            raise RuntimeError(f"{NAMESPACE_URI} got namespace {index}, not {NAMESPACE_INDEX}")
        press = await server.nodes.objects.add_object(
            ua.NodeId.from_string(f"ns={index};s=Press"), ua.QualifiedName("Press", index)
        )
        outputs = self.model.outputs()
        for node_id, variable in self._by_node.items():
            tag = variable.tag
            raw = to_raw(tag, outputs[tag.name])
            node = await press.add_variable(
                node_id, ua.QualifiedName(tag.name, index), ua.Variant(raw, _variant_type(tag))
            )
            if tag.writable:
                await node.set_writable()
            self._published[tag.name] = raw

    def channel_security(self) -> list[str]:
        """``"<policy> <mode>"`` of every open client connection: what clients really negotiated."""
        # asyncua keeps the negotiated policy on each connection's processor only.
        processors = [client.processor for client in self._clients()]
        policies = [p._connection.security_policy for p in processors if p is not None]
        return [_security_name(policy.URI, policy.Mode) for policy in policies]

    def hang(self) -> None:
        """Stop answering on the open connections, leaving them open: a hung server, which
        clients can only notice by their keep-alive. :meth:`resume` undoes it."""
        for transport in self._transports():
            transport.pause_reading()

    def resume(self) -> None:
        for transport in self._transports():
            transport.resume_reading()

    def _clients(self) -> list[OPCUAProtocol]:
        if self._server is None or self._server.bserver is None:
            return []
        return list(self._server.bserver.clients)

    def _transports(self) -> list[asyncio.Transport]:
        transports = (client.transport for client in self._clients())
        return [t for t in transports if t is not None and not t.is_closing()]

    async def publish(self) -> None:
        """Write every value the model changed since the last tick (tests call it to apply
        a change of the model at once rather than at the next tick)."""
        server = self._server
        if server is None:
            return
        outputs = self.model.outputs()
        now = ua.DateTime.now(UTC)
        for node_id, variable in self._by_node.items():
            tag = variable.tag
            raw = to_raw(tag, outputs[tag.name])
            if self._published.get(tag.name) == raw:
                continue
            value = ua.DataValue(
                Value=ua.Variant(raw, _variant_type(tag)), SourceTimestamp=now, ServerTimestamp=now
            )
            await server.write_attribute_value(node_id, value)
            self._published[tag.name] = raw

    async def _check_client(
        self, certificate: x509.Certificate, _: ua.ApplicationDescription
    ) -> None:
        assert self._trusted_clients is not None  # only installed with a trust list
        if certificate.public_bytes(serialization.Encoding.DER) not in self._trusted_clients:
            raise ServiceError(StatusCodes.BadCertificateUntrusted)

    def _count_reads(self, event: ServerItemCallback, _: CallbackService) -> None:
        if not event.is_external:
            return
        for item in event.request_params.NodesToRead:
            variable = self._by_node.get(item.NodeId)
            if variable is not None and item.AttributeId == AttributeIds.Value:
                self.reads[variable.tag.name] += 1

    def _check_write(self, event: ServerItemCallback, _: CallbackService) -> None:
        """Refuse a Write request that would put a variable outside its limits.

        asyncua's hooks cannot answer one item of a request, so the whole request gets
        BadOutOfRange; drivers write one node per request, as PLC commands come one by one.
        """
        for item in event.request_params.NodesToWrite:
            variable = self._by_node.get(item.NodeId)
            variant = item.Value.Value
            if variable is None or item.AttributeId != AttributeIds.Value or variant is None:
                continue
            if variant.VariantType == _variant_type(variable.tag) and not _within(
                variable.tag, variant.Value
            ):
                raise ServiceError(StatusCodes.BadOutOfRange)

    def _apply_write(self, event: ServerItemCallback, _: CallbackService) -> None:
        if not event.is_external:
            return
        for item, status in zip(
            event.request_params.NodesToWrite, event.response_params, strict=True
        ):
            variable = self._by_node.get(item.NodeId)
            if variable is None or not variable.tag.writable or not status.is_good():
                continue
            value = item.Value.Value.Value
            self.model.set_input(variable.tag.name, value)
            self._published[variable.tag.name] = value


class _Users(UserManager):
    """Anonymous sessions, and the user names of ``passwords`` with their password."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._passwords = passwords

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User)
        expected = self._passwords.get(username)
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


def _variant_type(tag: OpcUaTag) -> ua.VariantType:
    variant_type: ua.VariantType = getattr(ua.VariantType, VARIANT_TYPES[tag.type])
    return variant_type


def _security_name(policy_uri: str, mode: ua.MessageSecurityMode) -> str:
    policy = policy_uri.rpartition("#")[2]
    return policy if mode == ua.MessageSecurityMode.None_ else f"{policy} {mode.name}"


def _within(tag: OpcUaTag, value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return (tag.low is None or value >= tag.low) and (tag.high is None or value <= tag.high)


def _is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN")


def _der(certificate: bytes) -> bytes:
    if _is_pem(certificate):
        return x509.load_pem_x509_certificate(certificate).public_bytes(serialization.Encoding.DER)
    return certificate


# -- the demo -----------------------------------------------------------------------------

SERVER_CERTIFICATE_NAME = "press-simulator"
CLIENT_CERTIFICATE_NAME = "plantcore-client"


def demo_certificates(cert_dir: Path) -> tuple[ApplicationCertificate, ApplicationCertificate]:
    """The demo's server and client certificates in ``cert_dir``, created on first use.

    The plant file's OPC UA device uses the client pair and trusts the server's
    certificate; both stay the same across restarts of the simulator.
    """
    server = ensure_application_certificate(
        cert_dir, SERVER_CERTIFICATE_NAME, SERVER_APPLICATION_URI, role="server"
    )
    client = ensure_application_certificate(
        cert_dir, CLIENT_CERTIFICATE_NAME, CLIENT_APPLICATION_URI, role="client"
    )
    return server, client


async def serve(host: str, port: int, cert_dir: Path) -> None:
    """Serve the demo press until cancelled, to the demo's client certificate only."""
    # Key generation takes a moment of CPU on first use: off the event loop.
    server_pair, client_pair = await asyncio.to_thread(demo_certificates, cert_dir)
    simulator = OpcUaSimulator(
        certificate=server_pair,
        host=host,
        port=port,
        trusted_clients=[client_pair.certificate],
    )
    async with simulator:
        log.info(
            "opcua simulator: clients use %s and %s, and trust %s",
            client_pair.certificate, client_pair.private_key, server_pair.certificate,
        )  # fmt: skip
        await asyncio.Event().wait()
