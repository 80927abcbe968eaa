"""``plantcore``: run the plant core, the demo, and administrative commands.

- ``plantcore run``: supervisors, projections, dispatcher and API for the plant
  file, against the services of the settings.
- ``plantcore demo``: the same, plus the Modbus simulator, embedded services
  where none answer, and a demo operator whose credentials it prints.
- ``plantcore users create``: register an operator (the first admin, say)
  and print their TOTP enrolment (secret and ``otpauth://`` URI). The password
  comes from ``PLANTCORE_NEW_PASSWORD``, the file ``PLANTCORE_NEW_PASSWORD_FILE``
  or the prompt; there is no default.
- ``plantcore secrets-key``: print a new key for ``PLANTCORE_SECRETS_KEY``.
- ``plantcore audit``: verify, export and sign the event log (see :mod:`plantcore.audit_cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from api.credentials import MIN_PASSWORD_LENGTH
from api.secrets import generate_key
from domain.errors import DomainError, OperatorExists
from domain.permissions import Role
from plantcore.audit_cli import add_audit_commands, run_audit
from plantcore.demo import run_demo
from plantcore.open_application import open_application
from plantcore.operators import create_operator
from plantcore.runtime import PlantRuntime, runtime_config
from plantcore.settings import MissingSecret, Settings, jwt_secret, secret_box
from plantfile.catalog_builder import tag_catalog
from plantfile.loader import PlantConfigError, load_plant_file, read_plant_file
from support.secret_source import SecretSourceError, environment_secret

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
        dest="roles",
        action="append",
        required=True,
        choices=[role.value for role in Role],
        help="a role (repeat for several)",
    )
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        default=[],
        help="where they may act: plant, area:<name> or device:<id> (repeat for several)",
    )
    commands.add_parser("secrets-key", help="print a new key for PLANTCORE_SECRETS_KEY")
    add_audit_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "secrets-key":
        print(generate_key())
        return 0
    if args.command == "audit":
        return run_audit(args)

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
        return _create_user(settings, args)
    except (PlantConfigError, MissingSecret) as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2


def _run(settings: Settings) -> int:
    if jwt_secret(settings) is None:
        print(
            "plantcore: set PLANTCORE_JWT_SECRET or PLANTCORE_JWT_SECRET_FILE (at least 32 bytes)",
            file=sys.stderr,
        )
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


def _new_password() -> str:
    """The new operator's password: from the environment, a file, or typed twice."""
    if password := environment_secret("PLANTCORE_NEW_PASSWORD"):
        return password
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise PasswordMismatch("the two passwords differ")
    return password


class PasswordMismatch(ValueError):
    pass


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    box = secret_box(settings)
    try:
        password = _new_password()
    except (SecretSourceError, PasswordMismatch) as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"plantcore: the password needs at least {MIN_PASSWORD_LENGTH} characters",
            file=sys.stderr,
        )
        return 2
    plant = load_plant_file(settings.plant_file)
    app = open_application(settings.database_url, tag_catalog(plant), plant_id=plant.plant_id)
    try:
        credentials = create_operator(
            app,
            box,
            username=args.username,
            full_name=args.full_name,
            roles=args.roles,
            scopes=args.scopes,
            password=password,
            actor=f"cli:{getpass.getuser()}",
        )
    except OperatorExists:
        print(f"plantcore: {args.username!r} already exists", file=sys.stderr)
        return 1
    except DomainError as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2
    finally:
        app.close()
    print(f"created {args.username} ({', '.join(sorted(set(args.roles)))})")
    print(f"TOTP secret: {credentials.totp_secret}")
    print(f"enrol with:  {credentials.provisioning_uri()}")
    return 0
