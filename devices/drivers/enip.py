"""EtherNet/IP driver for Allen-Bradley Logix controllers, on pycomm3's ``LogixDriver``.

pycomm3 is blocking, so each driver owns one worker thread and runs every call of
its connection there, one at a time: a stalled controller holds only its own
thread (``timeout_seconds`` per request), never the event loop nor another device.
The thread is started by :meth:`EnipDriver.connect` and ends with
:meth:`EnipDriver.close`.

The tag types come from the plant file (:mod:`plantfile.protocols.enip`) rather than
from uploading the controller's tag database on connect, which takes long on a
large program and which simple EtherNet/IP servers do not offer. Writes are
encoded with the declared type, and every read reply is checked against it.

One read request covers every tag (pycomm3 packs them into Multiple Service
Packets); a tag the controller refuses (unknown, or of another type than declared)
reads bad while the others read good; it is logged when it starts failing and
again when it reads (with how often it failed), not at every poll. A socket
failure is a lost connection and raises :class:`DeviceConnectionError`; the
driver never reconnects.

A write is refused (:class:`DeviceRequestError`) when the controller answers
it with an error status (a CIP general status such as "invalid attribute
value" or "not settable"), or when pycomm3 never sends it (a value it cannot
encode). A reply that cannot be parsed raises :class:`WriteOutcomeUnknown`
(:func:`write_unconfirmed`), and a timeout, being a socket failure, is a lost
connection: either way the controller may have written the value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pycomm3 import LogixDriver
from pycomm3.cip import UINT, DataTypes
from pycomm3.exceptions import CommError, PycommError, RequestError
from pycomm3.packets.base import RequestPacket, ResponsePacket
from pycomm3.packets.logix import (
    MultiServiceResponsePacket,
    ReadTagFragmentedResponsePacket,
    ReadTagResponsePacket,
    WriteTagRequestPacket,
    WriteTagResponsePacket,
)
from pycomm3.tag import Tag

from devices.device_errors import DeviceConnectionError, DeviceRequestError, WriteOutcomeUnknown
from devices.driver import BAD_READING, Reading, TagIndex
from domain.messages import Quality
from plantfile.protocols.enip import (
    LOGIX_TYPES,
    EnipConnection,
    EnipDevice,
    EnipTag,
    check_declarations,
    declared_path,
)
from plantfile.tags import RawValue, TagConfig
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

T = TypeVar("T")

_TYPE_NAMES = {DataTypes[name].code: name for name in LOGIX_TYPES.values()}


class UnconfirmedWrite(Exception):
    """A write went out and its reply says neither that the controller wrote nor that it
    refused. Not one of pycomm3's errors, which its ``write`` would turn into a tag's error."""


class LogixClient(LogixDriver):
    """pycomm3's ``LogixDriver`` reading and writing declared tags, with two corrections.

    - Tag types come from ``declarations`` (declared path → Logix type), not from an
      upload of the controller's tag list (``init_tags=False``).
    - pycomm3 1.2.16 sends a write of one tag with a second copy of the request
      appended to its value; :meth:`_write_build_single_request` sends it once.

    Reply types are checked in :meth:`send`, since pycomm3 decodes a reply with the
    declared type whatever the controller says it holds, and so are write replies that
    confirm nothing (:class:`UnconfirmedWrite`), which pycomm3 reports as a refusal.
    """

    def __init__(self, connection: EnipConnection, declarations: Mapping[str, str]) -> None:
        super().__init__(connection.path, init_tags=False)
        self.socket_timeout = connection.timeout_seconds
        self._declared = {path: _tag_info(path, logix) for path, logix in declarations.items()}

    def _get_tag_info(self, base: str, attrs: list[str]) -> dict[str, Any]:
        """pycomm3's look-up of a tag's definition, answered from the declarations."""
        path = declared_path(".".join([base, *attrs]))
        try:
            return self._declared[path]
        except KeyError:
            raise RequestError(f"tag {path} is not declared") from None

    def _write_build_single_request(self, parsed_tag: dict[str, Any]) -> RequestPacket | None:
        # Upstream builds the message of a single write to measure it, then re-arms the
        # packet (``_msg_setup = False``) without emptying its parts: sending builds it
        # again and appends a second sequence number and write request after the value.
        build = super()._write_build_single_request  # unannotated upstream
        request: RequestPacket | None = build(parsed_tag)  # type: ignore[no-untyped-call]
        if isinstance(request, WriteTagRequestPacket) and not request._msg_setup:
            request._msg.clear()
        return request

    def send(self, request: RequestPacket) -> ResponsePacket:
        response: ResponsePacket = super().send(request)
        if isinstance(response, WriteTagResponsePacket) and write_unconfirmed(response):
            raise UnconfirmedWrite(response.error)
        replies = [response]
        if isinstance(response, MultiServiceResponsePacket):
            replies = response.responses
        for reply in replies:
            if isinstance(reply, ReadTagResponsePacket) and reply:
                _check_reply_type(reply)
        return response

    def drop(self) -> None:
        """Close the socket of a lost connection, skipping the Forward Close and Unregister
        Session that a dead peer cannot answer (pycomm3 would log their failure as an error)."""
        self._target_is_connected = False
        self._session = 0
        self.close()  # type: ignore[no-untyped-call]  # unannotated upstream


def _tag_info(path: str, logix_type: str) -> dict[str, Any]:
    """A declared atomic tag in the shape of pycomm3's uploaded tag definitions."""
    return {
        "tag_name": path,
        "tag_type": "atomic",
        "data_type": logix_type,
        "data_type_name": logix_type,
        "type_class": DataTypes[logix_type],
        "dim": 0,
        "dimensions": [0, 0, 0],
        "alias": False,
    }


