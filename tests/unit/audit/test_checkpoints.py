"""Signed checkpoints: what is signed verifies, anything altered or forged is refused."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.chain_check import Kind
from audit.checkpoints import (
    Checkpoint,
    CheckpointWriter,
    InvalidCheckpoint,
    audit_stream_config,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    private_key_text,
    public_key_text,
    public_keys,
    read_checkpoints,
    verified_heads,
)

AT = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
HEAD = bytes(range(32))


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return generate_signing_key()


def test_a_signed_checkpoint_verifies_after_a_json_round_trip(key: Ed25519PrivateKey) -> None:
    checkpoint = Checkpoint.sign(key, 1234, HEAD, AT)
    line = checkpoint.to_json()
    assert "\n" not in line
    assert json.loads(line)["at"] == "2026-03-01T08:00:00.123456Z"

    again = Checkpoint.from_json(line)
    assert again == checkpoint
    again.verify(public_keys([key.public_key()]))


@pytest.mark.parametrize(
    "change",
    [
        {"position": 1235},
        {"chain_hash": bytes(32)},
        {"at": AT + timedelta(seconds=1)},
        {"signature": bytes(64)},
    ],
)
def test_an_altered_checkpoint_is_refused(
    key: Ed25519PrivateKey, change: dict[str, object]
) -> None:
    altered = replace(Checkpoint.sign(key, 1234, HEAD, AT), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidCheckpoint, match="altered or forged"):
        altered.verify(public_keys([key.public_key()]))


def test_a_checkpoint_forged_with_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    forger = generate_signing_key()
    forged = Checkpoint.sign(forger, 1234, HEAD, AT)
    keys = public_keys([key.public_key()])
    with pytest.raises(InvalidCheckpoint, match="not one of the public keys"):
        forged.verify(keys)
    # Claiming the real key's id does not help: the signature is checked with that key.
    impostor = replace(forged, key_id=key_id(key))
    with pytest.raises(InvalidCheckpoint, match="altered or forged"):
        impostor.verify(keys)


def test_verified_heads_keep_the_good_and_report_the_forged(key: Ed25519PrivateKey) -> None:
    good = Checkpoint.sign(key, 10, HEAD, AT)
    forged = replace(Checkpoint.sign(key, 20, HEAD, AT), chain_hash=bytes(32))
    heads, refused = verified_heads([good, forged], public_keys([key.public_key()]))
    assert [(head.position, head.chain_hash) for head in heads] == [(10, HEAD)]
    assert [(finding.kind, finding.position) for finding in refused] == [(Kind.BAD_CHECKPOINT, 20)]


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"schema": 2}',
        '{"schema": 1, "position": "7", "chain_hash": "00", "at": "x", "key_id": "k",'
        ' "signature": ""}',
        '{"schema": 1, "position": 7, "chain_hash": "0011", "at": "2026-03-01T08:00:00Z",'
        ' "key_id": "k", "signature": ""}',
        '{"schema": 1, "position": 7, "chain_hash": "' + "00" * 32 + '",'
        ' "at": "2026-03-01T08:00:00", "key_id": "k", "signature": ""}',
    ],
)
def test_a_malformed_checkpoint_line_is_refused(line: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.from_json(line)


def test_keys_load_from_pem_or_raw_base64(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    pem = private_key_text(key)
    path = tmp_path / "signing.pem"
    path.write_text(pem)
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    for source in (
        pem,
        path,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    ):
        assert key_id(load_signing_key(source)) == key_id(key)

    public_pem = public_key_text(key)
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for source in (public_pem, base64.b64encode(public_raw).decode()):
        assert key_id(load_public_key(source)) == key_id(key)

    with pytest.raises(ValueError, match="PEM or base64 of 32 bytes"):
        load_signing_key("not a key")
    with pytest.raises(ValueError, match="cannot read"):
        load_signing_key(tmp_path / "absent.pem")


async def test_the_writer_appends_lines_that_read_back(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    writer = CheckpointWriter(path)
    assert writer.last_written() is None
    first = Checkpoint.sign(key, 10, HEAD, AT)
    second = Checkpoint.sign(key, 20, bytes(32), AT + timedelta(minutes=1))
    await writer.write(first)
    await writer.write(second)

    assert read_checkpoints(path) == [first, second]
    assert writer.last_written() == second
    with path.open("a") as out:
        out.write("garbage\n")
    with pytest.raises(InvalidCheckpoint, match=r"checkpoints.jsonl:3"):
        read_checkpoints(path)


def test_the_audit_stream_keeps_checkpoints_by_limits() -> None:
    config = audit_stream_config()
    assert (config.name, config.subjects) == ("AUDIT", ["plant.audit.checkpoints"])
    assert config.retention is not None
    assert config.retention.value == "limits"
    assert config.max_age == 0
