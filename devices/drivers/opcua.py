"""OPC UA driver on asyncua's ``Client``: one secure session, one subscription.

Connecting, in this order, so that nothing of ours reaches an untrusted server:

1. GetEndpoints over an unsecured channel (the discovery the standard provides
   for this) and pick the endpoint with the configured policy and mode. A server
   without it is refused: nothing is ever downgraded.
2. The certificate that endpoint presents must be one of the trust list (each
   trusted certificate is pinned: the server presents exactly that one) and be
   within its validity period; otherwise :class:`DeviceConnectionError` says why.
3. Secure channel and session, signed with the client certificate. asyncua then
   checks that the session's server certificate is the one from step 2 and that
   the server proves it holds its key.
4. One subscription, at the configured publishing interval, monitors every tag
   with ``subscribe: true``; each data change replaces the tag's latest value
   and quality in memory (a bad StatusCode makes it bad).

``read`` answers subscribed tags from memory. A tag is read from the server
(all such tags in one Read request) when it is polled (``subscribe: false``),
when its node could not be monitored, when it has not been notified yet, and
once after each write to it, so a read-back never returns a value from before
the write. Latest values are ordered by their source (else server) timestamp:
a notification older than what a direct read returned does not replace it.

A node the server does not have, a bad or uncertain status, or a value whose
type does not fit the tag makes that tag's reading bad or uncertain, never an
exception; it is logged when it starts and again when the tag reads good (with
how often it was not), and so is a failed read request, not at every poll. A
lost session (socket closed, keep-alive probe failed, a service fault saying
the session or channel is gone, subscription ended by the server) raises
:class:`DeviceConnectionError` from the next read or write: a value in memory
is only served while the session that delivered it lives. asyncua's own
reconnect is off; after ``close()`` and ``connect()`` the subscription is
created anew.

A write is refused (:class:`DeviceRequestError`) only by a status that says
the server did not write (:data:`WRITE_REFUSALS`: an unknown node, a value out
of range or of another type, no access, ...). A write left without an answer in
time, or answered with any other bad status (``BadTimeout`` or
``BadCommunicationError`` from a server in front of a device, an uncertain
status, ...), raises :class:`WriteOutcomeUnknown`: the value may have been
written. A lost session raises :class:`DeviceConnectionError`, as for a read.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from devices.device_errors import DeviceConnectionError, DeviceRequestError, WriteOutcomeUnknown
from devices.driver import BAD_READING, Reading, TagIndex
from domain.messages import Quality
from plantfile.protocols.opcua import VARIANT_TYPES, OpcUaDevice, OpcUaTag
from plantfile.tags import FLOAT32_MAX, INTEGER_RANGES, RawValue, TagConfig
from support.repeated_log import RepeatedLog
from support.secret_source import SecretSourceError, device_secret

log = logging.getLogger(__name__)

_POLICY_URIS = {
    "Basic256Sha256": SecurityPolicyBasic256Sha256.URI,
    "None": "http://opcfoundation.org/UA/SecurityPolicy#None",
}
_MODES = {
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
    "Sign": ua.MessageSecurityMode.Sign,
}
_CERTIFICATE_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})
_APPLICATION_URI = "urn:plantcore:client"
# The server drops the session this long after the client vanished without closing it.
_SESSION_TIMEOUT_MS = 60_000
_CONNECTION_ERRORS = (OSError, TimeoutError, UaError)
# Service faults that mean the session is gone even if the socket is still open.
_SESSION_GONE = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadNotConnected,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadServerHalted,
        StatusCodes.BadShutdown,
    }
)

# The statuses by which a server says it did not write (OPC UA Part 4: the Write
# service's results and the service results common to every request).
WRITE_REFUSALS = frozenset(
    {
        StatusCodes.BadNodeIdInvalid,
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadAttributeIdInvalid,
        StatusCodes.BadIndexRangeInvalid,
        StatusCodes.BadIndexRangeNoData,
        StatusCodes.BadDataEncodingInvalid,
        StatusCodes.BadDataEncodingUnsupported,
        StatusCodes.BadNotWritable,
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadOutOfRange,
        StatusCodes.BadTypeMismatch,
        StatusCodes.BadWriteNotSupported,
        StatusCodes.BadNotSupported,
        StatusCodes.BadLocked,
        StatusCodes.BadNothingToDo,
        StatusCodes.BadTooManyOperations,
        StatusCodes.BadServiceUnsupported,
        StatusCodes.BadRequestTooLarge,
        StatusCodes.BadEncodingLimitsExceeded,
        StatusCodes.BadSecurityChecksFailed,
    }
)
# A status code's upper 16 bits name it; the lower ones carry flags.
_STATUS_NAME_BITS = 0xFFFF0000

LostCallback = Callable[[Exception], Coroutine[Any, Any, None]]


class _Latest(NamedTuple):
    reading: Reading
    stamp: datetime | None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """The client's identity (DER) and the certificates it trusts, read at each connect."""

    certificate: bytes
    private_key: bytes
    application_uri: str
    trusted: tuple[x509.Certificate, ...]


