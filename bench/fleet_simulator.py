"""The fleet benchmark's PLCs: ``python -m bench.fleet_simulator --servers 10 --units 20``.

Each server is one pymodbus ``ModbusTcpServer`` on a port of the system's
choosing, answering unit ids 1 to ``--units`` as a Modbus gateway does for the
devices behind it. Every unit is one simulated device with the same 20 tags
(:data:`FLEET_TAGS`) in holding registers 0 to 29, so the read planner makes one
request of 30 registers per poll. Values differ by unit and stay put; the two
setpoints are writable.

Once every server listens it prints ``ready`` and their ports (``ready
41233,41234``); it stops cleanly on SIGTERM or SIGINT. It runs in a process of
its own so that its CPU time is not counted in the plantcore process polling it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plantfile.protocols.modbus import ModbusTag, raw_to_registers
from plantfile.tags import DataType as TagType
from plantfile.tags import RawValue

# Four 16-bit and 32-bit types in turn, at consecutive addresses: 20 tags, 30 registers.
_TYPES: tuple[TagType, ...] = ("uint16", "int16", "int32", "float32")


def _fleet_tags() -> tuple[ModbusTag, ...]:
    tags: list[ModbusTag] = []
    address = 0
    for index in range(20):
        data_type = _TYPES[index % len(_TYPES)]
        if index == 0:
            tag = ModbusTag(
                name="speed_setpoint", address=address, type=data_type, unit="rpm",
                writable=True, low=0, high=3000,
            )  # fmt: skip
        elif index == 3:
            tag = ModbusTag(
                name="temperature_setpoint", address=address, type=data_type, unit="°C",
                writable=True, low=0, high=120,
            )  # fmt: skip
        elif data_type == "int16":
            # A scaled integer, as PLCs keep tenths of a unit.
            tag = ModbusTag(name=f"value_{index:02d}", address=address, type=data_type, scale=0.1)
        else:
            tag = ModbusTag(name=f"value_{index:02d}", address=address, type=data_type)
        tags.append(tag)
        address += tag.register_count
    return tuple(tags)


FLEET_TAGS: tuple[ModbusTag, ...] = _fleet_tags()
REGISTERS = sum(tag.register_count for tag in FLEET_TAGS)


def initial_raw(tag: ModbusTag, unit: int) -> RawValue:
    """A value of the tag's type that tells the unit and the tag apart (within any limits)."""
    position = FLEET_TAGS.index(tag)
    if tag.writable:
        return 10 * unit + position
    match tag.type:
        case "uint16":
            return 1000 * position + unit
        case "int16":
            return -(100 * position + unit)
        case "int32":
            return 100_000 * position + unit
        case _:
            return unit + position / 8


def device(unit: int) -> SimDevice:
    simdata = [
        SimData(
            tag.address,
            values=raw_to_registers(initial_raw(tag, unit), tag.type, tag.word_order),
            datatype=DataType.REGISTERS,
            readonly=not tag.writable,
        )
        for tag in FLEET_TAGS
    ]
    return SimDevice(id=unit, simdata=simdata)


def bound_port(server: ModbusTcpServer) -> int:
    """The port the system gave a server that listens on port 0."""
    listener = server.transport
    if not isinstance(listener, asyncio.Server):
        raise TypeError(f"a TCP server listens through an asyncio.Server, not {listener!r}")
    port: int = listener.sockets[0].getsockname()[1]
    return port


async def serve(host: str, servers: int, units: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listening: list[ModbusTcpServer] = []
    try:
        for _ in range(servers):
            server = ModbusTcpServer(
                [device(unit) for unit in range(1, units + 1)], address=(host, 0)
            )
            await server.serve_forever(background=True)
            listening.append(server)
        print("ready", ",".join(str(bound_port(server)) for server in listening), flush=True)
        await stop.wait()
    finally:
        for server in listening:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated upstream


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--servers", type=int, default=10, help="servers, each on its own port")
    parser.add_argument("--units", type=int, default=20, help="unit ids 1..N on each server")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.servers, args.units))


if __name__ == "__main__":
    main()
