"""The press as a Siemens S7 CPU (python-snap7's ``Server``), for the demo and the tests.

Its memory is data: :data:`PRESS_VARIABLES` lists each variable of the press's
data block with its tag definition (address, type, limits) and initial value,
so a plant file and the simulator share one definition::

    DB1.DBX0.0   running            BOOL   writable
    DB1.DBW2     speed_setpoint     INT    writable, 0..3000 rpm
    DB1.DBD4     speed              REAL   rpm
    DB1.DBD8     motor_temperature  REAL   °C
    DB1.DBD12    produced_count     DINT   parts

The server answers every request from a ``bytearray`` per data block (or area),
which it shares with this module. A tick task steps the
:class:`~simulators.model.PressModel` every ``tick_seconds``, then, holding the
server's lock on that memory, takes the writable variables a client changed
since the last tick into the model (a setpoint outside its limits is clamped, as
the press's program would) and writes the model's outputs back. A write to a
data block the CPU lacks, or past its end, is refused; so is a read.

snap7's pure-Python server differs from a CPU in ways this module corrects
(:class:`_CpuServer`): it wrote a whole byte for a bit write, part of a write
that ran past a block's end, and on ``stop()`` it left connected clients
served for up to five seconds more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import snap7
from snap7.datatypes import S7Area, S7WordLen
from snap7.type import SrvArea

from plantfile.protocols.s7 import Area, S7Tag, decode, store
from plantfile.tags import RawValue, TagValue, to_engineering, to_raw
from simulators.lifecycle import Simulator
from simulators.model import Point, PressModel, press_model

log = logging.getLogger(__name__)

PRESS_DB = 1
SERVER_AREAS: dict[Area, SrvArea] = {
    "DB": SrvArea.DB, "M": SrvArea.MK, "I": SrvArea.PE, "Q": SrvArea.PA,
}  # fmt: skip


Variable = Point[S7Tag]


PRESS_VARIABLES: tuple[Variable, ...] = (
    Variable(S7Tag(name="running", address="DB1.DBX0.0", type="bool", writable=True), True),
    Variable(
        S7Tag(
            name="speed_setpoint",
            address="DB1.DBW2",
            type="int16",
            unit="rpm",
            writable=True,
            low=0,
            high=3000,
        ),
        1200,
    ),
    Variable(S7Tag(name="speed", address="DB1.DBD4", type="float32", unit="rpm"), 0.0),
    Variable(S7Tag(name="motor_temperature", address="DB1.DBD8", type="float32", unit="°C"), 20.0),
    Variable(S7Tag(name="produced_count", address="DB1.DBD12", type="int32", unit="parts"), 0),
)

MemoryKey = tuple[Area, int]  # (area, data block number; 0 outside the DB area)


class S7Simulator(Simulator):
    """``async with S7Simulator(port=...) as sim``; ``sim.model`` is the live press.

    It can be stopped and started again on the same port (the model and the
    memory keep their state), which is how tests cut and restore a connection.
    Port 102 needs privileges on most systems: tests and the demo use a high port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 10102,
        model: PressModel | None = None,
        variables: Sequence[Variable] = PRESS_VARIABLES,
        tick_seconds: float = 0.1,
    ) -> None:
        self.host = host  # an IPv4 address: snap7 binds nothing else
        self.port = port
        self._variables = tuple(variables)
        self._tick_seconds = tick_seconds
        self.model = model or press_model(self._variables)
        sizes: dict[MemoryKey, int] = {}
        for variable in self._variables:
            location = variable.tag.location
            key = (location.area, location.db)
            sizes[key] = max(sizes.get(key, 0), location.end)
        # The CPU's memory, just long enough for its variables: what the server reads and writes.
        self.memory = {key: bytearray(size) for key, size in sizes.items()}
        self._published: dict[str, RawValue] = {}
        for variable in self._variables:
            self._store(variable.tag, variable.initial)
        self._publish()
        self._server: _CpuServer | None = None

    async def start(self) -> None:
        server = _CpuServer()
        for (area, db), memory in self.memory.items():
            server.register_area(SERVER_AREAS[area], db, memory)
        server.start_to(self.host, self.port)
        self._server = server
        self._start_ticking(
            self.model, self._tick_seconds, self._exchange, name=f"s7-sim-{self.port}"
        )
        log.info("S7 simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        await self._stop_ticking()
        if self._server is not None:
            # Blocks for at most the listener's 0.1 s accept poll: clients are hung up first.
            self._server.stop()
            self._server = None

    def _exchange(self) -> None:
        """After each model step: client writes into the model, then the model's outputs out.

        Both under the server's locks, so a client's write lands either before
        the changes are taken or after the outputs are written, never between.
        """
        with self._locked():
            for variable in self._variables:
                tag = variable.tag
                if not tag.writable:
                    continue
                raw = self._load(tag)
                if raw != self._published[tag.name]:
                    self.model.set_input(tag.name, _clamp(tag, to_engineering(tag, raw)))
            self._publish()

    def _publish(self) -> None:
        outputs = self.model.outputs()
        for variable in self._variables:
            self._store(variable.tag, outputs[variable.tag.name])

    def _store(self, tag: S7Tag, value: TagValue) -> None:
        location = tag.location
        store(tag, self.memory[location.area, location.db], to_raw(tag, value))
        self._published[tag.name] = self._load(tag)

    def _load(self, tag: S7Tag) -> RawValue:
        location = tag.location
        return decode(tag, self.memory[location.area, location.db])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the server's lock on every memory area (in a fixed order) while inside."""
        server = self._server
        if server is None:
            yield
            return
        keys = sorted(self.memory)
        for area, db in keys:
            server.lock_area(SERVER_AREAS[area], db)
        try:
            yield
        finally:
            for area, db in reversed(keys):
                server.unlock_area(SERVER_AREAS[area], db)


def _clamp(tag: S7Tag, value: TagValue) -> TagValue:
    if isinstance(value, bool) or value is None:
        return value
    if tag.low is not None:
        value = max(tag.low, value)
    if tag.high is not None:
        value = min(tag.high, value)
    return value


class _CpuServer(snap7.Server):
    """snap7's server, behaving as a CPU does where the driver relies on it.

    - A bit write (transport size BIT) changes that bit alone; snap7 stored the
      written byte (0 or 1) over the whole byte, clearing its neighbours.
    - A write running past the end of a data block is refused whole; snap7
      wrote the part that fitted before refusing it.
    - ``stop()`` hangs up on connected clients; snap7 closed only the listener
      and kept answering them until their next five-second receive timeout.

    Both hook snap7 3.3's request handling (``python-snap7>=3.3,<3.4`` is pinned).
    """

    def __init__(self) -> None:
        super().__init__(log=False)
        self._request = threading.local()  # the bit of the write being served, per client thread
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()

    def stop(self) -> int:
        self._hang_up()
        result = super().stop()
        self._hang_up()  # anyone accepted while the listener was closing
        return result

    def _handle_client(self, client_socket: socket.socket, address: tuple[str, int]) -> None:
        with self._sockets_lock:
            self._sockets.add(client_socket)
        try:
            super()._handle_client(client_socket, address)
        finally:
            with self._sockets_lock:
                self._sockets.discard(client_socket)

    def _hang_up(self) -> None:
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _parse_address_specification(self, addr_spec: bytes) -> dict[str, Any]:
        spec = super()._parse_address_specification(addr_spec)
        if spec.get("word_len") == S7WordLen.BIT:
            spec["bit"] = int.from_bytes(addr_spec[9:12], "big") % 8
        return spec

    def _handle_write_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        spec = request.get("parameters", {}).get("address_spec", {})
        self._request.bit = spec.get("bit")
        try:
            return super()._handle_write_area(request, client_address)
        finally:
            self._request.bit = None

    def _write_to_memory_area(
        self, area: S7Area, db_number: int, start: int, write_data: bytearray
    ) -> bool:
        key = (area, db_number)
        memory = self.memory_areas.get(key)
        if memory is None:
            return False
        bit: int | None = getattr(self._request, "bit", None)
        if bit is None:
            if start + len(write_data) > len(memory):
                return False  # refused whole; snap7 wrote the part that fitted
            return super()._write_to_memory_area(area, db_number, start, write_data)
        if start >= len(memory) or len(write_data) != 1:
            return False
        with self.area_locks[key]:
            mask = 1 << bit
            memory[start] = memory[start] | mask if write_data[0] & 1 else memory[start] & ~mask
        return True


async def serve(host: str = "127.0.0.1", port: int = 10102) -> None:
    """Run the demo press as an S7 CPU until cancelled (``python -m simulators s7``)."""
    async with S7Simulator(host=host, port=port):
        await asyncio.Event().wait()
