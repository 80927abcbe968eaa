"""Run one simulated press until interrupted, in the protocol asked for::

    python -m simulators modbus --port 5020
    python -m simulators modbus --port 5020 --write-log var/writes.jsonl --write-reply-delay-ms 2000
    python -m simulators s7 --port 10102
    python -m simulators enip --port 44818
    python -m simulators opcua --port 4840 --cert-dir var/opcua
    python -m simulators mqtt --port 1883 --prefix plantcore/demo   (publishes to a broker)

The Modbus press can log every write it applied and answer writes late, for
fault drills (:mod:`simulators.modbus_server`). Each module is imported only
for its own protocol: the EtherNet/IP server is
built on cpppo (GPL), which only this process may load, never the plant core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

DEFAULT_PORTS = {"modbus": 5020, "s7": 10102, "enip": 44818, "opcua": 4840, "mqtt": 1883}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    protocols = parser.add_subparsers(dest="protocol", required=True)
    for protocol, port in DEFAULT_PORTS.items():
        sub = protocols.add_parser(protocol, help=f"the demo press over {protocol}")
        what = "the broker's address" if protocol == "mqtt" else "address to listen on"
        sub.add_argument("--host", default="127.0.0.1", help=what)
        sub.add_argument("--port", type=int, default=port)
        if protocol == "opcua":
            sub.add_argument("--cert-dir", type=Path, default=Path("var/opcua"))
        if protocol == "mqtt":
            sub.add_argument("--prefix", default="plantcore/demo", help="topic prefix")
        if protocol == "modbus":
            sub.add_argument(
                "--write-log", type=Path, help="append every applied write to this JSONL file"
            )
            sub.add_argument(
                "--write-reply-delay-ms",
                type=_milliseconds,
                default=0,
                help="answer each applied write this much later, as a slow PLC",
            )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_until_signalled(_serve(args)))


def _milliseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of ms") from None
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 60000 ms")
    return value


async def _until_signalled(serving: Coroutine[Any, Any, None]) -> None:
    """Serve until SIGINT or SIGTERM, whatever the process inherited or a library installed.

    A background process started by a shell ignores SIGINT, and cpppo installs
    its own SIGTERM handler: handlers on the loop take both back.
    """
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


def _serve(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    host, port = args.host, args.port
    if args.protocol == "modbus":
        from simulators.modbus_server import serve as serve_modbus

        return serve_modbus(
            host,
            port,
            write_log=args.write_log,
            write_reply_delay_seconds=args.write_reply_delay_ms / 1000,
        )
    if args.protocol == "s7":
        from simulators.s7_server import serve as serve_s7

        return serve_s7(host, port)
    if args.protocol == "enip":
        from simulators.enip_server import serve as serve_enip

        return serve_enip(host, port)
    if args.protocol == "opcua":
        from simulators.opcua_server import serve as serve_opcua

        return serve_opcua(host, port, args.cert_dir)
    from simulators.mqtt_sensor import serve as serve_mqtt

    return serve_mqtt(host, port, args.prefix)


if __name__ == "__main__":
    main()
