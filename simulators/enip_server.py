"""The press as an Allen-Bradley Logix controller (cpppo's EtherNet/IP server).

For the demo and the integration tests of the EtherNet/IP driver. cpppo is GPL:
only the simulators and the tests import it, never the runtime packages.

:data:`PRESS_TAGS` lists the controller's tags (``Press.Speed``, ...) with the
press output each one serves. cpppo runs in a server thread of this process, one
more thread per client connection; its tags read from and write to a
:class:`_Memory` shared with the event loop, where a tick task steps the
:class:`~simulators.model.PressModel` every ``tick_seconds``. Each tick is a PLC
scan: it first applies the writes received since the previous one to the model,
then publishes the model's outputs as the new tag values. A write is read back at
once, and reaches the model at the next scan.

Like the press's PLC logic, the server refuses writes to its read-only tags
(``Attribute not settable``) and setpoints outside their limits (``Invalid
attribute value``); cpppo itself refuses a value of a type that does not fit the
tag. Every Write Tag request it parses is kept in
:attr:`EnipSimulator.write_requests`.

cpppo keeps its CIP objects and tag names in module globals, so one process
serves one simulated controller at a time: starting a second one while the first
runs raises :class:`RuntimeError`. A stopped one can be started again, on the
same port, and keeps the model's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cpppo.dotdict import dotdict  # type: ignore[import-untyped]  # cpppo ships no type hints
from cpppo.server import network  # type: ignore[import-untyped]
from cpppo.server.enip import device, logix, parser  # type: ignore[import-untyped]
from cpppo.server.enip import main as enip_main

from plantfile.protocols.enip import DEFAULT_PORT, EnipTag
from plantfile.tags import RawValue, TagValue, to_engineering, to_raw
from simulators.lifecycle import Simulator
from simulators.model import Point, PressModel, press_model

log = logging.getLogger(__name__)

# cpppo's server and connection threads poll for the stop signal this often.
_LATENCY_SECONDS = 0.05
_JOIN_SECONDS = 2.0

# CIP general status codes of a refused write.
INVALID_ATTRIBUTE_VALUE = 0x09
ATTRIBUTE_NOT_SETTABLE = 0x0E


# A controller tag (``tag.tag``) serving the press output ``tag.name``.
PlcTag = Point[EnipTag]


PRESS_TAGS: tuple[PlcTag, ...] = (
    PlcTag(EnipTag(name="running", tag="Press.Running", type="bool", writable=True), True),
    PlcTag(
        EnipTag(
            name="speed_setpoint",
            tag="Press.SpeedSetpoint",
            type="int32",
            unit="rpm",
            writable=True,
            low=0,
            high=3000,
        ),
        1200,
    ),
    PlcTag(EnipTag(name="speed", tag="Press.Speed", type="float32", unit="rpm"), 0.0),
    PlcTag(
        EnipTag(name="motor_temperature", tag="Press.MotorTemperature", type="float32", unit="°C"),
        20.0,
    ),
    PlcTag(
        EnipTag(name="produced_count", tag="Press.ProducedCount", type="int32", unit="parts"), 0
    ),
)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One Write Tag service as the server parsed it: the element count its header
    announces, and the values its data holds."""

    tag: str
    elements: int
    values: tuple[RawValue, ...]


