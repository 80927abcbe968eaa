"""Signed checkpoints of the chain head, kept where the database administrator cannot reach.

The hash chain proves a row was changed, removed or inserted only while the
rest of the chain is left as it was: whoever can rewrite the table can also
recompute every hash after the row they changed. A checkpoint says "at this
time, the row at position P had chain hash H", signed with an Ed25519 key the
database never holds. Checkpoints go to a file (append-only, one JSON line
each) and to NATS (``plant.audit.checkpoints``, stream ``AUDIT``), so copies
live outside the database; ``plantcore audit verify --checkpoints`` then catches
a chain rewritten from any position before a checkpoint.

Signed bytes (UTF-8)::

    plantcore-audit-checkpoint/1\\n<position>\\n<chain hash hex>\\n<at>\\n<key id>

with ``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` and the key id the first 8 bytes
of sha256(raw public key), in hex.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from audit.chain_check import ExpectedHead, Finding, Kind
from eventstore.chain import HASH_SIZE, chain_head
from support.private_file import append_private

log = logging.getLogger(__name__)

SUBJECT = "plant.audit.checkpoints"
STREAM = "AUDIT"
SCHEMA = 1
_SIGNED_PREFIX = "plantcore-audit-checkpoint/1"


class InvalidCheckpoint(ValueError):
    """A checkpoint that is malformed, or whose signature does not hold."""


def _canonical_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("a checkpoint time must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short, stable name for a key pair: sha256 of the raw public key, first 8 bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    position: int
    chain_hash: bytes
    at: datetime
    key_id: str
    signature: bytes

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, position: int, chain_hash: bytes, at: datetime
    ) -> Checkpoint:
        if len(chain_hash) != HASH_SIZE:
            raise ValueError(f"a chain hash has {HASH_SIZE} bytes")
        kid = key_id(key)
        message = _signed_bytes(position, chain_hash, at, kid)
        return cls(position, chain_hash, at.astimezone(UTC), kid, key.sign(message))

    def verify(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        """Raise :class:`InvalidCheckpoint` unless one of ``keys`` signed exactly this."""
        key = keys.get(self.key_id)
        if key is None:
            raise InvalidCheckpoint(
                f"the checkpoint at position {self.position} is signed by key {self.key_id},"
                " which is not one of the public keys given"
            )
        try:
            key.verify(
                self.signature,
                _signed_bytes(self.position, self.chain_hash, self.at, self.key_id),
            )
        except InvalidSignature:
            raise InvalidCheckpoint(
                f"the checkpoint at position {self.position} ({_canonical_time(self.at)})"
                f" does not match its signature by key {self.key_id}: it was altered or forged"
            ) from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA,
                "position": self.position,
                "chain_hash": self.chain_hash.hex(),
                "at": _canonical_time(self.at),
                "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode("ascii"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> Checkpoint:
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                raise InvalidCheckpoint(f"not a schema {SCHEMA} checkpoint")
            position = data["position"]
            if not isinstance(position, int) or isinstance(position, bool):
                raise InvalidCheckpoint("position must be an integer")
            chain_hash = bytes.fromhex(data["chain_hash"])
            if len(chain_hash) != HASH_SIZE:
                raise InvalidCheckpoint(f"chain_hash must have {HASH_SIZE} bytes")
            at = datetime.fromisoformat(data["at"])
            if at.tzinfo is None:
                raise InvalidCheckpoint("at must carry a time zone")
            kid = data["key_id"]
            if not isinstance(kid, str):
                raise InvalidCheckpoint("key_id must be a string")
            signature = base64.b64decode(data["signature"], validate=True)
        except InvalidCheckpoint:
            raise
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidCheckpoint(f"not a checkpoint: {exc}") from exc
        return cls(position, chain_hash, at.astimezone(UTC), kid, signature)

    def as_expected(self) -> ExpectedHead:
        return ExpectedHead(
            self.position,
            self.chain_hash,
            f"the checkpoint signed at {_canonical_time(self.at)} by key {self.key_id}",
        )


def _signed_bytes(position: int, chain_hash: bytes, at: datetime, kid: str) -> bytes:
    text = "\n".join((_SIGNED_PREFIX, str(position), chain_hash.hex(), _canonical_time(at), kid))
    return text.encode("utf-8")


# -- keys ----------------------------------------------------------------------


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_text(key: Ed25519PrivateKey) -> str:
    """PKCS#8 PEM, unencrypted: keep the file readable by the plant core only (0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """SubjectPublicKeyInfo PEM (``openssl pkey -pubin`` reads it)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _key_material(text_or_file: str | Path, what: str) -> bytes:
    if isinstance(text_or_file, Path):
        try:
            return text_or_file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the {what} {text_or_file}: {exc}") from exc
    return text_or_file.strip().encode("ascii", errors="replace")


def _raw_key(material: bytes) -> bytes | None:
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            raw = decode(material + b"=" * (-len(material) % 4))
            if len(raw) == 32:
                return raw
    return None


