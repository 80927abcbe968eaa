"""The ``plantcore`` command line, run as an administrator would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from api.credentials import verify_password
from api.secrets import SecretBox, generate_key
from domain.application import PlantApplication
from domain.errors import SecondFactorRefused
from eventstore.postgres import event_store_env
from plantcore.operators import enrol_with_token
from plantfile.catalog_builder import tag_catalog
from plantfile.loader import load_plant_file
from tests.support import unique

# The key sealing TOTP secrets, as an administrator would export it for the CLI.
SECRETS_KEY = generate_key()


def plantcore(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantcore", *args],
        env={**os.environ, "PLANTCORE_SECRETS_KEY": SECRETS_KEY, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_users_create_registers_an_operator_who_enrols_with_a_token(own_database: str) -> None:
    username = unique("alice")
    password = "correct horse battery staple"

    created = plantcore(
        "users", "create", username, "--full-name", "Alice Example",
        "--role", "operator", "--role", "analyst", "--scope", "area:stamping",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD=password,
    )  # fmt: skip

    assert created.returncode == 0, created.stderr
    # Whoever ran it holds a token for the operator to enrol with, never their authenticator.
    assert "otpauth" not in created.stdout
    token = created.stdout.split("enrolment token:")[1].split()[0]
    app = PlantApplication(
        tag_catalog(load_plant_file("config/demo-plant.yaml")), env=event_store_env(own_database)
    )
    try:
        operator = app.get_operator(username)
        assert (operator.full_name, operator.roles) == ("Alice Example", ("analyst", "operator"))
        assert operator.scopes == ("area:stamping",)
        assert verify_password(operator.password_hash, password)
        assert not operator.totp_enrolled
        # The operator enrols with it, once; the log holds the secret sealed.
        box = SecretBox.from_text(SECRETS_KEY)
        secret = enrol_with_token(app, box, username=username, enrolment_token=token)
        enrolled = app.get_operator(username)
        assert box.open(enrolled.totp_secret_sealed, username=username) == secret
        with pytest.raises(SecondFactorRefused):
            enrol_with_token(app, box, username=username, enrolment_token=token)
    finally:
        app.close()

    again = plantcore(
        "users", "create", username, "--full-name", "Alice Again", "--role", "admin",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD=password,
    )  # fmt: skip
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_the_first_operator_is_already_append_only(own_database: str) -> None:
    created = plantcore(
        "users", "create", unique("admin"), "--full-name", "First Admin", "--role", "admin",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD="a long enough secret",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    with psycopg.connect(own_database, autocommit=True) as conn:
        for statement in (
            "UPDATE plantapplication_events SET state = state",
            "DELETE FROM plantapplication_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        # The operator's Registered and EnrolmentTokenIssued, the directory's Opened and
        # OperatorListed.
        assert conn.execute("SELECT count(*) FROM plantapplication_events").fetchone() == (4,)


def test_users_create_refuses_a_short_password(own_database: str) -> None:
    result = plantcore(
        "users", "create", unique("bob"), "--full-name", "Bob", "--role", "viewer",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD="short",
    )  # fmt: skip
    assert result.returncode == 2
    assert "at least 12 characters" in result.stderr


def test_run_refuses_to_start_without_a_token_secret() -> None:
    env = {key: value for key, value in os.environ.items() if key != "PLANTCORE_JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "plantcore", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PLANTCORE_JWT_SECRET" in result.stderr


def test_users_create_seals_nothing_so_needs_no_secrets_key(own_database: str) -> None:
    result = plantcore(
        "users", "create", unique("carol"), "--full-name", "Carol", "--role", "admin",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD="a long enough secret",
        PLANTCORE_SECRETS_KEY="",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "enrolment token:" in result.stdout


def test_users_create_refuses_an_unknown_scope(own_database: str) -> None:
    result = plantcore(
        "users", "create", unique("dan"), "--full-name", "Dan", "--role", "operator",
        "--scope", "line:3",
        PLANTCORE_DATABASE_URL=own_database, PLANTCORE_NEW_PASSWORD="a long enough secret",
    )  # fmt: skip
    assert result.returncode == 2
    assert "'line:3' is not a scope" in result.stderr


def test_secrets_key_prints_a_key_that_opens() -> None:
    result = plantcore("secrets-key")
    assert result.returncode == 0
    box = SecretBox.from_text(result.stdout.strip())
    assert box.open(box.seal("JBSWY3DPEHPK3PXP", username="x"), username="x") == "JBSWY3DPEHPK3PXP"


def test_a_bad_plant_file_is_named_with_its_line_and_field(tmp_path: Path) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text(
        "plant_id: p\npoll_seconds: 0\ndevices:\n  - id: press-1\n    protocol: modbus\n"
        "    modbus: {host: 127.0.0.1}\n"
        "    tags: [{name: speed, address: 2, type: uint16}]\n"
    )
    result = plantcore("run", PLANTCORE_PLANT_FILE=str(plant), PLANTCORE_JWT_SECRET="s" * 40)
    assert result.returncode == 2
    assert f"{plant}:2: poll_seconds: Input should be greater than 0" in result.stderr
