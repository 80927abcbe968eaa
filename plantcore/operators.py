"""Creating operators from the command line, and the demo's own operator and keys."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.credentials import hash_password, new_totp_secret, provisioning_uri, verify_password
from api.secrets import SecretBox, UnsealError, generate_key
from audit.checkpoints import (
    generate_signing_key,
    load_signing_key,
    private_key_text,
    public_key_text,
)
from domain.application import PlantApplication
from domain.errors import OperatorExists
from domain.permissions import PLANT_SCOPE, Scope


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    totp_secret: str

    def provisioning_uri(self) -> str:
        """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
        return provisioning_uri(self.username, self.totp_secret)


def create_operator(
    app: PlantApplication,
    box: SecretBox,
    *,
    username: str,
    full_name: str,
    roles: Sequence[str],
    password: str,
    scopes: Sequence[str] = (),
    actor: str,
) -> Credentials:
    """Register an operator with a fresh TOTP secret and ``scopes``; raises OperatorExists."""
    checked = [str(Scope.parse(scope)) for scope in scopes]  # before anything is recorded
    totp_secret = new_totp_secret()
    at = datetime.now(UTC)
    app.register_operator(
        username=username,
        full_name=full_name,
        roles=roles,
        password_hash=hash_password(password),
        totp_secret_sealed=box.seal(totp_secret, username=username),
        actor=actor,
        at=at,
    )
    for scope in checked:
        app.grant_permission(username=username, scope=scope, actor=actor, at=at)
    return Credentials(username, password, totp_secret)


def demo_secrets_key(state_dir: Path) -> SecretBox:
    """The demo's secrets key, kept in ``<state_dir>/secrets.key`` (0600) across runs."""
    path = state_dir / "secrets.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(generate_key(), encoding="utf-8")
        path.chmod(0o600)
    return SecretBox.from_text(path.read_text(encoding="utf-8"))


DEMO_AUDIT_KEY = "audit-signing.key"
DEMO_AUDIT_PUBLIC_KEY = "audit-signing.pub"


def demo_audit_key(state_dir: Path) -> Ed25519PrivateKey:
    """The demo's checkpoint signing key, kept in the state directory (0600) with its public key.

    A real plant keeps the private key off the database host (docs/audit.md);
    the demo keeps both together, which is enough to show the checkpoints.
    """
    path = state_dir / DEMO_AUDIT_KEY
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        key = generate_signing_key()
        path.write_text(private_key_text(key), encoding="utf-8")
        path.chmod(0o600)
        (state_dir / DEMO_AUDIT_PUBLIC_KEY).write_text(public_key_text(key), encoding="utf-8")
    return load_signing_key(path)


def demo_operator(app: PlantApplication, box: SecretBox, state_dir: Path) -> Credentials:
    """The demo's operator (may command every device), the same on every run against one database.

    The credentials live in ``<state_dir>/demo-operator.json`` (outside the
    repository). If the database already knows that user name with other
    credentials (the file was deleted, or the database is shared), a new user
    name is made rather than reusing an account whose password nobody has.
    """
    path = state_dir / "demo-operator.json"
    if path.exists():
        saved = Credentials(**json.loads(path.read_text(encoding="utf-8")))
        operator = app.find_operator(saved.username)
        if operator is not None and verify_password(operator.password_hash, saved.password):
            try:
                secret = box.open(operator.totp_secret_sealed, username=saved.username)
            except UnsealError:
                secret = None  # sealed under another key: make a new operator
            if secret is not None:
                return Credentials(saved.username, saved.password, secret)
    while True:
        try:
            credentials = create_operator(
                app,
                box,
                username=f"demo-{secrets.token_hex(3)}",
                full_name="Demo Operator",
                roles=["operator"],
                password=secrets.token_urlsafe(12),
                scopes=[PLANT_SCOPE],
                actor="plantcore demo",
            )
        except OperatorExists:
            continue
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(credentials)), encoding="utf-8")
        path.chmod(0o600)
        return credentials
