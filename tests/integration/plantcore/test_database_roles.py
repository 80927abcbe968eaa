"""The plant core's database roles, as an administrator meets them on the command line.

``plantcore db init`` makes the roles and says how to connect as each;
``plantcore run`` refuses to connect as a role that could alter the event log,
unless told ``--allow-owner``; and the checkpoint signer runs as a process of
its own, with its key, beside a runtime that has none.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from nats.js import JetStreamContext
from psycopg import sql

from api.secrets import generate_key
from audit.checkpoints import (
    generate_signing_key,
    private_key_text,
    public_key_text,
    read_checkpoints,
)
from eventstore.roles import PlantRoles, role_url
from plantcore.db_init import InitialisedDatabase
from tests.support import (
    delete_runtime_consumers,
    drop_roles,
    eventually,
    free_port,
    runtime_event_stream,
    unique,
)

pytestmark = pytest.mark.integration

# Settings that would lead a command astray if the test run's environment had them.
_UNSET = ("PLANTCORE_AUDIT_SIGNING_KEY", "PLANTCORE_AUDIT_SIGNING_KEY_FILE", "PLANTCORE_DB_")


def plantcore_env(**settings: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_UNSET)}
    return {**inherited, **settings}


def plantcore(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantcore", *args],
        env=plantcore_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def background(args: list[str], log: Path, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """``plantcore <args>`` running until the block ends (then SIGTERM, as a service manager)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "plantcore", *args],
            env=plantcore_env(**settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- db init -------------------------------------------------------------------------------


@pytest.fixture
def role_prefix(own_database: str) -> Iterator[str]:
    prefix = unique("plantcore").replace("-", "_")
    yield prefix
    drop_roles(own_database, PlantRoles.named(prefix))


def test_db_init_makes_the_roles_says_how_to_connect_and_runs_again(
    own_database: str, role_prefix: str
) -> None:
    first = plantcore("db", "init", "--admin-url", own_database, "--role-prefix", role_prefix)
    # Again with the history kept shorter: what the drop function obeys, from the settings.
    again = plantcore("db", "init", PLANTCORE_DB_ADMIN_URL=own_database,
                      PLANTCORE_DB_ROLE_PREFIX=role_prefix, PLANTCORE_HISTORY_RAW_DAYS="7",
                      PLANTCORE_HISTORY_MINUTE_DAYS="90",
                      PLANTCORE_HISTORY_HOUR_DAYS="730")  # fmt: skip

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    urls = dict(re.findall(r"^(runtime|auditor): (\S+)$", first.stdout, flags=re.MULTILINE))
    for kind, url in urls.items():
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (f"{role_prefix}_{kind}",)
    assert sorted(urls) == ["auditor", "runtime"]
    assert f"{role_prefix}_owner owns its tables" in first.stdout
    with psycopg.connect(own_database) as conn:
        retention = conn.execute(
            "SELECT table_name::text, days FROM plantcore_history_retention ORDER BY days"
        ).fetchall()
    assert retention == [("samples", 7), ("samples_1m", 90), ("samples_1h", 730)]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "db init needs --admin-url or PLANTCORE_DB_ADMIN_URL"),
        (("--admin-url", "ADMIN", "--role-prefix", "Plant-Core"), "a plain lower-case identifier"),
        (("--admin-url", "RUNTIME"), "_runtime is not a superuser"),
    ],
)
def test_db_init_refuses_what_it_cannot_do_with_a_clear_error(
    plant_roles: InitialisedDatabase, own_database: str, args: tuple[str, ...], error: str
) -> None:
    urls = {"ADMIN": own_database, "RUNTIME": plant_roles.runtime_url}

    result = plantcore("db", "init", *(urls.get(arg, arg) for arg in args))

    assert result.returncode == 2
    assert error in result.stderr


# -- run refuses more rights than it needs --------------------------------------------------


