"""Creating operators from the command line, and the demo's own operator and keys.

An operator created here gets a one-time enrolment token, never a TOTP
secret: whoever runs ``plantcore users create`` hands the token over and the
operator enrols their own authenticator with it (``enrollTotpWithToken``).
Only the demo enrols its operator itself, for the person at its console.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.credentials import (
    enrolment_token_hashes,
    hash_password,
    new_enrolment_token_part,
    new_totp_secret,
    provisioning_uri,
    verify_password,
)
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
from domain.usernames import normalise_username
from support.private_file import create_private, replace_private


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    totp_secret: str

    def provisioning_uri(self) -> str:
        """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
        return provisioning_uri(self.username, self.totp_secret)


@dataclass(frozen=True)
class EnrolmentGrant:
    """A new operator's name, as stored, and the one-time token they enrol with."""

    username: str
    enrolment_token: str
    expires_at: datetime


def create_operator(
    app: PlantApplication,
    *,
    username: str,
    full_name: str,
    roles: Sequence[str],
    password: str,
    scopes: Sequence[str] = (),
    actor: str,
) -> EnrolmentGrant:
    """Register an operator with ``scopes`` and an enrolment token; raises OperatorExists."""
    checked = [str(Scope.parse(scope)) for scope in scopes]  # before anything is recorded
    username = normalise_username(username)
    token, token_hash = new_enrolment_token_part()
    at = datetime.now(UTC)
    app.register_operator(
        username=username,
        full_name=full_name,
        roles=roles,
        password_hash=hash_password(password),
        enrolment_token_hash=token_hash,
        actor=actor,
        at=at,
    )
    for scope in checked:
        app.grant_permission(username=username, scope=scope, actor=actor, at=at)
    expires_at = app.get_operator(username).enrolment_token_expires_at
    assert expires_at is not None  # registered with a token
    return EnrolmentGrant(username, token, expires_at)


def enrol_with_token(
    app: PlantApplication, box: SecretBox, *, username: str, enrolment_token: str
) -> str:
    """Enrol ``username``'s authenticator with their token, as they would; the new secret.

    The secret is sealed to the name as it is stored (its normal form), the
    name it is opened with whenever its owner signs.
    """
    totp_secret = new_totp_secret()
    app.enroll_totp_with_token(
        username=username,
        presented_hashes=enrolment_token_hashes(enrolment_token),
        totp_secret_sealed=box.seal(totp_secret, username=username),
        at=datetime.now(UTC),
    )
    return totp_secret


def demo_secrets_key(state_dir: Path) -> SecretBox:
    """The demo's secrets key, kept in ``<state_dir>/secrets.key`` (0600) across runs."""
    path = state_dir / "secrets.key"
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # made by an earlier run: kept
        create_private(path, generate_key().encode())
    return SecretBox.from_text(path.read_text(encoding="utf-8"))


DEMO_AUDIT_KEY = "audit-signing.key"
DEMO_AUDIT_PUBLIC_KEY = "audit-signing.pub"


def demo_audit_key(state_dir: Path) -> Ed25519PrivateKey:
    """The demo's checkpoint signing key, kept in the state directory (0600) with its public key.

    A real plant keeps the private key off the database host (docs/audit.md);
    the demo keeps both together, which is enough to show the checkpoints.
    """
    path = state_dir / DEMO_AUDIT_KEY
    state_dir.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    try:
        create_private(path, private_key_text(key).encode())
    except FileExistsError:  # made by an earlier run: kept
        return load_signing_key(path)
    (state_dir / DEMO_AUDIT_PUBLIC_KEY).write_text(public_key_text(key), encoding="utf-8")
    return key


def demo_operator(app: PlantApplication, box: SecretBox, state_dir: Path) -> Credentials:
    """The demo's operator (may command every device), the same on every run against one database.

    The demo is run by the person it makes the operator for, so it enrols
    their authenticator with the account's token at once and prints the secret.
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
    password = secrets.token_urlsafe(12)
    while True:
        try:
            grant = create_operator(
                app,
                username=f"demo-{secrets.token_hex(3)}",
                full_name="Demo Operator",
                roles=["operator"],
                password=password,
                scopes=[PLANT_SCOPE],
                actor="plantcore demo",
            )
        except OperatorExists:
            continue
        secret = enrol_with_token(
            app, box, username=grant.username, enrolment_token=grant.enrolment_token
        )
        credentials = Credentials(grant.username, password, secret)
        state_dir.mkdir(parents=True, exist_ok=True)
        replace_private(path, json.dumps(asdict(credentials)).encode())
        return credentials
