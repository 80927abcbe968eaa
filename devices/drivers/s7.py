"""Siemens S7 driver on python-snap7's ``Client`` (pure Python, blocking sockets).

One thread per device: the snap7 client blocks, so each driver owns a
single-thread executor, created by :meth:`S7Driver.connect` and shut down by
:meth:`S7Driver.close`, and runs every client call there, one after another.
The event loop only awaits that thread's futures, so a stalled PLC holds up its
own thread and nothing else; no call runs on the loop, nor on asyncio's shared
default executor where one stalled device could queue up the others.

Deadlines: every call is bounded by the device's ``timeout_seconds``. snap7
connects with a fixed 5 s socket timeout of its own, so when a call overruns
the driver shuts the client's socket down from the loop, which ends the
blocked call at once and frees the thread; once connected, the socket's own
timeout is set to ``timeout_seconds`` as well.

Reads are planned by :func:`plan_reads` (pure): the tags of one data block (or
of one of the M, I, Q areas) share one ``read_area`` request as long as their
span fits one PDU. A data block or area is contiguous memory, so the bytes
between two tags can always be read with them; the price is that a tag
addressed past the end of its block makes the tags read with it bad too, which
the log line naming them shows at once. A request the PLC refuses (a data
block that does not exist, an address past its end) makes only its own tags
bad, with that log line, written when the request starts failing and again
when it reads (with how often it failed), not at every poll; a lost socket
raises :class:`DeviceConnectionError`.
snap7 drops a connection after a receive timeout (a late answer would put its
stream out of step), so a timeout is a connection loss too, never one bad tag.

A bit is written with the bit transport size: the CPU changes that bit alone,
so the other bits of its byte, which the PLC program may be setting at the same
time, are never read and written back by the driver.

A write is refused (:class:`DeviceRequestError`) only by the CPU's answer that
it did not write (:func:`write_refused`: an error in the answer's header, or a
return code for the item). An answer snap7 cannot read raises
:class:`WriteOutcomeUnknown`, and a timeout, as above, is a lost connection:
either way the CPU may have written the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from typing import Any, TypeVar

import snap7
from snap7.error import (
    S7ConnectionError,
    S7Error,
    S7PacketLostError,
    S7ProtocolError,
    S7TimeoutError,
)
from snap7.type import Area as Snap7Area
from snap7.type import WordLen

from devices.device_errors import DeviceConnectionError, DeviceRequestError, WriteOutcomeUnknown
from devices.driver import BAD_READING, Reading, TagIndex
from domain.messages import Quality
from plantfile.protocols.s7 import (
    READ_ONLY_AREAS,
    Area,
    S7Connection,
    S7Device,
    S7Tag,
    decode,
    encode,
)
from plantfile.tags import RawValue, TagConfig
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

T = TypeVar("T")

# A read response spends 18 bytes of its PDU on headers; every S7 CPU accepts a
# PDU of at least 240 bytes, so 222 data bytes fit one request before connecting.
READ_OVERHEAD = 18
MAX_READ_BYTES = 240 - READ_OVERHEAD
# Long enough for a goodbye to the PLC; close() never waits longer for its thread.
CLOSE_SECONDS = 2.0

# How snap7 3.3 words the return code a CPU gives a written item other than success (0xFF).
_ITEM_REFUSED = re.compile(r"Write operation failed: .* \(0x[0-9a-f]{2}\)")

SNAP7_AREAS: dict[Area, Snap7Area] = {
    "DB": Snap7Area.DB, "M": Snap7Area.MK, "I": Snap7Area.PE, "Q": Snap7Area.PA,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReadRange:
    """One read request: ``size`` bytes from byte ``start`` of an area (and data block)."""

    area: Area
    db: int
    start: int
    size: int
    tags: tuple[S7Tag, ...]

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area == "DB" else self.area
        return f"{where} bytes {self.start}+{self.size}"


def plan_reads(tags: Sequence[S7Tag], max_bytes: int = MAX_READ_BYTES) -> list[ReadRange]:
    """Group tags into one request per data block or area, split where a span exceeds
    ``max_bytes``; a value is never split across two requests."""
    if max_bytes < 4:
        raise ValueError(f"max_bytes {max_bytes} cannot hold a double word")
    ranges: list[ReadRange] = []
    ordered = sorted(tags, key=lambda tag: (tag.location.area, tag.location.db, tag.location.byte))
    for (area, db), group in groupby(ordered, key=lambda tag: (tag.location.area, tag.location.db)):
        start, end, members = 0, 0, list[S7Tag]()
        for tag in group:
            location = tag.location
            if members and max(end, location.end) - start <= max_bytes:
                end = max(end, location.end)
                members.append(tag)
                continue
            if members:
                ranges.append(ReadRange(area, db, start, end - start, tuple(members)))
            start, end, members = location.byte, location.end, [tag]
        ranges.append(ReadRange(area, db, start, end - start, tuple(members)))
    return ranges


class S7Driver:
    """One S7 CPU; a new thread and snap7 client per connection, both gone after close."""

    def __init__(self, device: S7Device) -> None:
        self._device = device.id
        self._connection = device.s7
        self._tags = TagIndex(device.id, device.tags)
        self._thread: ThreadPoolExecutor | None = None
        self._client: snap7.Client | None = None  # used by the thread only, but for _shut()
        self._last_call: Future[Any] | None = None
        self._connected = False
        self._max_read_bytes = MAX_READ_BYTES
        self._failing_reads = RepeatedLog(log, f"device {device.id}: read of")

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        await self.close()
        conn = self._connection
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s7-{self._device}")
        self._client = snap7.Client()
        what = f"connect to {conn.host}:{conn.port} rack {conn.rack} slot {conn.slot}"
        try:
            pdu_length = await self._call(what, partial(_open, self._client, conn))
        except DeviceRequestError as exc:
            # The PLC answered but refused the session (wrong rack or slot, no PUT/GET).
            await self.close()
            raise DeviceConnectionError(self._device, exc.reason) from exc
        except BaseException:
            await self.close()
            raise
        self._max_read_bytes = max(4, pdu_length - READ_OVERHEAD)
        self._connected = True

    async def close(self) -> None:
        thread, client, last_call = self._thread, self._client, self._last_call
        self._thread, self._client, self._last_call = None, None, None
        self._connected = False
        if thread is None or client is None:
            return
        if last_call is not None and not last_call.done():
            _shut(client)  # a call still stuck on the PLC would hold up the goodbye
        goodbye = asyncio.wrap_future(thread.submit(client.disconnect))
        thread.shutdown(wait=False)  # the thread ends once the goodbye has run
        done, _ = await asyncio.wait({goodbye}, timeout=CLOSE_SECONDS)
        if goodbye not in done:
            goodbye.cancel()
            log.warning(
                "device %s: S7 thread still busy after close, ends with its call", self._device
            )
        elif goodbye.exception() is not None:
            log.debug("device %s: disconnect failed: %r", self._device, goodbye.exception())

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        for block in plan_reads(self._tags.resolve(tags), self._max_read_bytes):
            client = self._require_client()
            request = partial(
                client.read_area, SNAP7_AREAS[block.area], block.db, block.start, block.size
            )
            where = f"tags {','.join(tag.name for tag in block.tags)}"
            try:
                data = await self._call(f"read {block}", request)
            except DeviceRequestError as exc:
                self._failing_reads.happened(where, exc.reason)
                readings.update((tag.name, BAD_READING) for tag in block.tags)
                continue
            self._failing_reads.ended(where)
            for tag in block.tags:
                readings[tag.name] = Reading(decode(tag, data, block.start), Quality.GOOD)
        return readings

    async def write(self, neutral: TagConfig, value: RawValue) -> None:
        tag = self._tags[neutral]
        location = tag.location
        what = f"write {tag.name} at {location}"
        if location.area in READ_ONLY_AREAS:
            raise DeviceRequestError(self._device, f"{what}: process inputs are read-only")
        client = self._require_client()
        area = SNAP7_AREAS[location.area]
        if location.bit is not None:
            bit_address = location.byte * 8 + location.bit
            data = bytearray([1 if value else 0])
            request = partial(client.write_area, area, location.db, bit_address, data, WordLen.Bit)
        else:
            data = bytearray(encode(value, tag.type))
            request = partial(client.write_area, area, location.db, location.byte, data)
        await self._call(what, request, write=True)

    async def _call(self, what: str, request: Callable[[], T], *, write: bool = False) -> T:
        """Run one client call on the device's thread within the deadline, translating
        snap7's failures into the device errors."""
        if self._thread is None:
            raise DeviceConnectionError(self._device, f"{what}: not connected")
        timeout = self._connection.timeout_seconds
        call = self._thread.submit(request)
        self._last_call = call
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(call)
        except TimeoutError as exc:
            _shut(self._client)
            self._connected = False
            raise DeviceConnectionError(
                self._device, f"{what}: no answer in {timeout:g} s"
            ) from exc
        except (S7ConnectionError, S7TimeoutError, S7PacketLostError, OSError) as exc:
            self._connected = False
            raise DeviceConnectionError(self._device, f"{what}: {exc}") from exc
        except S7Error as exc:
            if write and not write_refused(exc):
                raise WriteOutcomeUnknown(self._device, f"{what}: {exc}") from exc
            raise DeviceRequestError(self._device, f"{what}: {exc}") from exc

    def _require_client(self) -> snap7.Client:
        if self._client is None or not self._connected:
            raise DeviceConnectionError(self._device, "not connected")
        return self._client


def write_refused(error: S7Error) -> bool:
    """Whether snap7's failure of a write is the CPU's answer that it did not write: an
    error class and code in the answer's header, or a return code for the item. Anything
    else (an answer too short, of another function, out of sequence) says nothing."""
    if not isinstance(error, S7ProtocolError):
        return False
    return bool(error.error_code) or _ITEM_REFUSED.fullmatch(str(error)) is not None


def _open(client: snap7.Client, conn: S7Connection) -> int:
    """Connect (on the device's thread) and give every later request the device's timeout;
    the negotiated PDU length sizes the reads."""
    client.connect(conn.host, conn.rack, conn.slot, conn.port)
    link = client.connection
    if link is not None and link.socket is not None:
        link.timeout = conn.timeout_seconds
        link.socket.settimeout(conn.timeout_seconds)
    return client.pdu_length


def _shut(client: snap7.Client | None) -> None:
    """Shut down the client's socket from the loop: a call blocked on it returns at once.

    Reading the client's attributes from another thread is safe here: they are
    plain references, and a socket already closed by the thread raises OSError.
    """
    link = client.connection if client is not None else None
    sock = link.socket if link is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
