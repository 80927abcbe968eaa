"""Every file plantcore writes a key or a credential to is its owner's alone from its first byte.

Each writer runs under the usual umask (022) and under none at all (0), where
a file created with the default mode is readable and writable by everyone
until a later ``chmod``. The file's mode is read right after it is written,
and the way it came to exist is checked against the interpreter's audit
events (:mod:`tests.private_files`): created by an ``O_EXCL`` open with mode
0600 (a log that grows, by an open with mode 0600), never ``chmod``-ed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.secrets import SecretBox, generate_key
from audit.checkpoints import Checkpoint, CheckpointWriter, generate_signing_key
from plantcore.cli import main
from plantcore.operators import DEMO_AUDIT_KEY, demo_audit_key, demo_operator, demo_secrets_key
from simulators.certificates import generate_application_certificate
from tests.private_files import watching_files
from tests.unit.domain.plant import make_app


def demo_secrets(directory: Path) -> Path:
    demo_secrets_key(directory)
    return directory / "secrets.key"


def demo_signing_key(directory: Path) -> Path:
    demo_audit_key(directory)
    return directory / DEMO_AUDIT_KEY


def demo_credentials(directory: Path) -> Path:
    demo_operator(make_app(), SecretBox.from_text(generate_key()), directory)
    return directory / "demo-operator.json"


def audit_keygen(directory: Path) -> Path:
    path = directory / "audit-signing.pem"
    assert main(["audit", "keygen", "--out", str(path)]) == 0
    return path


def opcua_private_key(directory: Path) -> Path:
    pair = generate_application_certificate(
        directory, "press", "urn:plantcore:test:press", role="server"
    )
    return pair.private_key


def checkpoint_file(directory: Path) -> Path:
    path = directory / "audit-checkpoints.jsonl"
    checkpoint = Checkpoint.sign(generate_signing_key(), 1, bytes(32), datetime.now(UTC))
    asyncio.run(CheckpointWriter(path).write(checkpoint))
    return path


KEY_WRITERS: dict[str, Callable[[Path], Path]] = {
    "demo secrets key": demo_secrets,
    "demo checkpoint signing key": demo_signing_key,
    "demo operator's password and TOTP secret": demo_credentials,
    "plantcore audit keygen": audit_keygen,
    "OPC UA simulator's private key": opcua_private_key,
}


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
@pytest.mark.parametrize("writer", list(KEY_WRITERS), ids=str)
def test_a_key_or_credential_file_is_created_exclusively_with_mode_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], writer: str, umask: int
) -> None:
    with watching_files(umask=umask) as watch:
        path = KEY_WRITERS[writer](tmp_path)
    watch.assert_private(path)


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_the_checkpoint_file_is_created_with_mode_0600(tmp_path: Path, umask: int) -> None:
    with watching_files(umask=umask) as watch:
        path = checkpoint_file(tmp_path)
    watch.assert_private(path, exclusive=False)  # a log that grows: opened to append


def test_a_regenerated_private_key_replaces_the_old_one_whole(tmp_path: Path) -> None:
    first = opcua_private_key(tmp_path).read_bytes()
    with watching_files() as watch:
        path = opcua_private_key(tmp_path)
    watch.assert_private(path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["press.der", "press.key.pem"]


def test_the_demo_keys_are_kept_across_runs(tmp_path: Path) -> None:
    box = demo_secrets_key(tmp_path)
    again = demo_secrets_key(tmp_path)
    assert again.open(box.seal("JBSWY3DP", username="ana"), username="ana") == "JBSWY3DP"
    signing = demo_audit_key(tmp_path)
    assert demo_audit_key(tmp_path).public_key() == signing.public_key()
