"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print JSON figures.

A full run writes each benchmark's figures to ``bench/results/<name>.json`` (the
committed reference); a ``--quick`` run only prints them unless ``--results DIR``
says where to write.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    alarm_burst,
    audit_log,
    change_to_hmi,
    command_round_trip,
    command_store,
    event_store,
    fleet_1000,
    fleet_poll,
    history_query,
    history_write,
    login_flood,
    modbus_poll,
    request_auth,
    tag_fanout,
    telemetry_e2e,
)
from bench.common import RESULTS_DIR, BenchConfig, Figures, describe_machine, emit

BENCHMARKS: dict[str, Callable[[BenchConfig], Awaitable[Figures]]] = {
    "alarm_burst": alarm_burst.run,
    "audit_log": audit_log.run,
    "change_to_hmi": change_to_hmi.run,
    "command_round_trip": command_round_trip.run,
    "command_store": command_store.run,
    "event_store": event_store.run,
    "fleet_1000": fleet_1000.run,
    "fleet_poll": fleet_poll.run,
    "history_query": history_query.run,
    "history_write": history_write.run,
    "login_flood": login_flood.run,
    "modbus_poll": modbus_poll.run,
    "request_auth": request_auth.run,
    "tag_fanout": tag_fanout.run,
    "telemetry_e2e": telemetry_e2e.run,
}


def parse_config(argv: list[str] | None = None) -> tuple[BenchConfig, list[str]]:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run of a few seconds each")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this one (repeat)"
    )
    parser.add_argument("--database-url", default=defaults.database_url)
    parser.add_argument("--nats-url", default=defaults.nats_url)
    parser.add_argument(
        "--results", type=Path, help=f"where to write the JSON files (full run: {RESULTS_DIR})"
    )
    args = parser.parse_args(argv)
    results_dir: Path | None = args.results or (None if args.quick else RESULTS_DIR)
    config = BenchConfig(
        quick=args.quick,
        database_url=args.database_url,
        nats_url=args.nats_url,
        results_dir=results_dir,
    )
    return config, args.only or list(BENCHMARKS)


async def main(config: BenchConfig, names: list[str]) -> None:
    config = dataclasses.replace(config, machine=await describe_machine(config))
    for name in names:
        emit(name, await BENCHMARKS[name](config), config)


if __name__ == "__main__":
    asyncio.run(main(*parse_config()))