class _Memory:
    """The tag values the server threads serve, and the writes waiting for the next scan."""

    def __init__(self, tags: Sequence[EnipTag]) -> None:
        self._tags = tuple(tags)
        self._lock = threading.Lock()
        self._values: dict[str, RawValue] = {}
        self._pending: list[tuple[str, TagValue]] = []
        self._requests: list[WriteRequest] = []

    @property
    def requests(self) -> tuple[WriteRequest, ...]:
        with self._lock:
            return tuple(self._requests)

    def read(self, tag: EnipTag) -> RawValue:
        with self._lock:
            return self._values[tag.name]

    def write(self, tag: EnipTag, raw: RawValue) -> None:
        with self._lock:
            self._values[tag.name] = raw
            self._pending.append((tag.name, to_engineering(tag, raw)))

    def receive(self, tag: EnipTag, elements: int, values: Sequence[RawValue]) -> int | None:
        """Record a Write Tag request; the CIP status refusing it, or None to let cpppo serve it."""
        with self._lock:
            self._requests.append(WriteRequest(tag.tag, elements, tuple(values)))
        if not tag.writable:
            return ATTRIBUTE_NOT_SETTABLE
        if len(values) != elements:
            return None  # cpppo refuses data that does not match its element count
        for value in values:
            engineering = to_engineering(tag, _coerce(tag, value))
            if isinstance(engineering, bool) or engineering is None:
                continue
            if (tag.low is not None and engineering < tag.low) or (
                tag.high is not None and engineering > tag.high
            ):
                return INVALID_ATTRIBUTE_VALUE
        return None

    def scan(self, model: PressModel) -> None:
        """Apply the writes received since the last scan, then publish the model's outputs."""
        with self._lock:
            for name, value in self._pending:
                model.set_input(name, value)
            self._pending.clear()
            self.publish(model.outputs())

    def publish(self, outputs: dict[str, TagValue]) -> None:
        """Serve ``outputs`` as the tag values (under the lock, or before the server runs)."""
        for tag in self._tags:
            self._values[tag.name] = to_raw(tag, outputs[tag.name])


def _coerce(tag: EnipTag, value: Any) -> RawValue:
    """A value cpppo parsed (of the request's type, which may be narrower) as the tag's type."""
    if tag.type == "bool":
        return bool(value)
    if tag.type in ("float32", "float64"):
        return float(value)
    return int(value)


class _TagAttribute(device.Attribute):  # type: ignore[misc]  # cpppo's classes are untyped
    """A cpppo attribute whose value lives in the shared memory, not in the attribute."""

    def __init__(self, tag: EnipTag, memory: _Memory) -> None:
        data_type = getattr(parser, tag.logix_type)  # parser.DINT, parser.REAL, ...
        super().__init__(tag.tag, data_type, default=memory.read(tag))
        self.plc_tag = tag
        self.memory = memory

    @property
    def value(self) -> RawValue:
        return self.memory.read(self.plc_tag)

    @value.setter
    def value(self, value: Any) -> None:
        self.memory.write(self.plc_tag, _coerce(self.plc_tag, value))


class _PressLogix(logix.Logix):  # type: ignore[misc]  # cpppo's classes are untyped
    """cpppo's Logix message router, recording every Write Tag request to a press tag and
    refusing the ones the press's PLC logic would."""

    def request(self, data: Any, addr: Any = None) -> bool:
        if "write_tag" in data and data.get("service", self.WR_TAG_REQ) == self.WR_TAG_REQ:
            attribute = _attribute_at(data.path)
            if isinstance(attribute, _TagAttribute):
                write = data.write_tag
                values = list(write.get("data") or [])
                status = attribute.memory.receive(attribute.plc_tag, write.elements, values)
                if status is not None:
                    data.service |= 0x80
                    data.status = status
                    data.input = bytearray(self.produce(data))
                    return True
        served: bool = super().request(data, addr=addr)
        return served


def _attribute_at(path: Any) -> Any:
    try:
        return device.lookup(*device.resolve(path, attribute=True))
    except Exception:  # an unknown tag: cpppo answers it with its own error status
        return None


class _Control(dict[str, Any]):
    """cpppo's ``server.control``: ``server_main`` sets ``address`` once it listens."""

    def __init__(self, on_listening: Callable[[], None]) -> None:
        super().__init__(
            done=False, disable=False, latency=_LATENCY_SECONDS, timeout=_LATENCY_SECONDS * 2
        )
        self._on_listening = on_listening

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "address":
            self._on_listening()