@pytest.fixture
def login_as(own_database: str) -> Iterator[Callable[[str], str]]:
    """Makes a login role of this test's with ``options`` (SQL), returning its URL."""
    made: list[str] = []

    def make(options: str) -> str:
        role = unique("login").replace("-", "_")
        with psycopg.connect(own_database, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + options).format(sql.Identifier(role)))
        made.append(role)
        return role_url(own_database, role)

    yield make
    with psycopg.connect(own_database, autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("superuser", "is a superuser"),
        ("member of the owner", "owns the events table"),
        ("CREATEROLE", "has CREATEROLE, so it can make itself the owner"),
    ],
)
def test_run_refuses_a_role_that_could_alter_the_event_log(
    plant_roles: InitialisedDatabase,
    own_database: str,
    login_as: Callable[[str], str],
    who: str,
    why: str,
) -> None:
    owner = sql.Identifier(plant_roles.roles.owner).as_string()
    database_url = {
        "superuser": lambda: own_database,
        "member of the owner": lambda: login_as(f"IN ROLE {owner}"),
        "CREATEROLE": lambda: login_as("CREATEROLE"),
    }[who]()

    result = plantcore(
        "run", PLANTCORE_DATABASE_URL=database_url, PLANTCORE_JWT_SECRET="s" * 40,
        PLANTCORE_SECRETS_KEY=generate_key(),
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert why in result.stderr
    assert "refusing to run" in result.stderr
    assert "--allow-owner" in result.stderr


def test_run_as_an_ordinary_role_before_db_init_says_to_run_it(
    login_as: Callable[[str], str],
) -> None:
    result = plantcore(
        "run", PLANTCORE_DATABASE_URL=login_as(""), PLANTCORE_JWT_SECRET="s" * 40,
        PLANTCORE_SECRETS_KEY=generate_key(),
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "plantapplication_events" in result.stderr
    assert "run `plantcore db init` first" in result.stderr


class Plantcore:
    """``plantcore run`` in the background, on a plant without devices, and its log."""

    def __init__(self, tmp_path: Path, nats_url: str, redis_url: str) -> None:
        self.port = free_port()
        self.prefix = unique("roles") + "-"
        self.log = tmp_path / f"plantcore-{self.prefix}log"
        plant = tmp_path / "plant.yaml"
        plant.write_text("plant_id: roles-test\ndevices: []\n")
        stream, subjects = runtime_event_stream(self.prefix)
        self.settings = {
            "PLANTCORE_NATS_URL": nats_url,
            "PLANTCORE_REDIS_URL": redis_url,
            "PLANTCORE_JWT_SECRET": "s" * 40,
            "PLANTCORE_SECRETS_KEY": generate_key(),
            "PLANTCORE_PLANT_FILE": str(plant),
            "PLANTCORE_HTTP_PORT": str(self.port),
            "PLANTCORE_STATE_DIR": str(tmp_path / "state"),
            "PLANTCORE_CONSUMER_PREFIX": self.prefix,
            "PLANTCORE_EVENTS_STREAM": stream,
            "PLANTCORE_EVENTS_SUBJECT_PREFIX": subjects,
            "PLANTCORE_PROJECTIONS_START": "new",
        }

    def running(
        self, *args: str, database_url: str
    ) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        return background(
            ["run", *args], self.log, PLANTCORE_DATABASE_URL=database_url, **self.settings
        )

    async def serving(self, process: subprocess.Popen[bytes]) -> None:
        """Wait until the API reports every service healthy."""

        async def healthy() -> None:
            assert process.poll() is None, self.log.read_text()
            async with httpx.AsyncClient() as http:
                try:
                    response = await http.get(f"http://127.0.0.1:{self.port}/health")
                except httpx.TransportError as exc:
                    raise AssertionError(f"not serving yet: {exc}") from exc
            assert response.status_code == 200, response.text

        await eventually(healthy, timeout=60, interval=0.2)


@pytest.fixture
async def plant_core(
    tmp_path: Path, nats_url: str, redis_url: str, js: JetStreamContext
) -> AsyncIterator[Plantcore]:
    core = Plantcore(tmp_path, nats_url, redis_url)
    yield core
    await delete_runtime_consumers(js, core.prefix)


async def test_run_with_allow_owner_starts_as_a_superuser(
    own_database: str, plant_core: Plantcore
) -> None:
    with plant_core.running("--allow-owner", database_url=own_database) as process:
        await plant_core.serving(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert "who may alter the event log (--allow-owner)" in plant_core.log.read_text()


# -- the signer, apart from the runtime -----------------------------------------------------


async def test_the_signer_signs_the_log_of_a_runtime_that_has_no_key(
    plant_roles: InitialisedDatabase, own_database: str, plant_core: Plantcore, tmp_path: Path
) -> None:
    key = generate_signing_key()
    key_file = tmp_path / "signing.pem"
    key_file.write_text(private_key_text(key))
    key_file.chmod(0o600)
    public_file = tmp_path / "signing.pub"
    public_file.write_text(public_key_text(key))
    checkpoints = tmp_path / "checkpoints.jsonl"
    signer_log = tmp_path / "signer.log"

    def head() -> int | None:
        with psycopg.connect(own_database) as conn:
            row = conn.execute("SELECT max(notification_id) FROM plantapplication_events")
            (position,) = row.fetchone() or (None,)
        assert position is None or isinstance(position, int)
        return position

    def signed() -> list[int]:
        return [c.position for c in read_checkpoints(checkpoints)] if checkpoints.exists() else []

    # The runtime as the runtime role, without the key; the signer as the auditor, with it.
    signing = ["audit", "signer", "--signing-key", str(key_file), "--out", str(checkpoints),
               "--every", "0.2", "--no-nats"]  # fmt: skip
    with (
        plant_core.running(database_url=plant_roles.runtime_url) as runtime,
        background(signing, signer_log, PLANTCORE_DATABASE_URL=plant_roles.auditor_url) as signer,
    ):

        async def head_signed() -> None:
            assert signer.poll() is None, signer_log.read_text()
            assert signed()[-1:] == [head()]

        await plant_core.serving(runtime)
        await eventually(head_signed, timeout=20)
        # The runtime role serves the CLI too: the first admin moves the head on.
        created = plantcore(
            "users", "create", "ada", "--full-name", "Ada Admin", "--role", "admin",
            PLANTCORE_DATABASE_URL=plant_roles.runtime_url,
            PLANTCORE_SECRETS_KEY=plant_core.settings["PLANTCORE_SECRETS_KEY"],
            PLANTCORE_NEW_PASSWORD="a long enough secret",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        await eventually(head_signed, timeout=20)
        signer.send_signal(signal.SIGTERM)
        assert signer.wait(30) == 0

    verified = plantcore(
        "audit", "verify", "--checkpoints", str(checkpoints), "--public-key", str(public_file),
        PLANTCORE_DATABASE_URL=plant_roles.auditor_url,
    )  # fmt: skip
    count = len(signed())
    assert count >= 2
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{count} of {count} checkpoints match" in verified.stdout
    assert "no audit signing key" in plant_core.log.read_text()
