"""Run a simulator until interrupted: ``python -m simulators modbus --port 5020``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from simulators.modbus_server import ModbusSimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    protocols = parser.add_subparsers(dest="protocol", required=True)
    modbus = protocols.add_parser("modbus", help="the demo press as a Modbus TCP server")
    modbus.add_argument("--host", default="127.0.0.1", help="address to listen on")
    modbus.add_argument("--port", type=int, default=5020)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Ctrl-C is how the demo simulator is meant to stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_modbus(args.host, args.port))


async def _serve_modbus(host: str, port: int) -> None:
    async with ModbusSimulator(host=host, port=port):
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