def write_unconfirmed(reply: WriteTagResponsePacket) -> bool:
    """Whether a write's reply leaves what the controller did unknown: the write was sent
    and the reply could not be parsed. A parsed reply that is not a success carries the
    status by which the controller refused; no reply means the request was never sent."""
    sent = reply.raw is not None
    parsed = reply._error is None and reply.command is not None
    return sent and not parsed and not reply.is_valid()


def _check_reply_type(reply: ReadTagResponsePacket) -> None:
    """Turn a read reply whose CIP type differs from the declared one into an error."""
    data: bytes = reply.data or b""
    if isinstance(reply, ReadTagFragmentedResponsePacket) or len(data) < 2:
        return
    declared = reply.tag_info["data_type_name"]
    actual: int = UINT.decode(data[:2])
    if actual != DataTypes[declared].code:
        holds = _TYPE_NAMES.get(actual, f"CIP type 0x{actual:04x}")
        # pycomm3 declares these attributes None and fills them in when it parses the reply.
        reply._error = f"the controller holds {holds}, the tag is declared {declared}"  # type: ignore[assignment]
        reply.value = None


class EnipDriver:
    def __init__(self, device: EnipDevice) -> None:
        self._device = device.id
        self._connection = device.enip
        self._tags = TagIndex(device.id, device.tags)
        self._declarations = check_declarations(device.tags)
        self._client: LogixClient | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._lost = False
        self._failing_reads = RepeatedLog(log, f"device {device.id}: read of")

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost

    async def connect(self) -> None:
        await self.close()
        conn = self._connection
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enip-{self._device}")
        self._client = client = LogixClient(conn, self._declarations)
        self._lost = False
        try:
            opened: bool = await self._in_worker(client.open)
        except PycommError as exc:
            self._lost = isinstance(exc, CommError)  # no goodbye on a broken socket
            await self.close()
            raise DeviceConnectionError(
                self._device, f"cannot connect to {conn.path}: {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        if not opened:
            await self.close()
            raise DeviceConnectionError(self._device, f"{conn.path} refused the session")

    async def close(self) -> None:
        client, worker, lost = self._client, self._worker, self._lost
        self._client, self._worker = None, None
        if worker is None:
            return
        # Queued behind any call still running, so the connection is never used by two calls.
        done = worker.submit(_release, self._device, client, lost)
        worker.shutdown(wait=False)  # its thread ends once the release has run
        await asyncio.shield(asyncio.wrap_future(done))

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        wanted = self._tags.resolve(tags)
        if not wanted:
            return {}
        client = self._require_client()
        names = [tag.tag for tag in wanted]
        where = f"tags {','.join(tag.name for tag in wanted)}"
        try:
            answer = await self._request("read", lambda: client.read(*names))
        except DeviceRequestError as exc:
            self._failing_reads.happened(where, exc.reason)
            return dict.fromkeys((tag.name for tag in wanted), BAD_READING)
        self._failing_reads.ended(where)
        results = answer if isinstance(answer, list) else [answer]
        return {
            tag.name: self._reading(tag, result)
            for tag, result in zip(wanted, results, strict=True)
        }

    async def write(self, neutral: TagConfig, value: RawValue) -> None:
        tag = self._tags[neutral]
        client = self._require_client()
        what = f"write {tag.name} ({tag.tag})"
        try:
            answer = await self._request(what, lambda: client.write(tag.tag, _encode(tag, value)))
        except UnconfirmedWrite as exc:
            raise WriteOutcomeUnknown(self._device, f"{what}: {exc}") from exc
        if not isinstance(answer, Tag):
            raise WriteOutcomeUnknown(self._device, f"{what}: no result")
        if answer.error is not None:
            raise DeviceRequestError(self._device, f"{what}: {answer.error}")

    def _reading(self, tag: EnipTag, result: Tag) -> Reading:
        raw = _decode(tag, result.value) if result.error is None else None
        where = f"tag {tag.name} ({tag.tag})"
        if raw is None:
            reason = result.error or f"unexpected value {result.value!r}"
            self._failing_reads.happened(where, reason)
            return BAD_READING
        self._failing_reads.ended(where)
        return Reading(raw, Quality.GOOD)

    async def _request(self, what: str, call: Callable[[], T]) -> T:
        """Run one pycomm3 call in the worker, translating its failures into the device errors."""
        try:
            return await self._in_worker(call)
        except CommError as exc:
            self._lost = True
            raise DeviceConnectionError(self._device, f"{what}: connection lost: {exc}") from exc
        except PycommError as exc:
            raise DeviceRequestError(self._device, f"{what}: {exc}") from exc

    async def _in_worker(self, call: Callable[[], T]) -> T:
        if self._worker is None:
            raise DeviceConnectionError(self._device, "not connected")
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)

    def _require_client(self) -> LogixClient:
        if self._client is None or self._lost:
            raise DeviceConnectionError(self._device, "not connected")
        return self._client


def _release(device: str, client: LogixClient | None, lost: bool) -> None:
    """Close the connection in the worker thread, saying goodbye unless it is already gone."""
    if client is None:
        return
    try:
        if lost:
            client.drop()
        else:
            client.close()  # type: ignore[no-untyped-call]  # unannotated upstream
    except PycommError as exc:
        log.info("device %s: connection closed uncleanly: %s", device, exc)


def _encode(tag: EnipTag, raw: RawValue) -> RawValue:
    """The Python value pycomm3 encodes as the tag's declared Logix type."""
    if tag.type == "bool":
        return bool(raw)
    if tag.type in ("float32", "float64"):
        return float(raw)
    return int(raw)


def _decode(tag: EnipTag, value: object) -> RawValue | None:
    """The raw value of a reply already checked to hold the declared type, else None."""
    if tag.type == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if tag.type in ("float32", "float64"):
        return float(value)
    return value if isinstance(value, int) else None
