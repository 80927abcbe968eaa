"""``plantcore``: run the plant core, the demo, and administrative commands.

- ``plantcore run``: supervisors, projections, dispatcher and API for the plant
  file, against the services of the settings. It refuses to connect to
  PostgreSQL as a role that may alter the event log, unless ``--allow-owner``.
- ``plantcore db init``: the roles, tables and privileges of the plant's
  database, made or repaired by an administrator (see :mod:`plantcore.db_init`).
- ``plantcore demo``: the same, plus the Modbus simulator, embedded services
  where none answer, and a demo operator whose credentials it prints.
- ``plantcore users create``: register an operator (the first admin, say)
  and print their one-time enrolment token: they log in and enrol their own
  authenticator with it (``enrollTotpWithToken``), so whoever ran the command
  never holds their second factor. The password comes from
  ``PLANTCORE_NEW_PASSWORD``, the file ``PLANTCORE_NEW_PASSWORD_FILE`` or the
  prompt; there is no default.
- ``plantcore secrets-key``: print a new key for ``PLANTCORE_SECRETS_KEY``.
- ``plantcore audit``: verify, export and sign the event log, and run the
  checkpoint signer (see :mod:`plantcore.audit_cli`).
- ``plantcore history export``: one device's tags over a time range to a CSV or
  Parquet file, for analysts (see :mod:`plantcore.history_cli`).
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

import psycopg

from api.credentials import MIN_PASSWORD_LENGTH
from api.secrets import generate_key
from domain.errors import DomainError, OperatorExists
from domain.permissions import Role
from eventstore.roles import PlantRoles, role_url
from plantcore.audit_cli import add_audit_commands, run_audit
from plantcore.database_role import DatabaseNotInitialised, RunsAsOwner
from plantcore.db_init import AdminRequired, initialise_database
from plantcore.demo import run_demo
from plantcore.history_cli import add_history_commands, run_history
from plantcore.open_application import EventStoreNotPrepared, open_application
from plantcore.operators import create_operator
from plantcore.runtime import PlantRuntime, runtime_config
from plantcore.settings import MissingSecret, Settings, jwt_secret, retention_policy
from plantfile.catalog_builder import tag_catalog
from plantfile.loader import PlantConfigError, load_plant_file, read_plant_file
from support.secret_source import SecretSourceError, environment_secret

log = logging.getLogger("plantcore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the plant core for the plant file")
    run.add_argument(
        "--allow-owner",
        action="store_true",
        help="connect to PostgreSQL even as a superuser or the tables' owner (not in production)",
    )
    db = commands.add_parser("db", help="the plant's database").add_subparsers(
        dest="db_command", required=True
    )
    init = db.add_parser(
        "init", help="create or repair the database roles, tables and privileges (idempotent)"
    )
    init.add_argument(
        "--admin-url", help="a superuser's URL of the plant's database (PLANTCORE_DB_ADMIN_URL)"
    )
    init.add_argument(
        "--role-prefix",
        help="the roles are <prefix>_owner, _runtime, _auditor and _analyst"
        " (PLANTCORE_DB_ROLE_PREFIX)",
    )
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
    add_history_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "secrets-key":
        print(generate_key())
        return 0
    if args.command == "audit":
        return run_audit(args)
    if args.command == "history":
        return run_history(args)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Protocol stacks narrate every session and request at INFO: their warnings suffice.
    for chatty in ("asyncua", "pymodbus", "snap7", "pycomm3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return _command(Settings(), args)
    except (
        PlantConfigError,
        MissingSecret,
        RunsAsOwner,
        AdminRequired,
        DatabaseNotInitialised,
        EventStoreNotPrepared,
    ) as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2


def _command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(settings, allow_owner=args.allow_owner)
    if args.command == "demo":
        return _interruptible(run_demo(settings))
    if args.command == "db":
        return _db_init(settings, args)
    return _create_user(settings, args)


def _db_init(settings: Settings, args: argparse.Namespace) -> int:
    admin_url = args.admin_url or settings.db_admin_url
    if not admin_url:
        print("plantcore: db init needs --admin-url or PLANTCORE_DB_ADMIN_URL", file=sys.stderr)
        return 2
    try:
        roles = PlantRoles.named(args.role_prefix or settings.db_role_prefix)
        passwords = {
            role: password
            for role, variable in (
                (roles.runtime, "PLANTCORE_DB_RUNTIME_PASSWORD"),
                (roles.auditor, "PLANTCORE_DB_AUDITOR_PASSWORD"),
                (roles.analyst, "PLANTCORE_DB_ANALYST_PASSWORD"),
            )
            if (password := environment_secret(variable))
        }
        asyncio.run(
            initialise_database(admin_url, roles, passwords, retention=retention_policy(settings))
        )
    except (ValueError, psycopg.OperationalError, OSError) as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2
    # The URLs without their passwords: this goes to a terminal or a log.
    print(f"database ready; {roles.owner} owns its tables")
    print(f"runtime: {role_url(admin_url, roles.runtime)}")
    print(f"auditor: {role_url(admin_url, roles.auditor)}")
    print(f"analyst: {role_url(admin_url, roles.analyst)}")
    return 0


def _run(settings: Settings, *, allow_owner: bool) -> int:
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
    config = replace(
        config,
        plant_problems=tuple(str(problem) for problem in loaded.problems),
        allow_owner=allow_owner,
    )
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
        grant = create_operator(
            app,
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
    print(f"created {grant.username} ({', '.join(sorted(set(args.roles)))})")
    print(f"enrolment token: {grant.enrolment_token}")
    print(f"valid until:     {grant.expires_at.isoformat(timespec='seconds')}")
    print("log in, then enrol an authenticator: enrollTotpWithToken (docs/security.md)")
    return 0