class _Notifications:
    """asyncua's subscription handler, bound to one session.

    asyncua delivers notifications from tasks, which may run after the session
    they belong to was closed: ``active`` is cleared on close so that a late one
    never lands in the next session's values.
    """

    def __init__(self, driver: OpcUaDriver) -> None:
        self._driver = driver
        self.active = True

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        if self.active:
            self._driver._on_data_change(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        if self.active and not status.Status.is_good():
            self._driver._on_session_lost(f"subscription ended: {status.Status.name}")


class OpcUaDriver:
    def __init__(self, device: OpcUaDevice) -> None:
        self._device = device.id
        self._connection = device.opcua
        self._tags = TagIndex(device.id, device.tags)
        self._node_ids = {tag.name: ua.NodeId.from_string(tag.node_id) for tag in device.tags}
        self._at_node: dict[ua.NodeId, list[OpcUaTag]] = {}
        for tag in device.tags:
            if tag.subscribe:
                self._at_node.setdefault(self._node_ids[tag.name], []).append(tag)
        self._client: Client | None = None
        self._handler: _Notifications | None = None
        self._lost: str | None = None
        self._monitored: set[str] = set()  # subscribed tags whose monitored item exists
        self._latest: dict[str, _Latest] = {}
        self._read_back: set[str] = set()  # written since their last direct read
        self._failing_reads = RepeatedLog(log, f"device {device.id}: read of")

    @property
    def connected(self) -> bool:
        client = self._client
        return (
            client is not None
            and self._lost is None
            and client.uaclient.state is UaClientState.CONNECTED
        )

    async def connect(self) -> None:
        await self.close()
        conn = self._connection
        # asyncua's keep-alive reads the server state every watchdog_intervall seconds, with
        # that as its timeout: a server silent for timeout_seconds is lost within twice that.
        client = Client(
            conn.endpoint, timeout=conn.timeout_seconds, watchdog_intervall=conn.timeout_seconds
        )
        client.name = client.description = f"plantcore {self._device}"
        client.application_uri = _APPLICATION_URI
        client.session_timeout = _SESSION_TIMEOUT_MS
        if conn.username is not None and conn.password_env is not None:
            client.set_user(conn.username)
            client.set_password(self._password(conn.username, conn.password_env))
        await self._secure(client)
        try:
            await client.connect()
        except _CONNECTION_ERRORS as exc:
            raise self._refused(f"no session with {conn.endpoint}: {_reason(exc)}") from exc
        except asyncio.CancelledError:
            client.disconnect_socket()  # asyncua cleans up after errors, not after a cancel
            raise
        client.connection_lost_callback = self._connection_lost_callback(client)
        self._client = client
        try:
            await self._subscribe(client)
        except _CONNECTION_ERRORS as exc:
            await self.close()
            raise self._refused(f"subscription refused: {_reason(exc)}") from exc
        security = f"{conn.security_policy} {conn.security_mode}" if conn.secure else "unsecured"
        log.info(
            "device %s: %s session with %s, %d of %d tags monitored",
            self._device, security, conn.endpoint, len(self._monitored), len(self._node_ids),
        )  # fmt: skip

    async def close(self) -> None:
        client, self._client = self._client, None
        lost = self._lost is not None
        if self._handler is not None:
            self._handler.active = False
            self._handler = None
        self._lost = None
        self._monitored.clear()
        self._latest.clear()
        self._read_back.clear()
        if client is None:
            return
        client.connection_lost_callback = None
        protocol = client.uaclient.protocol
        if (lost or client.uaclient.state is not UaClientState.CONNECTED) and protocol is not None:
            # Lost: drop the socket first, so closing never waits on a server that stopped
            # answering. asyncua's disconnect_socket() does nothing once its keep-alive marked
            # the client disconnected, hence the transport itself; one turn of the loop lets
            # asyncio report the closed socket, after which disconnect() sends nothing.
            if protocol.transport is not None:
                protocol.transport.abort()
            await asyncio.sleep(0)
        try:
            # Closing the session deletes its subscription on the server as well.
            await client.disconnect()
        except _CONNECTION_ERRORS as exc:
            log.debug("device %s: closing the session failed: %s", self._device, _reason(exc))

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        client = self._session()
        readings: dict[str, Reading] = {}
        direct: list[OpcUaTag] = []
        for tag in self._tags.resolve(tags):
            latest = self._latest.get(tag.name)
            if latest is None or tag.name not in self._monitored or tag.name in self._read_back:
                direct.append(tag)
            else:
                readings[tag.name] = latest.reading
        if direct:
            readings.update(await self._read_directly(client, direct))
        return readings

    async def write(self, neutral: TagConfig, value: RawValue) -> None:
        tag = self._tags[neutral]
        client = self._session()
        what = f"write {tag.name} ({tag.node_id})"
        variant = ua.Variant(
            _variant_value(tag, value), getattr(ua.VariantType, VARIANT_TYPES[tag.type])
        )
        node_id = self._node_ids[tag.name]
        # Whatever the outcome, the values in memory of this node may predate the write.
        self._read_back.update(name for name, other in self._node_ids.items() if other == node_id)
        try:
            (status,) = await client.uaclient.write_attributes(
                [node_id], [ua.DataValue(Value=variant)], AttributeIds.Value
            )
        except UaStatusCodeError as exc:
            self._raise_if_session_gone(exc)
            raise self._failed_write(what, ua.StatusCode(exc.code)) from exc
        except (UaError, OSError, TimeoutError) as exc:
            # Sent, and no answer that says what the server did with it.
            self._raise_if_session_gone(exc)
            raise WriteOutcomeUnknown(self._device, f"{what}: {_reason(exc)}") from exc
        if not status.is_good():
            raise self._failed_write(what, status)

    # -- connecting ----------------------------------------------------------------------

    async def _secure(self, client: Client) -> None:
        """Choose the configured endpoint and, for a secure one, check the server's certificate."""
        conn = self._connection
        credentials = self._credentials() if conn.secure else None
        if credentials is not None:
            client.application_uri = credentials.application_uri
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except _CONNECTION_ERRORS as exc:
            raise self._refused(f"cannot reach {conn.endpoint}: {_reason(exc)}") from exc
        endpoint = self._matching_endpoint(endpoints)
        if credentials is None:
            return
        try:
            presented = x509.load_der_x509_certificate(
                _leading_der(endpoint.ServerCertificate or b"")
            )
        except ValueError as exc:
            raise self._refused("the server presents no readable certificate") from exc
        problem = _trust_problem(presented, credentials.trusted)
        if problem is not None:
            raise self._refused(f"server certificate {_describe(presented)} refused: {problem}")
        try:
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=credentials.certificate,
                private_key=credentials.private_key,
                server_certificate=presented.public_bytes(serialization.Encoding.DER),
                mode=_MODES[conn.security_mode],
            )
        except (ValueError, UaError) as exc:
            raise self._refused(f"cannot set up {conn.security_policy}: {_reason(exc)}") from exc

    def _matching_endpoint(
        self, endpoints: Sequence[ua.EndpointDescription]
    ) -> ua.EndpointDescription:
        conn = self._connection
        uri = _POLICY_URIS[conn.security_policy]
        mode = _MODES[conn.security_mode] if conn.secure else ua.MessageSecurityMode.None_
        for endpoint in endpoints:
            if endpoint.SecurityPolicyUri == uri and endpoint.SecurityMode == mode:
                return endpoint
        offered = sorted(
            _security_name(e.SecurityPolicyUri or "", e.SecurityMode) for e in endpoints
        )
        raise self._refused(
            f"the server offers no {_security_name(uri, mode)} endpoint"
            f" (it offers: {', '.join(offered) or 'none'})"
        )

    def _credentials(self) -> _Credentials:
        """Read the client certificate, key and trust list (a few kB of local files).

        Read at every connect, synchronously: small local files, and a renewed
        certificate takes effect at the next reconnect without a restart.
        """
        conn = self._connection
        # OpcUaConnection requires both whenever the policy is not "None".
        assert conn.certificate is not None
        assert conn.private_key is not None
        try:
            certificate = _load_certificates(conn.certificate)[0]
            key = _load_private_key(conn.private_key)
            trusted = tuple(
                cert for path in _trust_files(conn.trusted_server_certificates)
                for cert in _load_certificates(path)
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            raise self._refused(str(exc)) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise self._refused(f"{conn.private_key}: {conn.security_policy} needs an RSA key")
        if key.public_key() != certificate.public_key():
            raise self._refused(f"{conn.private_key} is not the key of {conn.certificate}")
        if not trusted:
            raise self._refused("trusted_server_certificates holds no certificate")
        return _Credentials(
            certificate=certificate.public_bytes(serialization.Encoding.DER),
            private_key=key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            application_uri=_application_uri(certificate) or _APPLICATION_URI,
            trusted=trusted,
        )

    def _password(self, username: str, variable: str) -> str:
        try:
            password = device_secret(variable)
        except SecretSourceError as exc:
            raise self._refused(f"the password of user {username}: {exc}") from exc
        if not password:
            raise self._refused(f"the password of user {username} is not in ${variable}")
        return password

    async def _subscribe(self, client: Client) -> None:
        """One subscription for every subscribed tag; a node that cannot be monitored is polled."""
        if not self._at_node:
            return
        handler = _Notifications(self)
        self._handler = handler
        subscription = await client.create_subscription(
            self._connection.publishing_interval_ms, handler
        )
        node_ids = list(self._at_node)
        results = await subscription.subscribe_data_change(
            [client.get_node(node_id) for node_id in node_ids],
            sampling_interval=ua.Double(self._connection.publishing_interval_ms),
        )
        for node_id, result in zip(node_ids, results, strict=True):
            tags = self._at_node[node_id]
            if isinstance(result, ua.StatusCode):
                log.warning(
                    "device %s: tag %s (%s) cannot be monitored: %s; read at every poll instead",
                    self._device, ",".join(tag.name for tag in tags), tags[0].node_id, result.name,
                )  # fmt: skip
            else:
                self._monitored.update(tag.name for tag in tags)

    def _connection_lost_callback(self, client: Client) -> LostCallback:
        async def lost(exc: Exception) -> None:
            if client is self._client:
                self._on_session_lost(f"session lost: {_reason(exc)}")

        return lost

    # -- reading -------------------------------------------------------------------------

    async def _read_directly(self, client: Client, tags: list[OpcUaTag]) -> dict[str, Reading]:
        """Read ``tags`` in one request; a failed request makes them bad, a lost session raises."""
        node_ids = [self._node_ids[tag.name] for tag in tags]
        where = f"tags {','.join(tag.name for tag in tags)}"
        try:
            values = await client.uaclient.read_attributes(node_ids, AttributeIds.Value)
        except (UaStatusCodeError, OSError, TimeoutError) as exc:
            self._raise_if_session_gone(exc)
            self._failing_reads.happened(where, _reason(exc))
            return {tag.name: BAD_READING for tag in tags}
        self._failing_reads.ended(where)
        readings: dict[str, Reading] = {}
        for tag, value in zip(tags, values, strict=True):
            readings[tag.name] = self._reading(tag, value)
            if tag.name in self._monitored:
                self._read_back.discard(tag.name)
                self._remember(tag.name, readings[tag.name], value)
        return readings

    def _on_data_change(self, node_id: ua.NodeId, value: ua.DataValue) -> None:
        for tag in self._at_node.get(node_id, ()):
            self._remember(tag.name, self._reading(tag, value), value)

    def _remember(self, name: str, reading: Reading, value: ua.DataValue) -> None:
        stamp = value.SourceTimestamp or value.ServerTimestamp
        held = self._latest.get(name)
        if held is not None and held.stamp is not None and stamp is not None and stamp < held.stamp:
            return  # a notification overtaken by a direct read
        self._latest[name] = _Latest(reading, stamp)

    def _reading(self, tag: OpcUaTag, value: ua.DataValue) -> Reading:
        status = value.StatusCode
        if status is not None and status.is_bad():
            return self._not_good(tag, BAD_READING, status.name)
        if status is not None and status.is_uncertain():
            return self._not_good(tag, Reading(None, Quality.UNCERTAIN), status.name)
        variant = value.Value
        raw = _fit(tag, None if variant is None else variant.Value)
        if raw is None:
            kind = variant.VariantType.name if variant is not None else "no value"
            shown = variant.Value if variant is not None else None
            return self._not_good(tag, BAD_READING, f"{kind} {shown!r} does not fit {tag.type}")
        self._failing_reads.ended(_tag_key(tag))
        return Reading(raw, Quality.GOOD)

    def _not_good(self, tag: OpcUaTag, reading: Reading, reason: str) -> Reading:
        self._failing_reads.happened(_tag_key(tag), f"{reading.quality}: {reason}")
        return reading

    # -- the session ---------------------------------------------------------------------

    def _session(self) -> Client:
        """The live session's client, or :class:`DeviceConnectionError` saying why there is none."""
        client = self._client
        if client is None:
            raise DeviceConnectionError(self._device, "not connected")
        if self._lost is None and client.uaclient.state is not UaClientState.CONNECTED:
            self._lost = "session lost: connection closed"
        if self._lost is not None:
            raise DeviceConnectionError(self._device, self._lost)
        return client

    def _raise_if_session_gone(self, failure: Exception) -> None:
        """After a failed request: :class:`DeviceConnectionError` if the session went with it."""
        if isinstance(failure, UaStatusCodeError) and failure.code in _SESSION_GONE:
            self._on_session_lost(f"session lost: {_reason(failure)}")
        self._session()

    def _on_session_lost(self, reason: str) -> None:
        if self._lost is None:
            log.warning("device %s: %s", self._device, reason)
            self._lost = reason

    def _refused(self, reason: str) -> DeviceConnectionError:
        return DeviceConnectionError(self._device, reason)

    def _failed_write(
        self, what: str, status: ua.StatusCode
    ) -> DeviceRequestError | WriteOutcomeUnknown:
        reason = f"{what}: {status.name}"
        if write_refused(status):
            return DeviceRequestError(self._device, reason)
        return WriteOutcomeUnknown(self._device, reason)


# -- values -------------------------------------------------------------------------------


def write_refused(status: ua.StatusCode) -> bool:
    """Whether a server answering a write with ``status`` says it did not write."""
    return (status.value & _STATUS_NAME_BITS) in WRITE_REFUSALS


def _tag_key(tag: OpcUaTag) -> str:
    return f"tag {tag.name} ({tag.node_id})"


def _fit(tag: TagConfig, value: object) -> RawValue | None:
    """The raw value if ``value`` fits the tag's data type, else None (no silent conversion)."""
    if tag.type == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if tag.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[tag.type]
        return value if isinstance(value, int) and low <= value <= high else None
    if tag.type == "float32" and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        return None
    return float(value)


def _variant_value(tag: TagConfig, value: RawValue) -> RawValue:
    if tag.type == "bool":
        return bool(value)
    if tag.type in INTEGER_RANGES:
        return int(value)
    return float(value)


def _security_name(policy_uri: str, mode: ua.MessageSecurityMode) -> str:
    policy = policy_uri.rpartition("#")[2]
    return "unsecured (None)" if mode == ua.MessageSecurityMode.None_ else f"{policy} {mode.name}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    if isinstance(exc, TimeoutError):
        return str(exc) or "no answer in time"
    return str(exc) or type(exc).__name__


# -- certificates -------------------------------------------------------------------------


def _trust_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in _CERTIFICATE_SUFFIXES)
            )
        else:
            files.append(path)
    return files