class _ServerThread:
    """cpppo's ``server_main`` in a thread of its own, plus one thread per client
    connection, telling the event loop when it listens and when all have ended."""

    def __init__(self, host: str, port: int, tags: Any) -> None:
        self._address = (host, port)
        self._tags = tags
        self._loop = asyncio.get_running_loop()
        self._listening: asyncio.Future[None] = self._loop.create_future()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._listened = threading.Event()
        self._control = _Control(self._on_listening)
        self._connections: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name=f"enip-sim-{port}", daemon=True)

    async def start(self) -> None:
        """Return once the server listens; raise why it could not (a port in use)."""
        self._thread.start()
        try:
            await self._listening
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        # Every cpppo thread sees this within its latency, closes its socket and ends.
        self._control["done"] = True
        await asyncio.wait({self._finished})
        self._thread.join()

    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            network.server_main(
                address=self._address,
                target=enip_main.enip_srv,
                kwargs={
                    "enip_process": logix.process,
                    "message_router_class": _PressLogix,
                    "tags": self._tags,
                    "server": {"control": self._control},
                    "latency": _LATENCY_SECONDS,
                    "size": None,
                },
                tcp=True,
                udp=False,
                thread_factory=self._connection_thread,
            )
        except BaseException as exc:  # raised by start() if it never listened, else logged
            failure = exc
            if self._listened.is_set():
                log.exception("EtherNet/IP simulator on port %d failed", self._address[1])
        finally:
            for connection in self._connections:
                connection.join(timeout=_JOIN_SECONDS)
            self._report(self._listening, failure or RuntimeError("the server ended at once"))
            self._report(self._finished)

    def _connection_thread(self, **kwargs: Any) -> threading.Thread:
        connection: threading.Thread = network.server_thread(**kwargs)
        connection.name = f"enip-sim-{self._address[1]}-client"
        self._connections.append(connection)
        return connection

    def _on_listening(self) -> None:
        self._listened.set()
        self._report(self._listening)

    def _report(self, future: asyncio.Future[None], failure: BaseException | None = None) -> None:
        """Settle ``future`` from a server thread; a no-op once it is settled."""

        def settle() -> None:
            if future.done():
                return
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)

        # The loop may be gone if the simulator was abandoned without stop().
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(settle)


def _cpppo_tags(tags: Sequence[EnipTag], memory: _Memory) -> Any:
    """cpppo's tag table: each name bound to an attribute that lives in ``memory``."""
    table = dotdict()
    for tag in tags:
        entry = dotdict()
        entry.attribute = _TagAttribute(tag, memory)
        entry.path = None
        entry.error = 0x00
        dict.__setitem__(table, tag.tag, entry)  # a dotted name is one tag, not a nested table
    return table


class EnipSimulator(Simulator):
    """``async with EnipSimulator(port=...) as sim``; ``sim.model`` is the live press.

    It can be stopped and started again on the same port (the model keeps its state),
    which is how tests cut and restore a device's connection.
    """

    _serving: ClassVar[EnipSimulator | None] = None

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        model: PressModel | None = None,
        tags: Sequence[PlcTag] = PRESS_TAGS,
        tick_seconds: float = 0.1,
    ) -> None:
        self.host = host
        self.port = port
        self._tags = tuple(tags)
        self._tick_seconds = tick_seconds
        self.model = model or press_model(self._tags)
        self._enip_tags = [plc_tag.tag for plc_tag in self._tags]
        self._memory = _Memory(self._enip_tags)
        self._memory.publish(self.model.outputs())
        self._server: _ServerThread | None = None

    @property
    def write_requests(self) -> tuple[WriteRequest, ...]:
        """Every Write Tag request to a press tag the server parsed, in order of arrival."""
        return self._memory.requests

    async def start(self) -> None:
        serving = EnipSimulator._serving
        if serving is not None and serving is not self:
            raise RuntimeError(
                f"an EtherNet/IP simulator already runs on port {serving.port}: "
                "cpppo serves one controller per process"
            )
        EnipSimulator._serving = self
        # A fresh CIP object tree: the previous run's tags point at its own attributes.
        device.lookup_reset()
        logix.setup_reset()
        server = _ServerThread(self.host, self.port, _cpppo_tags(self._enip_tags, self._memory))
        try:
            await server.start()
        except BaseException:
            EnipSimulator._serving = None
            raise
        self._server = server
        self._start_ticking(
            self.model, self._tick_seconds, self._scan, name=f"enip-sim-{self.port}"
        )
        log.info("EtherNet/IP simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        await self._stop_ticking()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if EnipSimulator._serving is self:
            EnipSimulator._serving = None

    def _scan(self) -> None:
        self._memory.scan(self.model)


async def serve(host: str, port: int) -> None:
    """Run the press as an EtherNet/IP controller until cancelled."""
    async with EnipSimulator(host=host, port=port):
        await asyncio.Event().wait()