def load_signing_key(text_or_file: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key: PEM (PKCS#8) or base64 of its 32 raw bytes; a Path is read."""
    material = _key_material(text_or_file, "signing key")
    if material.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(material, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the signing key is not a readable PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key must be an Ed25519 key")
        return key
    raw = _raw_key(material)
    if raw is None:
        raise ValueError("the signing key must be PEM or base64 of 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(text_or_file: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key: PEM (SubjectPublicKeyInfo) or base64 of its 32 raw bytes."""
    material = _key_material(text_or_file, "public key")
    if material.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(material)
        except ValueError as exc:
            raise ValueError(f"the public key is not a readable PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key must be an Ed25519 key")
        return key
    raw = _raw_key(material)
    if raw is None:
        raise ValueError("the public key must be PEM or base64 of 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_keys(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    return {key_id(key): key for key in keys}


# -- reading and checking ------------------------------------------------------


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint in a file of JSON lines; a malformed line is named by its number."""
    checkpoints = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                checkpoints.append(Checkpoint.from_json(line))
            except InvalidCheckpoint as exc:
                raise InvalidCheckpoint(f"{path}:{number}: {exc}") from None
    return checkpoints


def last_checkpoint(path: Path) -> Checkpoint | None:
    """The last checkpoint of a file of them; None when there is none, or it is malformed."""
    if not path.exists():
        return None
    last = None
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                last = line
    if last is None:
        return None
    try:
        return Checkpoint.from_json(last)
    except InvalidCheckpoint:
        return None


async def last_published_checkpoint(
    js: JetStreamContext, stream: str = STREAM, subject: str = SUBJECT
) -> Checkpoint | None:
    """The last checkpoint on NATS (the signer's, wherever it runs); None when there is none."""
    try:
        message = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    if message.data is None:
        return None
    try:
        return Checkpoint.from_json(message.data)
    except InvalidCheckpoint:
        return None


def verified_heads(
    checkpoints: Iterable[Checkpoint], keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[ExpectedHead], list[Finding]]:
    """The heads the checkpoints vouch for, and a ``bad_checkpoint`` finding per forged one."""
    heads: list[ExpectedHead] = []
    refused: list[Finding] = []
    for checkpoint in checkpoints:
        try:
            checkpoint.verify(keys)
        except InvalidCheckpoint as exc:
            refused.append(Finding(Kind.BAD_CHECKPOINT, checkpoint.position, str(exc)))
        else:
            heads.append(checkpoint.as_expected())
    return heads, refused


# -- writing -------------------------------------------------------------------


def audit_stream_config(
    name: str = STREAM, subjects: Iterable[str] = (SUBJECT,), max_age_days: float = 0
) -> StreamConfig:
    """Limits retention; ``max_age_days`` 0 keeps checkpoints as long as the disk allows."""
    return StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_days * 86400.0,
        duplicate_window=120.0,
    )


class CheckpointWriter:
    """Appends each checkpoint to a file (fsynced; made with mode 0600) and publishes it on NATS.

    Either may be None. A NATS failure is logged and does not stop the file;
    the message id (key and position) makes a re-publish land once.
    """

    def __init__(
        self,
        path: Path | None = None,
        js: JetStreamContext | None = None,
        subject: str = SUBJECT,
    ) -> None:
        if path is None and js is None:
            raise ValueError("a checkpoint writer needs a file, NATS or both")
        self.path = path
        self.js = js
        self.subject = subject

    def last_written(self) -> Checkpoint | None:
        """The last checkpoint in the file, if any (to resume without repeating it)."""
        return None if self.path is None else last_checkpoint(self.path)

    async def write(self, checkpoint: Checkpoint) -> None:
        line = checkpoint.to_json()
        if self.path is not None:
            await asyncio.to_thread(append_private, self.path, (line + "\n").encode("utf-8"))
        if self.js is not None:
            try:
                await self.js.publish(
                    self.subject,
                    line.encode("utf-8"),
                    headers={
                        "Nats-Msg-Id": f"checkpoint:{checkpoint.key_id}:{checkpoint.position}"
                    },
                )
            except (NatsError, TimeoutError) as exc:
                log.warning("checkpoint at %d not published on NATS: %s", checkpoint.position, exc)


async def read_head(conninfo: str, table: str) -> tuple[int, bytes] | None:
    """The chain head (position, hash), or None for an empty log or a head without a hash."""

    def read() -> tuple[int, bytes] | None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            head = chain_head(conn, table)
        if head is None:
            return None
        if head.chain_hash is None:
            log.warning("the head of %s at position %d has no chain hash", table, head.position)
            return None
        return head.position, head.chain_hash

    return await asyncio.to_thread(read)


async def sign_head(
    conninfo: str,
    table: str,
    key: Ed25519PrivateKey,
    writer: CheckpointWriter,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    unless_at: int | None = None,
) -> Checkpoint | None:
    """Sign and write the current head, unless the log is empty or the head is ``unless_at``."""
    head = await read_head(conninfo, table)
    if head is None or head[0] == unless_at:
        return None
    checkpoint = Checkpoint.sign(key, head[0], head[1], now())
    await writer.write(checkpoint)
    return checkpoint


async def run_checkpoints(
    conninfo: str,
    table: str,
    key: Ed25519PrivateKey,
    writer: CheckpointWriter,
    *,
    interval: float,
    stop: asyncio.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Every ``interval`` seconds, sign the chain head if it moved since the last checkpoint.

    The first tick is at once; after ``stop`` is set, the task ends after its
    current wait (a ``stop`` set from the start gives exactly one tick). On a
    restart it does not repeat the last checkpoint of its file. A database or
    file error is logged and retried at the next tick.
    """
    if interval <= 0:
        raise ValueError("the checkpoint interval must be positive")
    stop = stop or asyncio.Event()
    last = writer.last_written()
    signed_at = last.position if last is not None and last.key_id == key_id(key) else None
    while True:
        try:
            checkpoint = await sign_head(conninfo, table, key, writer, now=now, unless_at=signed_at)
        except (psycopg.Error, OSError) as exc:
            log.warning("no checkpoint this time: %s", exc)
        else:
            if checkpoint is not None:
                signed_at = checkpoint.position
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            continue
        return
