"""``plantcore``: run the plant core, the demo, and administrative commands.

- ``plantcore run``: supervisors, projections, dispatcher and API for the plant
  file, against the services of the settings.
- ``plantcore demo``: the same, plus the Modbus simulator, embedded services
  where none answer, and a demo operator whose credentials it prints.
- ``plantcore users create``: register an operator and print their TOTP
  enrolment (secret and ``otpauth://`` URI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from devices.catalog import tag_catalog
from devices.errors import PlantConfigError
from devices.plant_file import load_plant_file, read_plant_file
from domain.errors import OperatorExists
from plantcore.application import open_application
from plantcore.demo import run_demo
from plantcore.operators import create_operator
from plantcore.runtime import PlantRuntime, runtime_config
from plantcore.settings import Settings

log = logging.getLogger("plantcore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the plant core for the plant file")
    commands.add_parser("demo", help="plant-in-a-box: simulator, plant core, demo operator")
    users = commands.add_parser("users", help="operators").add_subparsers(
        dest="users_command", required=True
    )
    create = users.add_parser("create", help="register an operator")
    create.add_argument("username")
    create.add_argument("--full-name", required=True)
    create.add_argument(
        "--role",
        required=True,
        choices=["admin", "supervisor", "operator", "viewer", "auditor", "service"],
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Protocol stacks narrate every session and request at INFO: their warnings suffice.
    for chatty in ("asyncua", "pymodbus", "snap7", "pycomm3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    settings = Settings()
    try:
        if args.command == "run":
            return _run(settings)
        if args.command == "demo":
            return _interruptible(run_demo(settings))
        return _create_user(settings, args.username, args.full_name, args.role)
    except PlantConfigError as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2


def _run(settings: Settings) -> int:
    if settings.jwt_secret is None:
        print("plantcore: set PLANTCORE_JWT_SECRET (at least 32 bytes)", file=sys.stderr)
        return 2
    loaded = read_plant_file(settings.plant_file)
    for problem in loaded.problems:
        log.error("%s; that device is not started", problem)
    config = runtime_config(settings, plant=loaded.plant, plant_file=settings.plant_file)
    config = replace(config, plant_problems=tuple(str(problem) for problem in loaded.problems))
    return _interruptible(PlantRuntime(config).run())


def _interruptible(work: Coroutine[Any, Any, None]) -> int:
    """Run ``work`` until it ends, Ctrl-C or SIGTERM; every part then stops in order."""

    async def until_signalled() -> None:
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        # Handlers on the loop, for SIGINT too: a process started in the background
        # by a shell inherits SIGINT ignored, and would otherwise never stop on it.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, main.cancel)
        # The cancellation is ours (a signal): it ends the run, it is not an error.
        with contextlib.suppress(asyncio.CancelledError):
            await work

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(until_signalled())
    except RuntimeError as exc:
        log.error("plantcore stopped: %s", exc)
        return 1
    log.info("plantcore stopped")
    return 0


def _create_user(settings: Settings, username: str, full_name: str, role: str) -> int:
    password = os.environ.get("PLANTCORE_NEW_PASSWORD") or getpass.getpass("Password: ")
    if len(password) < 12:
        print("plantcore: the password needs at least 12 characters", file=sys.stderr)
        return 2
    app = open_application(settings.database_url, tag_catalog(load_plant_file(settings.plant_file)))
    try:
        credentials = create_operator(
            app,
            username=username,
            full_name=full_name,
            role=role,
            password=password,
            actor=f"cli:{getpass.getuser()}",
        )
    except OperatorExists:
        print(f"plantcore: {username!r} already exists", file=sys.stderr)
        return 1
    finally:
        app.close()
    print(f"created {username} ({role})")
    print(f"TOTP secret: {credentials.totp_secret}")
    print(f"enrol with:  {credentials.provisioning_uri()}")
    return 0
