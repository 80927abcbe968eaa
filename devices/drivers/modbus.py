"""Modbus TCP driver on pymodbus's ``AsyncModbusTcpClient``.

Reads are planned by :func:`plan_reads` (pure): tags of one area at contiguous
or overlapping addresses share one request, up to the protocol's limits of 125
registers or 2000 bits. A request that fails (exception response such as an
illegal address, an answer with fewer values than asked for, or a timeout
while the socket stays open) makes only its own tags bad, logged when it
starts failing and when it reads again; a closed socket raises
:class:`DeviceConnectionError`.

A write is refused (:class:`DeviceRequestError`) only by an exception code
that says the device did not carry it out (:data:`WRITE_REFUSALS`). A write
left without an answer in time, with an answer pymodbus cannot match to it, or
with any other exception code raises :class:`WriteOutcomeUnknown`: the device
may have applied it. A late answer then arrives under an old transaction id,
which pymodbus drops, so the connection stays in use.

pymodbus's own reconnect is disabled (``reconnect_delay=0``) and its retries
set to zero: the supervisor decides when and how often to reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from devices.device_errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceRequestError,
    WriteOutcomeUnknown,
)
from devices.driver import BAD_READING, Reading, TagIndex
from domain.messages import Quality
from plantfile.protocols.modbus import (
    BIT_AREAS,
    Area,
    ModbusDevice,
    ModbusTag,
    raw_to_registers,
    registers_to_raw,
)
from plantfile.tags import RawValue, TagConfig
from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000

# The exception codes by which a device says it did not carry a request out (Modbus
# Application Protocol 1.1b3, section 7). Any other leaves a write's outcome unknown:
# 4 (the device failed while carrying it out), 5 (accepted, still being carried out),
# 8 (memory parity error), 0x0B (a gateway's target did not answer: it may have it).
WRITE_REFUSALS = frozenset(
    {
        ExcCodes.ILLEGAL_FUNCTION,
        ExcCodes.ILLEGAL_ADDRESS,
        ExcCodes.ILLEGAL_VALUE,
        ExcCodes.DEVICE_BUSY,
        ExcCodes.NEGATIVE_ACKNOWLEDGE,
        ExcCodes.GATEWAY_PATH_UNAVIABLE,  # the gateway could not route it: never sent on
    }
)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``area`` from ``start``."""

    area: Area
    start: int
    count: int
    tags: tuple[ModbusTag, ...]


def plan_reads(tags: Sequence[ModbusTag]) -> list[ReadBlock]:
    """Group tags into as few requests as the protocol allows, never bridging a gap.

    A gap may be an address the device does not have, which would fail the whole
    request, so only adjacent or overlapping tags are merged.
    """
    blocks: list[ReadBlock] = []
    by_area = sorted(tags, key=lambda tag: (tag.area, tag.address))
    for area, group in groupby(by_area, key=lambda tag: tag.area):
        limit = MAX_READ_BITS if area in BIT_AREAS else MAX_READ_REGISTERS
        start, end, members = -1, -1, list[ModbusTag]()
        for tag in group:
            tag_end = tag.address + tag.register_count
            if members and tag.address <= end and max(end, tag_end) - start <= limit:
                end = max(end, tag_end)
                members.append(tag)
                continue
            if members:
                blocks.append(ReadBlock(area, start, end - start, tuple(members)))
            start, end, members = tag.address, tag_end, [tag]
        blocks.append(ReadBlock(area, start, end - start, tuple(members)))
    return blocks


