"""The press as a Modbus TCP server (pymodbus), for the demo and the integration tests.

Its memory is data: :data:`PRESS_REGISTERS` lists each register with its tag
definition (address, type, scale, limits) and initial value; the demo plant
file ``config/demo-plant.yaml`` declares the same tags (a test keeps them in
step). A tick task steps the :class:`~simulators.model.PressModel` every
``tick_seconds`` and encodes its outputs into a register image; every read
request is answered from that image. A write to a writable register is checked
against its limits (``ILLEGAL_VALUE`` otherwise, as a PLC would refuse it) and
applied to the model; read-only registers refuse writes with
``ILLEGAL_ADDRESS``, as do addresses outside the map.

For fault drills it also serves :data:`READ_SEQUENCE`, a read-only register
that answers the next number at each read of it (a per-device sequence for
every poll), and, when given a ``write_log``, appends every write it applied
to that file (:mod:`simulators.write_log`) before answering; a
``write_reply_delay_seconds`` holds the answer back after the write is applied,
as a slow PLC does, so a drill can stop the plant core between the write and
the recording of its outcome. A ``write_exception`` answers each write it
applied with that exception code, as a device that failed while writing
(``DEVICE_FAILURE``) or a gateway whose device did not answer it in time
(``GATEWAY_NO_RESPONSE``) does: an answer that says nothing of the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plantfile.protocols.modbus import ModbusTag, raw_to_registers, registers_to_raw
from plantfile.tags import TagValue, to_engineering, to_raw
from simulators.lifecycle import Simulator
from simulators.model import Point, PressModel, ReadCounter, press_model
from simulators.write_log import WriteLog

log = logging.getLogger(__name__)

_BIT_FUNCTIONS = frozenset({1, 2, 5, 15})  # coils and discrete inputs: the press has none


Register = Point[ModbusTag]


PRESS_REGISTERS: tuple[Register, ...] = (
    Register(ModbusTag(name="running", address=0, type="bool", writable=True), True),
    Register(
        ModbusTag(
            name="speed_setpoint",
            address=1,
            type="uint16",
            unit="rpm",
            writable=True,
            low=0,
            high=3000,
        ),
        1200,
    ),
    Register(ModbusTag(name="speed", address=2, type="uint16", unit="rpm"), 0),
    Register(ModbusTag(name="motor_temperature", address=3, type="float32", unit="°C"), 20.0),
    Register(ModbusTag(name="produced_count", address=5, type="int32", unit="parts"), 0),
)

# Not one of the press's values: the count of reads of it (see the module's docstring).
READ_SEQUENCE = Register(
    ModbusTag(
        name="read_sequence",
        address=7,
        type="int32",
        description="counts the reads of it: each poll answers the next number",
    ),
    0,
)


class ModbusSimulator(Simulator):
    """``async with ModbusSimulator(port=...) as sim``; ``sim.model`` is the live press.

    It can be stopped and started again on the same port (the model keeps its state),
    which is how tests cut and restore a device's connection.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        model: PressModel | None = None,
        registers: Sequence[Register] = PRESS_REGISTERS,
        tick_seconds: float = 0.1,
        write_log: Path | None = None,
        write_reply_delay_seconds: float = 0.0,
        write_exception: ExcCodes | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._registers = tuple(registers)
        self._tick_seconds = tick_seconds
        self.model = model or press_model(self._registers)
        self.read_sequence = ReadCounter()
        self._write_log = WriteLog(write_log) if write_log is not None else None
        self._write_reply_delay = write_reply_delay_seconds
        self._write_exception = write_exception
        self._image: dict[int, int] = {}
        for register in (*self._registers, READ_SEQUENCE):
            self._store(register.tag, register.initial)
        self._refresh()
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        simdata = [
            SimData(
                register.tag.address,
                values=self._words(register.tag),
                datatype=DataType.REGISTERS,
                readonly=not register.tag.writable,
            )
            for register in (*self._registers, READ_SEQUENCE)
        ]
        # id 0 answers every unit id, like a gateway-less TCP device.
        device = SimDevice(id=0, simdata=simdata, action=self._on_request)
        server = ModbusTcpServer(device, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        self._start_ticking(
            self.model, self._tick_seconds, self._refresh, name=f"modbus-sim-{self.port}"
        )
        log.info("modbus simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        await self._stop_ticking()
        if self._server is not None:
            # Closes the listener and every client connection.
            await self._server.shutdown()  # type: ignore[no-untyped-call]  # unannotated upstream
            self._server = None

    def _refresh(self) -> None:
        outputs = self.model.outputs()
        for register in self._registers:
            self._store(register.tag, outputs[register.tag.name])

    def _store(self, tag: ModbusTag, value: TagValue) -> None:
        words = raw_to_registers(to_raw(tag, value), tag.type, tag.word_order)
        self._image.update(zip(range(tag.address, tag.address + len(words)), words, strict=True))

    def _words(self, tag: ModbusTag) -> list[int]:
        return [
            self._image[address] for address in range(tag.address, tag.address + tag.register_count)
        ]

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's hook before it serves a request from ``registers`` (its own memory)."""
        if function_code in _BIT_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            refused = self._apply_write(address, [int(word) for word in set_values])
            if refused is not None:
                return refused
            if self._write_reply_delay > 0:
                await asyncio.sleep(self._write_reply_delay)
            return self._write_exception
        if _overlaps(READ_SEQUENCE.tag, address, count):
            self._store(READ_SEQUENCE.tag, self.read_sequence.read())
        for register_address, word in self._image.items():
            registers[register_address - start_address] = word
        return None

    def _apply_write(self, address: int, words: list[int]) -> ExcCodes | None:
        staged = dict(self._image)
        staged.update(zip(range(address, address + len(words)), words, strict=True))
        changes: dict[str, TagValue] = {}
        for register in self._registers:
            tag = register.tag
            if not tag.writable or not _overlaps(tag, address, len(words)):
                continue
            span = range(tag.address, tag.address + tag.register_count)
            value = to_engineering(
                tag, registers_to_raw([staged[a] for a in span], tag.type, tag.word_order)
            )
            if not _within(tag, value):
                return ExcCodes.ILLEGAL_VALUE
            changes[tag.name] = value
        self._image = staged
        for name, value in changes.items():
            self.model.set_input(name, value)
            if self._write_log is not None:
                self._write_log.record(name, value)
        return None


def _overlaps(tag: ModbusTag, address: int, count: int) -> bool:
    return tag.address < address + count and address < tag.address + tag.register_count


def _within(tag: ModbusTag, value: TagValue) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    return (tag.low is None or value >= tag.low) and (tag.high is None or value <= tag.high)


async def serve(
    host: str = "127.0.0.1",
    port: int = 5020,
    *,
    write_log: Path | None = None,
    write_reply_delay_seconds: float = 0.0,
) -> None:
    """Run the demo press as a Modbus TCP server until cancelled."""
    async with ModbusSimulator(
        host=host,
        port=port,
        write_log=write_log,
        write_reply_delay_seconds=write_reply_delay_seconds,
    ):
        await asyncio.Event().wait()