def _load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a DER file or a PEM file (which may hold several)."""
    data = _read(path)
    try:
        if _is_pem(data):
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError(f"{path} holds no readable X.509 certificate") from None


def _load_private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path)
    try:
        if _is_pem(data):
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path} holds no readable unencrypted private key") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN")


def _leading_der(blob: bytes) -> bytes:
    """The first certificate of a DER blob, which servers may send with its chain appended.

    A certificate is one DER SEQUENCE: a tag byte, then its length, in one byte
    below 0x80 or else in the next ``byte & 0x7F`` bytes.
    """
    if len(blob) < 2:
        return blob
    if blob[1] < 0x80:
        return blob[: 2 + blob[1]]
    width = blob[1] & 0x7F
    return blob[: 2 + width + int.from_bytes(blob[2 : 2 + width], "big")]


def _trust_problem(presented: x509.Certificate, trusted: Sequence[x509.Certificate]) -> str | None:
    if presented not in trusted:
        return "it is not in the trust list"
    now = datetime.now(UTC)
    if not presented.not_valid_before_utc <= now <= presented.not_valid_after_utc:
        return (
            f"it is valid only from {presented.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {presented.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    return None


def _describe(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else certificate.subject.rfc4514_string()
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":")
    return f"'{name}' (SHA-256 {fingerprint})"


def _application_uri(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
