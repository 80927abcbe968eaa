"""``plantcore audit replay`` and ``plantcore audit timeline``: reading the record back.

- ``plantcore audit replay --aggregate <uuid> [--at ISO] [--version N] [--json]``:
  any aggregate (a command, an operator, an alarm, the plant mode, …) as it
  stood at that time, rebuilt from its events (:func:`audit.replay.aggregate_at`);
  credentials are redacted. Exit 1 if it did not exist then.
- ``plantcore audit replay --read-models [--json]``: rebuild every read model
  derived from the event log in scratch space and compare it with the live one
  (:func:`audit.read_models.rebuild_and_compare`). Exit 0 when equal, 1 when
  they differ, with each difference listed.
- ``plantcore audit timeline <command-id> [--json]``: who requested the
  command, who confirmed or approved it and how (their signatures), what was
  written and what the PLC read back, with times; what GraphQL
  ``commandTimeline`` shows. Exit 1 for an unknown command.

The ``audit`` command adds these with :func:`add_inspect_commands` and runs
them with :func:`run_inspect_command`. Exit 2 for a usage or connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TextIO
from uuid import UUID

import asyncpg
import psycopg
from eventsourcing.persistence import PersistenceError
from redis.exceptions import RedisError

from audit.read_models import ReadModelReport, format_report, rebuild_and_compare
from audit.replay import AggregateNotFound, AggregateState, NotYetRecorded, aggregate_at
from audit.timeline import command_timeline, format_timeline
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from domain.errors import CommandNotFound
from plantcore.open_application import open_reader
from plantcore.settings import Settings
from plantfile.catalog_builder import tag_catalog
from plantfile.loader import PlantConfigError, load_plant_file
from projections.live_client import live_state_client

Handler = Callable[[argparse.Namespace, Settings, TextIO, TextIO], int]
_STORE_ERRORS = (PersistenceError, psycopg.Error, asyncpg.PostgresError, RedisError, OSError)


def add_inspect_commands(
    audit_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``replay`` and ``timeline`` to the ``audit`` command's subparsers."""
    replay = audit_subparsers.add_parser(
        "replay",
        help="an aggregate as it stood at a time, or the read models rebuilt and compared",
        description="Rebuild from the event log: one aggregate at a time, or every read model.",
    )
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--aggregate", type=UUID, metavar="UUID", help="the aggregate's id")
    what.add_argument(
        "--read-models",
        action="store_true",
        help="rebuild every read model from the log and compare it with the live one",
    )
    replay.add_argument(
        "--at",
        type=_aware_time,
        metavar="ISO",
        help="the time, with its offset (2026-11-23T14:00:00+01:00, or Z for UTC); default now",
    )
    replay.add_argument("--version", type=int, metavar="N", help="the aggregate's version")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(inspect_command=_replay)

    timeline = audit_subparsers.add_parser(
        "timeline",
        help="a command's steps: who requested, confirmed and approved, what was written",
        description="Every step of one command, with its signatures, as commandTimeline shows.",
    )
    timeline.add_argument("command_id", type=UUID, metavar="COMMAND_ID")
    timeline.add_argument("--json", action="store_true", help="print JSON")
    timeline.set_defaults(inspect_command=_timeline)


def run_inspect_command(
    args: argparse.Namespace,
    settings: Settings | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the ``replay`` or ``timeline`` command ``args`` were parsed for; its exit status."""
    handler: Handler = args.inspect_command
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        return handler(args, settings or Settings(), stdout, stderr)
    except _STORE_ERRORS as exc:
        print(f"plantcore: cannot read the record: {exc}", file=stderr)
        return 2


# -- replay ------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    if args.read_models:
        if args.at is not None or args.version is not None:
            print("plantcore: --at and --version go with --aggregate", file=err)
            return 2
        return _read_models(args, settings, out, err)
    app = _open(settings, err)
    try:
        state = aggregate_at(app, args.aggregate, at=args.at, version=args.version)
    except (AggregateNotFound, NotYetRecorded) as exc:
        print(f"plantcore: {exc}", file=err)
        return 1
    finally:
        app.close()
    out.write(
        json.dumps(state, indent=2) + "\n" if args.json else format_state(state, args.version)
    )
    return 0


def _read_models(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    app = _open(settings, err)
    try:
        report = asyncio.run(_compare(app, settings))
    finally:
        app.close()
    out.write(json.dumps(report.to_json(), indent=2) + "\n" if args.json else format_report(report))
    return 0 if report.equal else 1


async def _compare(app: PlantApplication, settings: Settings) -> ReadModelReport:
    redis = live_state_client(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        wait_seconds=settings.redis_wait_seconds,
    )
    try:
        return await rebuild_and_compare(app, settings.database_url, redis)
    finally:
        await redis.aclose()


def format_state(state: AggregateState, version: int | None = None) -> str:
    """An aggregate's state as an auditor reads it on a terminal (``version``: the cut asked)."""
    last = state["last_event"]
    lines = [
        f"{state['aggregate_type']} {state['aggregate_id']}",
        f"as of        {state['as_of'] or (f'version {version}' if version else 'now')}",
        f"version      {state['version']}",
        f"created on   {state['created_on']}",
        f"last event   {last['type']} (version {last['version']}) at {last['at']}"
        f" by {last['actor'] or '-'}",
        "",
        "state",
    ]
    width = max((len(name) for name in state["state"]), default=0)
    lines += [f"  {name:<{width}}  {json.dumps(value)}" for name, value in state["state"].items()]
    lines += ["", f"last event: {last['type']}"]
    lines += [f"  {name}: {json.dumps(value)}" for name, value in last["payload"].items()]
    return "\n".join(lines) + "\n"


# -- timeline ------------------------------------------------------------------------------------


def _timeline(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    app = _open(settings, err)
    try:
        timeline = command_timeline(app, args.command_id)
    except CommandNotFound:
        print(f"plantcore: no command {args.command_id}", file=err)
        return 1
    finally:
        app.close()
    out.write(
        json.dumps(timeline.to_json(), indent=2) + "\n" if args.json else format_timeline(timeline)
    )
    return 0


# -- shared ----------------------------------------------------------------------------------------


def _open(settings: Settings, err: TextIO) -> PlantApplication:
    """The application, only to read: an auditor's read-only database role is enough.

    Reading needs no catalogue, so a plant file that cannot be read is no reason
    to stop.
    """
    try:
        plant = load_plant_file(settings.plant_file)
        catalog, plant_id = tag_catalog(plant), plant.plant_id
    except PlantConfigError as exc:
        print(f"plantcore: {exc}; reading the record without the plant's catalogue", file=err)
        catalog, plant_id = TagCatalog(()), "plant"
    return open_reader(settings.database_url, catalog, plant_id=plant_id)


def _aware_time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"give the time's offset, e.g. {text}Z for UTC or {text}+01:00"
        )
    return at