class ModbusDriver:
    def __init__(self, device: ModbusDevice) -> None:
        self._device = device.id
        self._connection = device.modbus
        self._tags = TagIndex(device.id, device.tags)
        self._plans: dict[tuple[str, ...], list[ReadBlock]] = {}
        self._client: AsyncModbusTcpClient | None = None
        self._failing_reads = RepeatedLog(log, f"device {device.id}: read of")

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        await self.close()
        conn = self._connection
        client = AsyncModbusTcpClient(
            conn.host,
            port=conn.port,
            name=self._device,
            timeout=conn.timeout_seconds,
            retries=0,
            reconnect_delay=0,
        )
        if not await client.connect():
            client.close()
            raise DeviceConnectionError(self._device, f"cannot connect to {conn.host}:{conn.port}")
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        for block in self._plan(tags):
            where = f"tags {','.join(tag.name for tag in block.tags)}"
            try:
                words = await self._read_block(block)
            except DeviceRequestError as exc:
                self._failing_reads.happened(where, exc.reason)
                readings.update((tag.name, BAD_READING) for tag in block.tags)
                continue
            self._failing_reads.ended(where)
            for tag in block.tags:
                offset = tag.address - block.start
                raw = _decode(tag, words[offset : offset + tag.register_count])
                readings[tag.name] = Reading(raw, Quality.GOOD)
        return readings

    def _plan(self, tags: Sequence[TagConfig]) -> list[ReadBlock]:
        """The read requests for ``tags``, planned once: the tags do not change while it runs."""
        key = tuple(tag.name for tag in tags)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_reads(self._tags.resolve(tags))
        return plan

    async def write(self, neutral: TagConfig, value: RawValue) -> None:
        tag = self._tags[neutral]
        client = self._require_client()
        unit = self._connection.device_id
        what = f"write {tag.name}"
        if tag.area == "coil":
            await self._execute(
                what,
                lambda: client.write_coil(tag.address, bool(value), device_id=unit),
                write=True,
            )
            return
        if tag.area != "holding":
            raise DeviceRequestError(self._device, f"{what}: area {tag.area} is read-only")
        words = raw_to_registers(value, tag.type, tag.word_order)
        if len(words) == 1:
            await self._execute(
                what,
                lambda: client.write_register(tag.address, words[0], device_id=unit),
                write=True,
            )
        else:
            await self._execute(
                what,
                lambda: client.write_registers(tag.address, words, device_id=unit),
                write=True,
            )

    async def _read_block(self, block: ReadBlock) -> Sequence[int] | Sequence[bool]:
        client = self._require_client()
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[block.area]
        unit = self._connection.device_id
        what = f"read {block.area} {block.start}+{block.count}"
        response = await self._execute(
            what, lambda: read(block.start, count=block.count, device_id=unit)
        )
        values = response.bits if block.area in BIT_AREAS else response.registers
        # pymodbus hands over what the frame held: a short answer must not become
        # a tag's value, nor an IndexError that looks like a lost connection.
        if len(values) < block.count:
            raise DeviceRequestError(
                self._device, f"{what}: answer holds {len(values)} of {block.count} values"
            )
        return values

    async def _execute(
        self, what: str, request: Callable[[], Awaitable[ModbusPDU]], *, write: bool = False
    ) -> ModbusPDU:
        """Run one request, translating pymodbus's failures into the device errors."""
        failure: type[DeviceError]
        try:
            response = await request()
        except ConnectionException as exc:
            raise DeviceConnectionError(self._device, f"{what}: not connected") from exc
        except ModbusIOException as exc:
            if not self.connected:
                raise DeviceConnectionError(self._device, f"{what}: connection lost") from exc
            # Sent, and no answer came back that belongs to it.
            failure = WriteOutcomeUnknown if write else DeviceRequestError
            raise failure(self._device, f"{what}: no response") from exc
        if response.isError():
            code = response.exception_code
            refused = not write or code in WRITE_REFUSALS
            failure = DeviceRequestError if refused else WriteOutcomeUnknown
            raise failure(self._device, f"{what}: exception code {code}")
        return response

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise DeviceConnectionError(self._device, "not connected")
        return self._client


def _decode(tag: ModbusTag, words: Sequence[int] | Sequence[bool]) -> RawValue:
    if tag.area in BIT_AREAS:
        return bool(words[0])
    return registers_to_raw([int(word) for word in words], tag.type, tag.word_order)
